"""Fields bound by the program, through real interpreters and a real VictoriaLogs: vlhook.bind()
carried into threads and pool tasks started afterwards, structlog's contextvars and loguru's
contextualize() on every entry written meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import SRC, Sink, run_python, shipped


def find(rows: list[dict[str, str]], text: str) -> dict[str, str]:
    """The one row whose message contains `text`."""
    found = [row for row in rows if text in row["_msg"]]
    assert len(found) == 1, (text, [row["_msg"] for row in rows])
    return found[0]


def fields_of(rows: list[dict[str, str]], text: str, keys: tuple[str, ...]) -> dict[str, str]:
    """Those of `keys` that the one row whose message contains `text` has."""
    row = find(rows, text)
    return {k: row[k] for k in keys if k in row}


BIND_IN_THREADS = """
import asyncio, threading, vlhook
from concurrent.futures import ThreadPoolExecutor

gate = threading.Event()
def early():
    gate.wait(10)
    print("thread started before bind")
before = threading.Thread(target=early)
before.start()

vlhook.bind(request_id="r-1")
gate.set()
before.join()

thread = threading.Thread(target=lambda: print("thread started after bind"))
thread.start()
thread.join()

class Worker(threading.Thread):
    def run(self):
        print("subclass with its own run")
worker = Worker()
worker.start()
worker.join()

def binds_its_own():
    vlhook.bind(worker="w-1")
    print("thread that binds more")
thread = threading.Thread(target=binds_its_own)
thread.start()
thread.join()
print("main thread afterwards")

with ThreadPoolExecutor(max_workers=1) as pool:
    pool.submit(print, "task submitted under r-1").result()
    vlhook.bind(request_id="r-2")
    pool.submit(print, "task submitted under r-2").result()  # the same worker thread
    vlhook.unbind("request_id")
    pool.submit(print, "task submitted with nothing bound").result()

async def main():
    vlhook.bind(request_id="r-3")
    await asyncio.get_running_loop().run_in_executor(None, print, "run_in_executor under r-3")
asyncio.run(main())

def fails():
    raise ValueError("task failed")
vlhook.bind(request_id="r-4")
with ThreadPoolExecutor(max_workers=1) as pool:
    error = pool.submit(fails).exception()
