"""Trace context on entries, through real interpreters and a real VictoriaLogs: the span current
where a line was written (the real OpenTelemetry SDK), TRACEPARENT, and their precedence.

Each program writes the ids it expects (from the SDK's own span objects) to a file named by its
first argument; the test compares them with what the server stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Sink, run_python

pytest.importorskip("opentelemetry.sdk.trace")

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ENV_TRACE = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
             "trace_flags": "01"}  # fmt: skip
TRACE_KEYS = ("trace_id", "span_id", "trace_flags", "trace_state")

# What every program starts with: the SDK as a traced program sets it up, and `ids(span)` for
# the expected values.
PRELUDE = """
import json, sys
from opentelemetry import trace, context
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("test")
expected = {}
def ids(span):
    c = span.get_span_context()
    return {"trace_id": format(c.trace_id, "032x"), "span_id": format(c.span_id, "016x"),
            "trace_flags": "01" if c.trace_flags & 1 else "00"}
def done():
    with open(sys.argv[1], "w") as fh:
        json.dump(expected, fh)
"""


def trace_of(row: dict[str, str]) -> dict[str, str]:
    return {key: row[key] for key in TRACE_KEYS if key in row}


def run_traced(script: Any, sink: Sink, tmp_path: Path, body: str, **env: str) -> Any:
    """Run PRELUDE + body with vlhook shipping to the sink; returns (run, expected ids)."""
    path = script(PRELUDE + body)
    out = tmp_path / "expected.json"
    run = run_python(path, sink.env(**env), args=(str(out),))
    return run, json.loads(out.read_text())


def by_message(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        assert row["_msg"] not in found, f"{row['_msg']!r} stored twice"
        found[row["_msg"]] = row
    return found


def test_every_kind_of_entry_carries_the_current_span(
    script: Any, sink: Sink, tmp_path: Path
) -> None:
    body = """
import logging, sys
logging.basicConfig(level=logging.INFO)
print("before any span")
with tracer.start_as_current_span("outer") as outer:
    expected["outer"] = ids(outer)
    print("in outer")
    with tracer.start_as_current_span("inner") as inner:
        expected["inner"] = ids(inner)
        print("in inner")
        sys.stderr.write("stderr in inner\\n")
        logging.getLogger("app").warning("record in inner")
    print("back in outer")
print("after every span")
# Made current the way instrumentation does it (attach, no `with`): still current when the
# uncaught exception below is reported.
span = tracer.start_span("failing")
expected["failing"] = ids(span)
context.attach(trace.set_span_in_context(span))
done()
raise RuntimeError("boom in a span")
"""
    run, expected = run_traced(script, sink, tmp_path, body)
    assert run.rc == 1 and "RuntimeError: boom in a span" in run.err
    rows = by_message(sink.settle(8))
    assert len(rows) == 8
    outer, inner = expected["outer"], expected["inner"]
    assert outer["trace_id"] == inner["trace_id"] and outer["span_id"] != inner["span_id"]
    assert trace_of(rows["in outer"]) == outer
    assert trace_of(rows["back in outer"]) == outer
    for message in ("in inner", "stderr in inner", "record in inner"):
        assert trace_of(rows[message]) == inner, message
    assert rows["record in inner"]["stream"] == "logging"
    assert trace_of(rows["before any span"]) == {}
    assert trace_of(rows["after every span"]) == {}
    (uncaught,) = [r for r in rows.values() if r.get("exception.type") == "RuntimeError"]
    assert trace_of(uncaught) == expected["failing"]


def test_threads_and_asyncio_tasks_see_their_own_span(
    script: Any, sink: Sink, tmp_path: Path
) -> None:
    body = """
import asyncio, threading
with tracer.start_as_current_span("parent") as parent:
    expected["parent"] = ids(parent)
    handed = context.get_current()
    def with_context():
        token = context.attach(handed)  # the program hands its context to the thread
        print("thread handed the context")
        context.detach(token)
    def without_context():
        print("thread not handed the context")
    for target in (with_context, without_context):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()

async def task(name):
    with tracer.start_as_current_span(name) as span:
        expected[name] = ids(span)
        for step in range(3):
            print(f"{name} step {step}")
            await asyncio.sleep(0)  # the other task runs in between

async def main():
    await asyncio.gather(task("task-a"), task("task-b"))

