"""The real awslambdaric (`python -m awslambdaric handler.handler`) against a local Runtime API
and a real VictoriaLogs: every invocation's entries arrive before the next request, tagged with
it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from conftest import DROPIN, REPO, Sink, base_env, messages, venv_with
from fault_proxy import CutProxy, FaultProxy
from lambda_runtime import Invocation, RuntimeApi

HANDLER_DIR = REPO / "examples" / "lambda"
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

pytest.importorskip("awslambdaric")


def run_runtime(
    api: RuntimeApi,
    env: dict[str, str],
    *,
    handler: str = "handler.handler",
    cwd: Path = HANDLER_DIR,
    pythonpath: Optional[str] = str(DROPIN),
    python: str = sys.executable,
) -> subprocess.CompletedProcess[bytes]:
    full = base_env()
    full.update(
        AWS_LAMBDA_RUNTIME_API=api.address,
        AWS_LAMBDA_FUNCTION_NAME="orders",
        AWS_LAMBDA_FUNCTION_VERSION="7",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/orders",
        AWS_LAMBDA_LOG_STREAM_NAME="stream",
    )
    full.update(env)
    if pythonpath:
        full["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [python, "-m", "awslambdaric", handler],
        env=full, cwd=str(cwd), capture_output=True, timeout=90,
    )  # fmt: skip


def ship_to(sink: Sink, **extra: str) -> dict[str, str]:
    # Only the end-of-invocation flush may deliver: the timer would hide a missing flush.
    return sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="600000", **extra)


def arrival_times(proxy: FaultProxy) -> dict[str, list[float]]:
    """For each aws_request_id, when the requests that carried its entries arrived."""
    times: dict[str, list[float]] = {}
    for request in proxy.requests:
        if request.path.startswith("/insert/jsonline"):
            for line in request.lines():
                times.setdefault(line.get("aws_request_id", ""), []).append(request.received)
    return times


def assert_each_between_response_and_next(
    api: RuntimeApi, arrived: dict[str, list[float]], invocations: tuple[Invocation, ...]
) -> None:
    """Every row of invocation i arrived after its response, before the next /next."""
    for index, invocation in enumerate(invocations):
        times = arrived.get(invocation.request_id)
        assert times, f"nothing arrived for invocation {index}"
        assert invocation.answered <= min(times)
        assert max(times) <= api.next_calls[index + 1]


def rows_of(rows: list[dict[str, str]], invocation: Invocation) -> list[dict[str, str]]:
    return [r for r in rows if r.get("aws_request_id") == invocation.request_id]


def test_each_invocation_is_delivered_between_response_and_next(sink: Sink) -> None:
    # The proxy records when each request reached the server; the rows are read back from it.
    with RuntimeApi() as api, FaultProxy(sink.url, []) as proxy:
        first = api.add({"name": "ann", "threads": 2, "json": True, "order_id": 1}, trace_id=TRACE)
        second = api.add(
            {"name": "bob", "fail": True}, client_context={"custom": {"trace_id": "t-42"}}
        )
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        third = api.add({"name": "cid"}, client_context={"w3c": {"traceparent": traceparent}},
                        tenant_id="tenant-blue")  # fmt: skip
        result = run_runtime(api, ship_to(sink, VICTORIALOGS_URL=proxy.url))
    assert result.returncode == 1  # the Runtime API went away after the last event
    assert json.loads(first.response or b"") == {"ok": True, "name": "ann"}
    assert b"cannot process bob" in (second.error or b"")  # the runtime still reports the error
    arrived = arrival_times(proxy)
    sent = sum(len(times) for times in arrived.values())
    rows = sink.settle(sent)
    assert len(rows) == sent  # each line sent was stored once

    assert_each_between_response_and_next(api, arrived, (first, second, third))

    ann = rows_of(rows, first)
    expected = ["hello ann", "processing order", "payment captured", "ann worker 0", "ann worker 1"]
    assert sorted(r["_msg"] for r in ann) == sorted(expected)
    assert {r["cold_start"] for r in ann} == {"true"}
    assert {r["xray_trace_id"] for r in ann} == {"1-5759e988-bd862e3fe1be46a994272793"}
    assert {r["trace_id"] for r in ann} == {"5759e988bd862e3fe1be46a994272793"}
    assert {r["span_id"] for r in ann} == {"53995c3f42cd8ad8"}
    assert {r["trace_flags"] for r in ann} == {"01"}
    assert {r["function_version"] for r in ann} == {"7"}
    assert {r["container_name"] for r in rows} == {"orders"} and {r["job"] for r in rows} == {
        "lambda"
    }
    record = next(r for r in ann if r["_msg"] == "processing order")
    assert record["stream"] == "logging" and record["order_id"] == "1"

    bob = rows_of(rows, second)
    assert {r["cold_start"] for r in bob} == {"false"} and {r["trace_id"] for r in bob} == {"t-42"}
    errors = [r for r in bob if r["level"] == "ERROR"]
    assert len(errors) == 1, [r["_msg"] for r in bob]
    assert errors[0]["_msg"].startswith("[ERROR] ValueError: cannot process bob")
    assert "Traceback (most recent call last):\n  File " in errors[0]["_msg"]
    assert (errors[0]["exception.type"], errors[0]["exception.message"]) == (
        "ValueError", "cannot process bob")  # fmt: skip

    cid = rows_of(rows, third)
    assert {r["trace_id"] for r in cid} == {"0af7651916cd43dd8448eb211c80319c"}
    # Tenant isolation mode: the invocation's tenant, only where the invocation has one.
    assert {r["tenant_id"] for r in cid} == {"tenant-blue"}
    assert not [r for r in ann + bob if "tenant_id" in r]

    outside = [r for r in rows if "aws_request_id" not in r]
    assert outside[0]["_msg"] == "init: loading configuration"
    # The runtime itself dies when the Runtime API goes away: shipped as an uncaught exception.
    assert [r["exception.message"] for r in outside[1:]] == ["Failed to get next"]
    # Each record exactly once although awslambdaric's own handler prints it through stdout.
    for invocation in (first, second, third):
        assert [r["_msg"] for r in rows_of(rows, invocation)].count("processing order") == 1


def test_init_lines_go_with_the_first_invocations_flush(sink: Sink) -> None:
    """No flush before the first /next (it would delay the cold start's first response): the
    line the handler module prints at import arrives after that response, before the next
    /next, exactly once."""
    with RuntimeApi() as api, FaultProxy(sink.url, []) as proxy:
        first = api.add({"name": "ann"})
        api.add({"name": "bob"})
        result = run_runtime(api, ship_to(sink, VICTORIALOGS_URL=proxy.url))
    assert result.returncode == 1
    init = [r.received for r in proxy.requests if r.path.startswith("/insert/jsonline")
            for line in r.lines() if line.get("_msg") == "init: loading configuration"]  # fmt: skip
    assert len(init) == 1
    assert api.next_calls[0] < first.answered <= init[0] <= api.next_calls[1]
    rows = sink.settle(sum(len(r.lines()) for r in proxy.requests
                           if r.path.startswith("/insert/jsonline")))  # fmt: skip
    assert [r["_msg"] for r in rows].count("init: loading configuration") == 1


INIT_LINE = "init: loading configuration"


def test_provisioned_concurrency_delivers_the_init_lines_before_the_first_next(
    sink: Sink,
) -> None:
    """Provisioned concurrency initialises environments ahead of any call: no caller waits
    for the first /next, and the environment may then stay frozen for hours, or be reclaimed
    unused. Its init lines are delivered before that /next (on demand they wait for the first
    invocation's flush, so as not to delay its response)."""
    with RuntimeApi() as api, FaultProxy(sink.url, []) as proxy:
        first = api.add({"name": "ann"})
        env = ship_to(sink, VICTORIALOGS_URL=proxy.url,
                      AWS_LAMBDA_INITIALIZATION_TYPE="provisioned-concurrency")  # fmt: skip
        result = run_runtime(api, env)
    assert result.returncode == 1, result.stderr.decode()
    init = [r.received for r in proxy.requests if r.path.startswith("/insert/jsonline")
            for line in r.lines() if line.get("_msg") == INIT_LINE]  # fmt: skip
    assert len(init) == 1 and init[0] <= api.next_calls[0] < first.answered
    rows = sink.settle(3)
    assert messages(rows).count(INIT_LINE) == 1
    assert sorted(messages(rows_of(rows, first))) == ["hello ann", "processing order"]


@pytest.mark.parametrize("capture", ["", "fd,logging"])
def test_snapstart_snapshot_holds_no_line_and_no_connection(sink: Sink, capture: str) -> None:
    """SnapStart: Lambda snapshots the environment while awslambdaric waits for /restore/next,
    and every environment restored from it resumes with what vlhook held then. By that moment
    the init phase's line is stored, once, and no connection is open: before, it waited for
    the first invocation's flush, which every restored copy makes, on the snapshot's
    connection."""
    at_snapshot: dict[str, int] = {}
    with RuntimeApi() as api, CutProxy(sink.url.split("//")[1]) as proxy:
        first = api.add({"name": "ann"})

        def snapshot() -> None:
            at_snapshot["init"] = messages(sink.entries(1, timeout=5)).count(INIT_LINE)
            at_snapshot["open"] = proxy.open_connections(settle_s=2)

        api.at_snapshot = snapshot
        env = ship_to(sink, VICTORIALOGS_URL=proxy.url,
                      AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")  # fmt: skip
        if capture:
            env["VICTORIALOGS_CAPTURE"] = capture
        result = run_runtime(api, env)
    assert result.returncode == 1, result.stderr.decode()
    assert api.snapshots == 1 and first.response is not None
    assert at_snapshot == {"init": 1, "open": 0}
    rows = sink.settle(3)
    assert messages(rows).count(INIT_LINE) == 1
    assert sorted(messages(rows_of(rows, first))) == ["hello ann", "processing order"]


TRACE_HANDLER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("fn")

def handler(event, context):
    print("handler " + event["name"])
    if event.get("span"):
        with tracer.start_as_current_span("work") as span:
            ids = span.get_span_context()
            print(f"span {ids.trace_id:032x} {ids.span_id:016x}")
    return "ok"
"""


def test_trace_ids_come_from_one_source_in_order_of_precedence(sink: Sink, tmp_path: Path) -> None:
    """The span current in the handler, else the invocation's pair (the caller's trace from
    the client context, else X-Ray's), else TRACEPARENT."""
    pytest.importorskip("opentelemetry.sdk.trace")
    (tmp_path / "traced.py").write_text(TRACE_HANDLER)
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    environment = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    unsampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    with RuntimeApi() as api:
        w3c = api.add({"name": "w3c"}, trace_id=TRACE,
                      client_context={"w3c": {"traceparent": caller}})  # fmt: skip
        custom = api.add({"name": "custom"}, trace_id=TRACE,
                         client_context={"custom": {"trace_id": "t-42"}})  # fmt: skip
        xray = api.add({"name": "xray", "span": True}, trace_id=unsampled)
        bare = api.add({"name": "bare"})
        run_runtime(api, ship_to(sink, TRACEPARENT=environment), handler="traced.handler",
                    cwd=tmp_path)  # fmt: skip
    rows = sink.settle(5)

    def trace_of(invocation: Invocation, prefix: str) -> dict[str, str]:
        (row,) = [r for r in rows_of(rows, invocation) if r["_msg"].startswith(prefix)]
        keys = ("trace_id", "span_id", "trace_flags", "xray_trace_id")
        return {key: row[key] for key in keys if key in row}

    root = "1-5759e988-bd862e3fe1be46a994272793"
    assert trace_of(w3c, "handler") == {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7", "trace_flags": "01", "xray_trace_id": root}  # fmt: skip
    # The caller's trace alone: never paired with X-Ray's span.
    assert trace_of(custom, "handler") == {"trace_id": "t-42", "xray_trace_id": root}
    assert trace_of(xray, "handler") == {"trace_id": "5759e988bd862e3fe1be46a994272793",
        "span_id": "53995c3f42cd8ad8", "trace_flags": "00", "xray_trace_id": root}  # fmt: skip
    (span_row,) = [r for r in rows_of(rows, xray) if r["_msg"].startswith("span ")]
    _, span_trace, span_id = span_row["_msg"].split()
    assert trace_of(xray, "span ") == {"trace_id": span_trace, "span_id": span_id,
                                       "trace_flags": "01", "xray_trace_id": root}  # fmt: skip
    assert trace_of(bare, "handler") == {"trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331", "trace_flags": "00"}  # fmt: skip


def test_a_callers_trace_id_is_redacted_as_any_field(sink: Sink, tmp_path: Path) -> None:
    """The caller's `custom.trace_id` and `custom.span_id` are taken as given, so they are any
    text of the caller's: a secret in them is redacted, as in any field. vlhook's own ids (the
    request id, X-Ray's) are made from ids and go as they are."""
    (tmp_path / "traced.py").write_text(
        'def handler(event, context):\n    print("handler " + event["name"])\n'
    )
    custom = {"trace_id": "Bearer abcdefghijklmnopqrstu", "span_id": "AKIAIOSFODNN7EXAMPLE"}
    with RuntimeApi() as api:
        invocation = api.add({"name": "custom"}, trace_id=TRACE,
                             client_context={"custom": custom})  # fmt: skip
        run_runtime(api, ship_to(sink), handler="traced.handler", cwd=tmp_path)
    (row,) = [r for r in rows_of(sink.settle(1), invocation) if r["_msg"] == "handler custom"]
    assert (row["trace_id"], row["span_id"]) == ("Bearer [REDACTED]", "[REDACTED]"), row
    assert row["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


LEAKY_HANDLER = """
import os, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []

def handler(event, context):
    if event.get("leak"):
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
    print("handler " + event["name"])
    return "ok"
"""


def test_an_invocation_at_the_limit_of_open_files_reconnects_at_its_flush(
    sink: Sink, tmp_path: Path
) -> None:
    """A function that leaks descriptors reaches its limit; the server has closed the kept-alive
    connection since the last flush (as an idle one does): the flush's new connection takes the
    number the dead one held, and the invocation's lines are delivered."""
    (tmp_path / "leaky.py").write_text(LEAKY_HANDLER)
    with RuntimeApi() as api, FaultProxy(sink.url, ["close"]) as proxy:
        first = api.add({"name": "first"})
        leaking = api.add({"name": "at the limit", "leak": True})
        run_runtime(api, ship_to(sink, VICTORIALOGS_URL=proxy.url), handler="leaky.handler",
                    cwd=tmp_path)  # fmt: skip
        faults = proxy.faults()
    assert json.loads(leaking.response or b'""') == "ok"
    rows = sink.settle(2)
    assert [r["_msg"] for r in rows_of(rows, first)] == ["handler first"]
    assert [r["_msg"] for r in rows_of(rows, leaking)] == ["handler at the limit"]
    # The front closed the first connection after its answer: the second invocation's lines
    # came on a new one, made at the limit (then the runtime's own report at its exit).
    assert faults[:2] == ["close", "pass"], faults


def test_json_log_format_records_once_with_runtime_keys(sink: Sink) -> None:
    with RuntimeApi() as api:
        only = api.add({"name": "dee", "order_id": 9})
        run_runtime(api, ship_to(sink, AWS_LAMBDA_LOG_FORMAT="JSON"))
    rows = rows_of(sink.settle(1), only)
    records = [r for r in rows if r["_msg"] == "processing order"]
    assert len(records) == 1
    assert records[0]["order_id"] == "9" and records[0]["level"] == "INFO"
    assert records[0].get("requestId") == only.request_id  # the runtime's JSON keys, merged


def test_powertools_logger_keys_kept_and_once(sink: Sink, tmp_path: Path) -> None:
    pytest.importorskip("aws_lambda_powertools")
    (tmp_path / "pt.py").write_text(
        "from aws_lambda_powertools import Logger\n"
        "logger = Logger(service='payments')\n"
        "@logger.inject_lambda_context\n"
        "def handler(event, context):\n"
        "    logger.info('charged', amount=3)\n"
        "    return 'ok'\n"
    )
    with RuntimeApi() as api:
        only = api.add({})
        result = run_runtime(api, ship_to(sink), handler="pt.handler", cwd=tmp_path)
    assert only.response == b'"ok"', result.stderr
    rows = [r for r in rows_of(sink.settle(1), only) if r["_msg"] == "charged"]
    assert len(rows) == 1
    row = rows[0]
    assert row["service"] == "payments" and row["amount"] == "3"
    assert row["function_request_id"] == only.request_id and row["cold_start"] == "true"


def test_server_down_during_an_invocation_is_spooled_then_delivered(sink: Sink) -> None:
    # The server is unreachable (its port refuses) until just before invocation 2.
    address = sink.url.removeprefix("http://")
    with RuntimeApi() as api, CutProxy(address) as proxy:
        proxy.cut()
        first = api.add({"name": "down"})
        second = api.add({"name": "up"})
        api.before_serving = {1: proxy.restore}
        run_runtime(api, ship_to(sink, VICTORIALOGS_URL=proxy.url,
                                 VICTORIALOGS_EXIT_TIMEOUT_MS="500"))  # fmt: skip
    rows = sink.settle(2)
    down = [r["_msg"] for r in rows_of(rows, first)]
    assert down.count("hello down") == 1
    assert [r["_msg"] for r in rows_of(rows, second)].count("hello up") == 1
    assert not list(sink.spool.glob("*.jsonl*"))


def test_multi_concurrency_workers_capture_and_ship(sink: Sink) -> None:
    with RuntimeApi(linger=0.5) as api:
        invocations = [api.add({"name": f"w{i}"}) for i in range(4)]
        run_runtime(api, ship_to(sink, AWS_LAMBDA_MAX_CONCURRENCY="2"))
    rows = sink.settle(4)
    for invocation in invocations:
        mine = [r["_msg"] for r in rows_of(rows, invocation)]
        assert f"hello {invocation.event['name']}" in mine
        assert mine.count("processing order") == 1
    worker_pids = {r["pid"] for inv in invocations for r in rows_of(rows, inv)}
    # Forked workers (two; a fast one may take every event), each with its own sender.
    assert 1 <= len(worker_pids) <= 2


@pytest.fixture(scope="module")
def venv_with_wheel(vlhook_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel (its vlhook.pth) and awslambdaric: no PYTHONPATH."""
    return venv_with(tmp_path_factory.mktemp("lambda-venv"), vlhook_wheel, "awslambdaric", "orjson")


def test_installed_pth_activates_under_awslambdaric(sink: Sink, venv_with_wheel: Path) -> None:
    with RuntimeApi() as api:
        first, second = api.add({"name": "pth"}), api.add({"name": "again"})
        result = run_runtime(api, ship_to(sink), pythonpath=None, python=str(venv_with_wheel))
    assert first.response, result.stderr.decode()[-2000:]
    rows = sink.settle(2)
    for invocation in (first, second):
        mine = [r["_msg"] for r in rows_of(rows, invocation)]
        assert f"hello {invocation.event['name']}" in mine
        assert mine.count("processing order") == 1


def test_sigterm_while_the_runtime_waits_for_its_next_invocation_ends_it_at_once(
    sink: Sink,
) -> None:
    """At an environment's shutdown (with extensions registered) Lambda sends SIGTERM to the
    runtime, idle in its request for the next invocation, then SIGKILL after a grace period.
    That request is native code that takes no signal: vlhook's handler, Python code, ran only
    once it returned, so the runtime outlived the SIGTERM that ends it without vlhook, and its
    undelivered lines (an environment never invoked: its init phase's) died with the SIGKILL.
    A thread of vlhook's hears the signal, delivers, and ends the process as the signal does."""
    import os
    import signal
    import time

    with RuntimeApi(linger=20.0) as api:  # no invocation: /next held open 20 s
        full = base_env()
        full.update(ship_to(sink), AWS_LAMBDA_RUNTIME_API=api.address,
                    AWS_LAMBDA_FUNCTION_NAME="orders", PYTHONPATH=str(DROPIN))  # fmt: skip
        runtime = subprocess.Popen([sys.executable, "-m", "awslambdaric", "handler.handler"],
                                   env=full, cwd=str(HANDLER_DIR), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while not api.next_calls and time.monotonic() < deadline:
                time.sleep(0.05)
            assert api.next_calls, "the runtime never asked for an invocation"
            time.sleep(0.3)  # inside the request
            signalled = time.monotonic()
            runtime.send_signal(signal.SIGTERM)
            status = runtime.wait(timeout=30)
            ended_after = time.monotonic() - signalled
        finally:
            if runtime.poll() is None:
                os.kill(runtime.pid, signal.SIGKILL)
                runtime.wait()
    assert status == -signal.SIGTERM
    assert ended_after < 5, ended_after  # the flush's budget at most; not /next's 20 s
    assert messages(sink.settle(1)) == [INIT_LINE]
