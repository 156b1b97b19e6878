"""logging's own handlers that hand a record to other handlers after its logging call has
returned: `QueueListener` (and Python 3.12's `queue_handler` configuration, built on it) and
`MemoryHandler`. The record is captured where the program logged it; what those handlers print
later is its text, which must not be stored a second time. Run for real, checked on what a
real VictoriaLogs stored, the console byte for byte as without vlhook."""

from __future__ import annotations

from typing import Any

from conftest import as_without_vlhook, messages

QUEUE_LISTENER = """\
import logging, logging.handlers, queue, sys
q = queue.SimpleQueue()
listener = logging.handlers.QueueListener(
    q, logging.StreamHandler(sys.stderr), logging.StreamHandler(sys.stdout))
logging.getLogger().addHandler(logging.handlers.QueueHandler(q))
listener.start()
logging.getLogger("svc").warning("disk almost full")
logging.getLogger("svc").error("disk full", extra={"mount": "/data"})
print("printed by the program")
listener.stop()
"""


def test_a_queue_listeners_output_is_its_records_not_lines_of_their_own(
    script: Any, sink: Any
) -> None:
    """Each record was stored once as a record and once more as a line for each handler of
    the listener's, printed on its thread."""
    as_without_vlhook(script(QUEUE_LISTENER), sink.env())
    rows = sink.settle(3)
    assert sorted((r["_msg"], r["level"], r["stream"]) for r in rows) == [
        ("disk almost full", "WARNING", "logging"),
        ("disk full", "ERROR", "logging"),
        ("printed by the program", "INFO", "stdout"),
    ]
    assert next(r for r in rows if r["_msg"] == "disk full")["mount"] == "/data"


def memory_program(flush_level: str, body: str) -> str:
    """A program whose root logger keeps records in a MemoryHandler (flushed at `flush_level`
    or by the program) for a StreamHandler to stderr, then runs `body` (`log`: a logger)."""
    return (
        "import logging, logging.handlers\n"
        "memory = logging.handlers.MemoryHandler(\n"
        f"    capacity=1000, flushLevel=logging.{flush_level}, target=logging.StreamHandler())\n"
        "logging.getLogger().addHandler(memory)\n"
        "log = logging.getLogger('batch')\n" + body
    )


MEMORY_HANDLER = memory_program("CRITICAL", """\
log.warning("job started")
log.warning("job finished")
memory.flush()
log.warning("left for the shutdown's flush")
""")  # fmt: skip


def test_a_memory_handlers_flush_is_its_records_not_lines_of_their_own(
    script: Any, sink: Any
) -> None:
    """Records kept by a MemoryHandler and printed by its flush (called by the program, or by
    logging's shutdown at exit) were each stored once more as a line."""
    as_without_vlhook(script(MEMORY_HANDLER), sink.env())
    rows = sink.settle(3)
    expected = ["job finished", "job started", "left for the shutdown's flush"]
    assert sorted(messages(rows)) == expected
    assert {(r["level"], r["stream"], r["logger"]) for r in rows} == {
        ("WARNING", "logging", "batch")
    }


FLUSHED_BY_A_RECORD = memory_program("ERROR", """\
log.warning("kept")
log.error("flushes the rest")
""")  # fmt: skip


def test_a_flush_a_record_sets_off_stays_that_records(script: Any, sink: Any) -> None:
    as_without_vlhook(script(FLUSHED_BY_A_RECORD), sink.env())
    rows = sink.settle(2)
    assert sorted((r["_msg"], r["level"]) for r in rows) == [
        ("flushes the rest", "ERROR"), ("kept", "WARNING")
    ]  # fmt: skip


FAILING_HANDLER = """\
import logging, logging.handlers, queue
class Broken(logging.StreamHandler):
    def format(self, record):
        raise RuntimeError("handler broke")
q = queue.SimpleQueue()
listener = logging.handlers.QueueListener(q, Broken())
logging.getLogger().addHandler(logging.handlers.QueueHandler(q))
listener.start()
logging.getLogger("svc").warning("goes to a broken handler")
listener.stop()
"""


def test_a_listeners_failing_handler_is_reported_as_without_vlhook(script: Any, sink: Any) -> None:
    """logging reports a failing handler with the call stack from the first frame outside its
    own files: no frame of vlhook's shows there (as_without_vlhook compares stderr)."""
    bare, _ = as_without_vlhook(script(FAILING_HANDLER), sink.env())
    assert b"--- Logging error ---" in bare.stderr and b"handler broke" in bare.stderr
    assert b"Call stack:" in bare.stderr
    rows = sink.settle(1)
    assert messages(rows) == ["goes to a broken handler"]