import traceback
traceback.print_exception(type(error), error, error.__traceback__)
thread = threading.Thread(target=fails)
thread.start()
thread.join()
"""


def test_bound_fields_are_carried_into_threads_and_pool_tasks(script: Any, sink: Sink) -> None:
    path = script(BIND_IN_THREADS)
    bare = run_python(path, {"PYTHONPATH": str(SRC)}, dropin=False)  # vlhook importable, inactive
    run = run_python(path, sink.env())
    # Tracebacks of a failed task and of a thread are exactly as without vlhook.
    assert (run.rc, run.stdout, run.stderr) == (bare.rc, bare.stdout, bare.stderr)
    rows = sink.settle(11)
    assert len(rows) == 11  # each once

    def bound(text: str) -> tuple[str, str]:
        row = find(rows, text)
        return row.get("request_id", ""), row.get("worker", "")

    assert bound("thread started before bind") == ("", "")
    assert bound("thread started after bind") == ("r-1", "")
    assert bound("subclass with its own run") == ("r-1", "")
    assert bound("thread that binds more") == ("r-1", "w-1")
    assert bound("main thread afterwards") == ("r-1", "")
    assert bound("task submitted under r-1") == ("r-1", "")
    assert bound("task submitted under r-2") == ("r-2", "")
    assert bound("task submitted with nothing bound") == ("", "")
    assert bound("run_in_executor under r-3") == ("r-3", "")
    # The printed traceback of the failed task, and the thread's uncaught exception.
    failed = [row for row in rows if "task failed" in row["_msg"]]
    assert len(failed) == 2 and {row.get("request_id") for row in failed} == {"r-4"}


def test_structlog_contextvars_are_on_every_entry(script: Any, sink: Sink) -> None:
    pytest.importorskip("structlog")
    path = script(
        "import structlog, vlhook\n"
        "from structlog.contextvars import bind_contextvars, bound_contextvars, "
        "clear_contextvars, unbind_contextvars\n"
        "print('before any binding')\n"
        "bind_contextvars(request_id='s-1', user=7)\n"
        "print('print under structlog context')\n"
        "structlog.get_logger().info('structlog event')\n"
        "unbind_contextvars('user')\n"
        "print('after unbinding user')\n"
        "with bound_contextvars(batch='nightly'):\n"
        "    print('inside bound_contextvars')\n"
        "bind_contextvars(origin='structlog')\n"
        "vlhook.bind(origin='vlhook')\n"
        "print('bound twice')\n"
        "clear_contextvars()\n"
        "print('after clearing')\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 0, run.err
    rows = sink.settle(7)

    def context(text: str) -> dict[str, str]:
        return fields_of(rows, text, ("request_id", "user", "batch", "origin"))

    assert context("before any binding") == {}
    assert context("print under structlog context") == {"request_id": "s-1", "user": "7"}
    assert context("structlog event") == {"request_id": "s-1", "user": "7"}
    assert context("after unbinding user") == {"request_id": "s-1"}
    assert context("inside bound_contextvars") == {"request_id": "s-1", "batch": "nightly"}
    assert context("bound twice") == {"request_id": "s-1", "origin": "vlhook"}
    assert context("after clearing") == {"origin": "vlhook"}


def test_lines_and_records_of_each_structlog_binding_carry_its_own_values(
    script: Any, sink: Sink
) -> None:
    """Bursts of lines and records under bindings that change every ten entries, every other
    one equal but of another type (1, True): the sender writes the entries sharing a binding
    together, each with the values bound when it was written."""
    pytest.importorskip("structlog")
    rows = shipped(script, sink, (
        "import logging, sys\n"
        "from structlog.contextvars import bind_contextvars\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "log = logging.getLogger('app')\n"
        "for request in range(30):\n"
        "    bind_contextvars(request_id=f'q-{request // 2}', n=[1, True][request % 2])\n"
        "    for line in range(10):\n"
        "        print(f'line {line} of request {request}')\n"
        "        log.info('record %d of request %d', line, request)\n"
    ), 600)  # fmt: skip
    assert len(rows) == 600
    for row in rows:
        request = int(row["_msg"].rsplit(" ", 1)[1])
        assert (row.get("request_id"), row.get("n")) == (
            f"q-{request // 2}", ["1", "true"][request % 2]), row  # fmt: skip


def test_loguru_contextualize_is_on_every_entry(script: Any, sink: Sink) -> None:
    pytest.importorskip("loguru")
    path = script(
        "import asyncio\n"
        "from loguru import logger\n"
        "with logger.contextualize(task_id=123, user='ann'):\n"
        "    print('print in contextualize')\n"
        "    logger.info('loguru in contextualize')\n"
        "    with logger.contextualize(step='inner'):\n"
        "        print('nested contextualize')\n"
        "print('after contextualize')\n"
        "async def job(name):\n"
        "    with logger.contextualize(worker=name):\n"
        "        await asyncio.sleep(0)\n"
        "        print(f'task {name}')\n"
        "async def main():\n"
        "    await asyncio.gather(job('a'), job('b'))\n"
        "asyncio.run(main())\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 0, run.err
    rows = sink.settle(6)

    def context(text: str) -> dict[str, str]:
        return fields_of(rows, text, ("task_id", "user", "step", "worker"))

    assert context("print in contextualize") == {"task_id": "123", "user": "ann"}
    assert context("loguru in contextualize") == {"task_id": "123", "user": "ann"}
    assert context("nested contextualize") == {"task_id": "123", "user": "ann", "step": "inner"}
    assert context("after contextualize") == {}
    assert context("task a") == {"worker": "a"}
    assert context("task b") == {"worker": "b"}


# A burst of lines (written at once on the sender), a line alone and a record: the three
# ways an entry's context is written (72 entries).
EVERY_PATH = """import logging, vlhook
for i in range(70):
    print(f'burst {i}')
vlhook.flush(10)
print('alone')
logging.getLogger('app').warning('a record')
"""


def test_a_bound_value_named_like_a_trace_id_is_redacted_as_any_field(
    script: Any, sink: Sink
) -> None:
    """vlhook's own trace and invocation ids are written unexamined: made from ids, no
    redaction rule can touch them. A program's value under one of those names is any text, and
    a secret in it is redacted, in a burst of lines, a line alone and a record, as any bound
    field's (before, only the record's was: the lines went by the names alone)."""
    rows = shipped(script, sink, (
        "import vlhook\n"
        "vlhook.bind(trace_id='Bearer abcdefghijklmnopqrstu', span_id='AKIAIOSFODNN7EXAMPLE',\n"
        "            aws_request_id='https://u:hunter22@example.com/x')\n" + EVERY_PATH
    ), 72)  # fmt: skip
    assert len(rows) == 72
    for row in rows:
        assert row["trace_id"] == "Bearer [REDACTED]", row
        assert row["span_id"] == "[REDACTED]", row
        assert row["aws_request_id"] == "https://u:[REDACTED]@example.com/x", row


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ({"VICTORIALOGS_REDACT": "0af7651916cd43dd8448eb211c80319c"}, "trace_id"),
        ({"VICTORIALOGS_REDACT_KEYS": "span_id"}, "span_id"),
    ],
)
def test_a_users_rule_that_names_vlhooks_own_ids_applies_to_every_entry(
    script: Any, sink: Sink, setting: dict[str, str], field: str
) -> None:
    """A trace field's name on the deny list redacts it in lines as in records (before, lines
    took vlhook's own ids unexamined). A pattern of the user's that matches a trace id does
    too: its literal is looked for in vlhook's own ids, which lines and records otherwise
    carry unexamined."""
    code = EVERY_PATH
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    run = run_python(script(code), sink.env(TRACEPARENT=traceparent, **setting))
    assert run.rc == 0, run.err
    rows = sink.settle(72)
    assert len(rows) == 72
    assert {row[field] for row in rows} == {"[REDACTED]"}