asyncio.run(main())
done()
"""
    run, expected = run_traced(script, sink, tmp_path, body)
    assert run.rc == 0, run.err
    rows = by_message(sink.settle(8))
    assert trace_of(rows["thread handed the context"]) == expected["parent"]
    assert trace_of(rows["thread not handed the context"]) == {}
    assert expected["task-a"]["trace_id"] != expected["task-b"]["trace_id"]
    for name in ("task-a", "task-b"):
        for step in range(3):
            assert trace_of(rows[f"{name} step {step}"]) == expected[name]


def test_ids_an_opentelemetry_exporter_prints_are_the_spans_in_w3c_form(
    script: Any, sink: Sink, tmp_path: Path
) -> None:
    """OpenTelemetry's ConsoleLogExporter, attached to logging through its LoggingHandler,
    prints each record as JSON with `0x` ids (all zeros outside any span), merged into the
    record's entry: `trace_id:=<id>` found the lines of a span but not its records, and the
    records outside spans carried an all-zero trace."""
    body = """
import logging
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor, ConsoleLogExporter
provider = LoggerProvider()
provider.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogExporter()))
logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
logging.warning("outside any span")
with tracer.start_as_current_span("s") as span:
    expected["inside"] = ids(span)
    logging.warning("inside a span")
provider.shutdown()
done()
"""
    run, expected = run_traced(script, sink, tmp_path, body)
    assert run.rc == 0, run.err
    rows = by_message(sink.settle(2))
    assert trace_of(rows["outside any span"]) == {}
    inside = rows["inside a span"]
    assert (inside["trace_id"], inside["span_id"]) == (
        expected["inside"]["trace_id"], expected["inside"]["span_id"])  # fmt: skip


def test_a_span_ended_before_a_line_is_written(script: Any, sink: Sink, tmp_path: Path) -> None:
    body = """
import vlhook
with tracer.start_as_current_span("short") as span:
    expected["short"] = ids(span)
    span.end()
    print("ended but still current")
print("after the span was left")
# Ended before the sender makes the entry: the ids were the span's when the line was written.
with tracer.start_as_current_span("late") as span:
    expected["late"] = ids(span)
    print("written in a span ended before shipping")
vlhook.flush(5)
done()
"""
    run, expected = run_traced(script, sink, tmp_path, body, VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    assert run.rc == 0, run.err
    rows = by_message(sink.settle(3))
    assert trace_of(rows["ended but still current"]) == expected["short"]
    assert trace_of(rows["after the span was left"]) == {}
    assert trace_of(rows["written in a span ended before shipping"]) == expected["late"]


def test_traceparent_tags_entries_outside_spans(script: Any, sink: Sink, tmp_path: Path) -> None:
    body = """
import logging
print("outside any span")
logging.getLogger("app").warning("record outside")
with tracer.start_as_current_span("own") as span:
    expected["own"] = ids(span)
    print("inside a span")
done()
"""
    state = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
    run, expected = run_traced(
        script, sink, tmp_path, body, TRACEPARENT=TRACEPARENT, TRACESTATE=state
    )
    assert run.rc == 0 and "vlhook" not in run.err, run.err
    rows = by_message(sink.settle(3))
    from_env = {**ENV_TRACE, "trace_state": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    assert trace_of(rows["outside any span"]) == from_env
    assert trace_of(rows["record outside"]) == from_env
    # The span's context replaces the environment's whole: no trace_state of another trace.
    assert trace_of(rows["inside a span"]) == expected["own"]


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
    ],
)
def test_an_invalid_traceparent_is_ignored_with_one_warning(
    script: Any, sink: Sink, value: str
) -> None:
    path = script("import logging\nprint('one')\nlogging.getLogger('x').warning('two')\n")
    bare = run_python(path, dropin=False, env={"TRACEPARENT": value})
    run = run_python(path, sink.env(TRACEPARENT=value))
    assert run.stdout == bare.stdout and run.rc == 0
    warnings = [line for line in run.err.splitlines() if line.startswith("vlhook:")]
    assert warnings == [
        f"vlhook: TRACEPARENT={value!r} is not valid; using no trace id from the environment"
    ]
    rows = sink.settle(2)
    assert sorted(r["_msg"] for r in rows) == ["one", "two"]
    assert all(trace_of(row) == {} for row in rows)


def test_an_invalid_tracestate_keeps_the_traceparent(script: Any, sink: Sink) -> None:
    path = script("print('one')\n")
    run = run_python(path, sink.env(TRACEPARENT=TRACEPARENT, TRACESTATE="no equals sign"))
    assert "vlhook: TRACESTATE='no equals sign' is not valid; using no trace_state" in run.err
    (row,) = sink.settle(1)
    assert trace_of(row) == ENV_TRACE


def test_opentelemetry_is_never_imported_by_vlhook(script: Any, sink: Sink) -> None:
    path = script(
        "import sys, logging, threading\n"
        "print('plain program')\n"
        "sys.stderr.write(repr(sorted(m for m in sys.modules if 'opentelemetry' in m)) + '\\n')\n"
    )
    run = run_python(path, sink.env(TRACEPARENT=TRACEPARENT))
    assert run.err.strip().splitlines()[-1] == "[]"
    rows = sink.settle(2)
    assert {row["_msg"] for row in rows} == {"plain program", "[]"}
