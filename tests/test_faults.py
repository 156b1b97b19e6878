"""Fault injection through real processes: every written line is delivered, spooled or counted.

Each program writes numbered lines in several batches to a real VictoriaLogs behind a
fault-injecting proxy; each scenario checks the exact set of numbers the server stored (no gaps,
and no duplicates unless the scenario documents at-least-once delivery) and what the program's
stats counted.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from conftest import run_python
from fault_proxy import FaultProxy

LINES = 60
PROGRAM = f"""
import json, sys, vlhook
for i in range({LINES}):
    print('seq', i)
    if i % 20 == 19:
        vlhook.flush(30)          # three batches
s = vlhook.stats()
sys.stderr.write('STATS ' + json.dumps(s) + '\\n')
"""


def _seqs(rows: list[dict[str, str]]) -> list[int]:
    return sorted(int(m.group(1)) for r in rows if (m := re.fullmatch(r"seq (\d+)", r["_msg"])))


def _env(sink: Any, proxy: FaultProxy, **extra: str) -> dict[str, str]:
    """Ship through the proxy, with the default flush interval: the batches are the program's
    three explicit flushes."""
    env: dict[str, str] = sink.env(
        VICTORIALOGS_URL=proxy.url, VICTORIALOGS_FLUSH_INTERVAL_MS="500", **extra
    )
    return env


def _stats(err: str) -> dict[str, Any]:
    line = next(x for x in err.splitlines() if x.startswith("STATS "))
    return dict(json.loads(line[6:]))


SCENARIOS = {
    # name: (faults for the first requests, extra environment)
    "reset_mid_request": (["reset", "reset"], {}),
    "429_retry_after": (["status:429:1"], {}),
    "503_then_500_then_502": (["status:503", "status:500", "status:502"], {}),
    "504_gateway": (["status:504:0"], {}),
    # Within the request timeout: waited for, not retried.
    "slow_server": (["delay:1.5", "delay:1.5"], {}),
    # A kept-alive connection closed by the server: reopened at once, not counted as a retry.
    "idle_close_each_time": (["close", "close", "close"], {}),
    # The server stalls past the request timeout: the batch is retried on a new connection.
    "stalled_request": (["stall"], {"VICTORIALOGS_TIMEOUT_MS": "800"}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fault_scenario_delivers_everything(name: str, script: Any, sink: Any) -> None:
    plan, extra = SCENARIOS[name]
    with FaultProxy(sink.url, plan, stall_s=5) as proxy:
        started = time.monotonic()
        run = run_python(script(PROGRAM), _env(sink, proxy, **extra))
        elapsed = time.monotonic() - started
        faults = proxy.faults()
    assert run.rc == 0
    assert _seqs(sink.settle(LINES)) == list(range(LINES)), faults
    stats = _stats(run.err)
    assert stats["shipped"] == LINES and stats["dropped_total"] == 0
    assert stats["retries"] >= (0 if name in ("slow_server", "idle_close_each_time") else 1)
    assert elapsed < 30
    assert faults[: len(plan)] == plan


def test_rejected_batch_is_counted_not_retried(script: Any, sink: Any) -> None:
    with FaultProxy(sink.url, ["status:400"]) as proxy:
        run = run_python(script(PROGRAM), _env(sink, proxy))
        faults = proxy.faults()
    stats = _stats(run.err)
    assert stats["dropped"] == {"rejected_http_400": 20}
    assert "injected fault" in stats["last_rejection"]
    assert "20 entries rejected by the server: HTTP 400" in run.err
    assert _seqs(sink.settle(LINES - 20)) == list(range(20, LINES))
    assert faults.count("status:400") == 1  # not retried


def test_server_down_for_longer_than_the_retry_budget_spools(script: Any, sink: Any) -> None:
    """All attempts fail for the whole run: everything is spooled, then replayed by the next
    run once the server is reachable — nothing lost, nothing twice."""
    with FaultProxy(sink.url, ["status:503"] * 1000) as proxy:
        first = run_python(
            script(PROGRAM),
            _env(sink, proxy, VICTORIALOGS_EXIT_TIMEOUT_MS="300",
                 VICTORIALOGS_TIMEOUT_MS="500"),  # retried for 1 s
            timeout=120,
        )  # fmt: skip
        stats = _stats(first.err)
        proxy.plan.clear()
        second = run_python(script("print('next run')\n", name="next.py"), _env(sink, proxy))
    assert first.rc == second.rc == 0
    assert stats["spooled"] == LINES and stats["shipped"] == 0
    rows = sink.settle(LINES + 2)
    assert _seqs(rows) == list(range(LINES))
    others = [r["_msg"].split(" ")[0] for r in rows if not r["_msg"].startswith("seq ")]
    assert sorted(others) == ["STATS", "next"]  # the first run's stats line (stderr), the second's
    assert not list(sink.spool.glob("*.jsonl*"))


def test_two_processes_replaying_one_spool_send_each_file_once(script: Any, sink: Any) -> None:
    """Claims are flock locks held by the claiming process: two processes started together
    share the work, never a file."""
    import subprocess
    import sys

    from conftest import DROPIN, base_env

    spool = sink.spool
    spool.mkdir(mode=0o700)
    for n in range(40):
        body = "".join(json.dumps({"_msg": f"spooled {n}-{i}", "test_id": sink.test_id}) + "\n"
                       for i in range(25))  # fmt: skip
        (spool / f"{n:020d}-1-{n}.jsonl").write_text(body)
    path = script("print('replayer')\n")
    env = base_env()
    env.update(sink.env(), PYTHONPATH=str(DROPIN))
    procs = [subprocess.Popen([sys.executable, str(path)], env=env) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    spooled = [r["_msg"] for r in sink.settle(1000 + 2) if r["_msg"].startswith("spooled")]
    assert len(spooled) == len(set(spooled)) == 1000
    assert not list(spool.glob("*.jsonl*"))


def _exit_run(script: Any, sink: Any, plan: list[str]) -> tuple[Any, list[str]]:
    with FaultProxy(sink.url, plan, stall_s=5) as proxy:
        run = run_python(
            script("for i in range(50):\n    print('seq', i)\n"),
            _env(sink, proxy, VICTORIALOGS_EXIT_TIMEOUT_MS="600"),
        )
    spooled = [json.loads(line)["_msg"] for file in sink.spool.glob("*.jsonl")
               for line in file.read_text().splitlines()]  # fmt: skip
    return run, spooled


def test_batch_the_sender_spools_at_the_exit_deadline_is_reported(script: Any, sink: Any) -> None:
    """The server answers 503 until the exit budget is spent: the sender spools its batch
    itself, and the exit message counts those entries as kept in the spool."""
    run, spooled = _exit_run(script, sink, ["status:503"] * 100)
    assert run.rc == 0
    assert sorted(spooled) == sorted(f"seq {i}" for i in range(50))
    assert "50 kept in the spool" in run.err, run.err
    assert sink.entries(0, timeout=0) == []


def test_exit_request_sent_but_unanswered_is_reported_not_spooled(script: Any, sink: Any) -> None:
    """The exit's request went out and no answer came within the budget: the server may have
    stored it, so it is not spooled (that could store it twice) but reported as under way."""
    run, spooled = _exit_run(script, sink, ["stall"])
    assert run.rc == 0
    assert spooled == []
    assert "kept in the spool" not in run.err, run.err
    assert "50 in a request still under way" in run.err, run.err
