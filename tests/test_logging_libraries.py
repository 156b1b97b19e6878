"""loguru and structlog, run for real in their common forms, checked on what a real
VictoriaLogs stored: one entry per record with its level, message, fields and exception; the
console exactly as without vlhook (numbers masked: both libraries print the time, loguru's
JSON the process id and elapsed time too, structlog's tracebacks objects' addresses)."""

from __future__ import annotations

import re
from typing import Any

from conftest import Run, messages, run_python

EXCEPTION = "try:\n    1 / 0\nexcept ZeroDivisionError:\n    log.exception('boom')\n"


def same_console(bare: Run, hooked: Run) -> None:
    def steady(data: bytes) -> bytes:
        return re.sub(rb"0x[0-9a-f]+|\d+", b"0", data)

    assert hooked.rc == bare.rc == 0
    assert (steady(hooked.stdout), steady(hooked.stderr)) == (
        steady(bare.stdout),
        steady(bare.stderr),
    )


def run_both(path: Any, sink: Any, **env: str) -> Run:
    bare = run_python(path, env, dropin=False)
    hooked = run_python(path, sink.env(**env))
    same_console(bare, hooked)
    return bare


def zero_division(row: dict[str, str]) -> None:
    assert row["level"] == "ERROR" and row["exception.type"] == "ZeroDivisionError"
    assert row["exception.message"] == "division by zero"
    assert row["exception.stacktrace"].startswith("Traceback (most recent call last):")
    assert "1 / 0" in row["exception.stacktrace"]


# -- loguru -----------------------------------------------------------------------------------


def test_loguru_exception_is_one_error_entry(script: Any, sink: Any) -> None:
    path = script("from loguru import logger as log\nlog.info('before')\n" + EXCEPTION)
    bare = run_both(path, sink)
    assert b"ZeroDivisionError: division by zero" in bare.stderr
    before, boom = sink.settle(2)
    assert (before["_msg"], before["level"], boom["_msg"]) == ("before", "INFO", "boom")
    zero_division(boom)
    assert boom["logger"] == "__main__" and boom["code.function"] == "<module>"
    assert boom["code.line"] == "6" and boom["stream"] == "logging"


def test_loguru_json_sink_next_to_the_default_one(script: Any, sink: Any) -> None:
    """`logger.add(sys.stdout, serialize=True)` beside the default stderr sink: each record is
    printed twice, and is one entry, with loguru's nested level, message and extra."""
    path = script(
        "import sys\nfrom loguru import logger as log\n"
        "log.add(sys.stdout, serialize=True)\n"
        "log.warning('disk {}% full', 91)\n"
        "log.bind(order=7, user={'id': 'u1'}).info('order placed')\n"
        "log.debug('below VICTORIALOGS_LOG_LEVEL: not shipped')\n" + EXCEPTION
    )
    bare = run_both(path, sink)
    assert bare.stdout.count(b'"record"') == 4 and bare.stderr.count(b" | ") >= 8
    rows = sink.settle(3)
    assert messages(rows) == ["disk 91% full", "order placed", "boom"]
    assert [r["level"] for r in rows] == ["WARNING", "INFO", "ERROR"]
    assert rows[1]["order"] == "7" and rows[1]["user.id"] == "u1"
    zero_division(rows[2])


def test_loguru_trace_records_ship_with_the_programs_own_log_level_trace(
    script: Any, sink: Any
) -> None:
    """LOG_LEVEL=TRACE, as a program using loguru sets for itself: its TRACE records ship
    (named DEBUG), and those of a stdlib level 5 too; below that, nothing."""
    path = script(
        "import logging, sys\nfrom loguru import logger as log\n"
        "log.remove()\nlog.add(sys.stderr, level='TRACE')\n"
        "log.trace('a trace')\nlog.debug('a debug')\n"
        "logging.basicConfig(level=1)\nlogging.log(5, 'level 5')\nlogging.log(4, 'level 4')\n"
    )
    run_both(path, sink, LOG_LEVEL="TRACE")
    rows = sink.settle(3)
    assert [(r["_msg"], r["level"]) for r in rows] == [
        ("a trace", "DEBUG"), ("a debug", "DEBUG"), ("level 5", "DEBUG")]  # fmt: skip


def test_loguru_enqueued_sinks(script: Any, sink: Any) -> None:
    """Sinks with enqueue=True write from loguru's own thread, each a copy of the record."""
    path = script(
        "import sys\nfrom loguru import logger as log\n"
        "log.remove()\n"
        "log.add(sys.stdout, enqueue=True)\n"
        "log.add(sys.stderr, enqueue=True, serialize=True)\n"
        "for i in range(3):\n    log.error('failure {}', i)\n"
        "log.complete()\n"
    )
    run_both(path, sink)
    rows = sink.settle(3)
    assert messages(rows) == ["failure 0", "failure 1", "failure 2"]
    assert {r["level"] for r in rows} == {"ERROR"}


def test_loguru_enqueued_exception_keeps_its_traceback(script: Any, sink: Any) -> None:
    """A sink with enqueue=True receives a copy of the record without its traceback object
    (loguru pickles it): the stacktrace came to `ZeroDivisionError: division by zero` alone.
    The text loguru formatted before queuing it holds the traceback."""
    path = script(
        "import sys\nfrom loguru import logger as log\n"
        "log.remove()\nlog.add(sys.stderr, enqueue=True)\n" + EXCEPTION + "log.complete()\n"
    )
    run_both(path, sink)
    (boom,) = sink.settle(1)
    zero_division(boom)


def test_loguru_records_of_forked_children_into_an_enqueued_sink(script: Any, sink: Any) -> None:
    """Forked children's records reach the parent's sink: every child's main thread has the
    same id, and records of the same message in the same microsecond were taken for one record
    written by two sinks (1 to 4 of 1,200 lost, without a word)."""
    path = script(
        "import os, sys\nfrom loguru import logger as log\n"
        "log.remove()\nlog.add(sys.stderr, enqueue=True, format='{message}')\n"
        "children = []\n"
        "for _ in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        for _ in range(300):\n            log.info('tick')\n"
        "        log.complete()\n        os._exit(0)\n"
        "    children.append(pid)\n"
        "for pid in children:\n    os.waitpid(pid, 0)\n"
        "log.complete()\n"
    )
    bare = run_python(path, {}, dropin=False)
    assert bare.stderr.count(b"tick\n") == 1200
    run_python(path, sink.env())
    # (From Python 3.12 on, a fork with loguru's thread running warns: one entry more.)
    assert messages(sink.settle(1200, timeout=20)).count("tick") == 1200


def test_loguru_printed_by_the_programs_own_sink(script: Any, sink: Any) -> None:
    """A sink that prints the text itself: loguru's default text format and its serialized
    JSON are understood from the printed lines."""
    path = script(
        "from loguru import logger as log\n"
        "log.remove()\n"
        "log.add(lambda m: print(m, end=''))\n"
        "log.add(lambda m: print(m, end=''), serialize=True)\n"
        "log.bind(order=7).warning('careful')\n" + EXCEPTION
    )
    run_both(path, sink)
    rows = sink.settle(4)
    # The JSON's entries have the record's time, the text's the time it was printed.
    json_warning, json_boom = (r for r in rows if "code.line" in r)
    text_warning, text_boom = (r for r in rows if "code.line" not in r)
    assert text_warning["level"] == json_warning["level"] == "WARNING"
    assert text_warning["_msg"].endswith(" | WARNING  | __main__:<module>:5 - careful")
    assert (json_warning["_msg"], json_warning["order"]) == ("careful", "7")
    assert json_warning["code.line"] == "5" and json_warning["logger"] == "__main__"
    assert text_boom["_msg"].endswith(" - boom") and json_boom["_msg"] == "boom"
    for row in (text_boom, json_boom):
        assert row["level"] == "ERROR" and row["exception.type"] == "ZeroDivisionError"
        assert "1 / 0" in row["exception.stacktrace"]


def test_loguru_receiving_logging_records(script: Any, sink: Any) -> None:
    """loguru's documented InterceptHandler: a logging record printed by loguru is one entry."""
    path = script(
        "import inspect, logging\nfrom loguru import logger\n"
        "class InterceptHandler(logging.Handler):\n"
        "    def emit(self, record):\n"
        "        frame, depth = inspect.currentframe(), 0\n"
        "        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):\n"
        "            frame = frame.f_back\n"
        "            depth += 1\n"
        "        logger.opt(depth=depth, exception=record.exc_info).log(\n"
        "            record.levelname, record.getMessage())\n"
        "logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)\n"
        "import sys\nlogger.remove()\nlogger.add(sys.stderr, enqueue=sys.argv[1] == 'True')\n"
        "logging.getLogger('app').warning('through logging')\n"
        "logger.info('straight to loguru')\n"
        "logger.complete()\n"
    )
    for enqueue in ("False", "True"):  # a sink of loguru's own thread: not the record's
        hooked = run_python(path, sink.env(VICTORIALOGS_FIELDS=f"test_id={sink.test_id},"
                                           f"enqueue={enqueue}"), args=(enqueue,))  # fmt: skip
        assert hooked.rc == 0, hooked.err
        rows = [row for row in sink.settle(4 if enqueue == "True" else 2)
                if row["enqueue"] == enqueue]  # fmt: skip
        assert messages(rows) == ["through logging", "straight to loguru"]
        assert [r["level"] for r in rows] == ["WARNING", "INFO"]


# -- structlog --------------------------------------------------------------------------------


def test_structlog_default_console_output(script: Any, sink: Any) -> None:
    path = script(
        "import structlog\nlog = structlog.get_logger()\n"
        "log.info('signed in', user='ann')\nlog.warning('disk low', pct=91)\n" + EXCEPTION
    )
    bare = run_both(path, sink)
    assert b"[warning  ] disk low" in bare.stdout
    rows = sink.settle(3)
    assert [r["level"] for r in rows] == ["INFO", "WARNING", "ERROR"]
    assert rows[0]["_msg"].endswith("[info     ] signed in                      user=ann")
    assert rows[2]["_msg"].endswith("[error    ] boom")
    zero_division(rows[2])


def test_structlog_coloured_console_output(script: Any, sink: Any) -> None:
    path = script(
        "import structlog\n"
        "structlog.configure(processors=[structlog.processors.add_log_level,"
        " structlog.dev.ConsoleRenderer(colors=True)])\n"
        "log = structlog.get_logger()\n"
        "log.warning('disk low', pct=91)\nlog.error('failed')\n"
    )
    bare = run_both(path, sink)
    assert b"\x1b[" in bare.stdout
    rows = sink.settle(2)
    assert [r["level"] for r in rows] == ["WARNING", "ERROR"]
    assert rows[0]["_msg"].startswith("[warning  ] disk low") and "\x1b" not in rows[0]["_msg"]


STDLIB = (
    "import logging, sys, structlog\n"
    "structlog.configure(processors=[{processors}],"
    " logger_factory=structlog.stdlib.LoggerFactory(),"
    " wrapper_class=structlog.stdlib.BoundLogger)\n"
)


def test_structlog_json_through_logging(script: Any, sink: Any) -> None:
    processors = (
        "structlog.stdlib.add_log_level, structlog.processors.TimeStamper(fmt='iso'),"
        " structlog.processors.format_exc_info, structlog.processors.JSONRenderer()"
    )
    path = script(
        STDLIB.format(processors=processors)
        + "logging.basicConfig(format='%(message)s', stream=sys.stdout, level=logging.INFO)\n"
        "log = structlog.get_logger('shop')\n"
        "log.warning('disk low', pct=91)\n" + EXCEPTION.replace("'boom'", "'boom', user='ann'")
    )
    run_both(path, sink)
    low, boom = sink.settle(2)
    assert (low["_msg"], low["level"], low["pct"], low["logger"]) == (
        "disk low",
        "WARNING",
        "91",
        "shop",
    )
    assert (boom["_msg"], boom["user"], boom["stream"]) == ("boom", "ann", "logging")
    zero_division(boom)


def test_structlog_processor_formatter(script: Any, sink: Any) -> None:
    """structlog's ProcessorFormatter: the record's message is the event dict itself."""
    path = script(
        STDLIB.format(
            processors="structlog.stdlib.add_log_level,"
            " structlog.stdlib.ProcessorFormatter.wrap_for_formatter"
        )
        + "handler = logging.StreamHandler(sys.stdout)\n"
        "handler.setFormatter(structlog.stdlib.ProcessorFormatter("
        "processor=structlog.dev.ConsoleRenderer(colors=False)))\n"
        "logging.basicConfig(handlers=[handler], level=logging.INFO)\n"
        "log = structlog.get_logger('shop')\n"
        "log.warning('disk low', pct=91)\n" + EXCEPTION
    )
    run_both(path, sink)
    low, boom = sink.settle(2)
    assert (low["_msg"], low["level"], low["pct"]) == ("disk low", "WARNING", "91")
    assert boom["_msg"] == "boom"
    zero_division(boom)


def test_structlog_processor_formatter_rendering_json(script: Any, sink: Any) -> None:
    """The setup structlog documents for logging: the event dict as the record's message,
    rendered as JSON by the formatter; each record stored once with the dict's fields, the
    context's, the logger's name, its secrets masked, and its exception."""
    path = script(
        STDLIB.format(
            processors="structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,"
            " structlog.stdlib.add_logger_name,"
            " structlog.stdlib.ProcessorFormatter.wrap_for_formatter"
        )
        + "handler = logging.StreamHandler(sys.stdout)\n"
        "handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=["
        "structlog.stdlib.ProcessorFormatter.remove_processors_meta,"
        " structlog.processors.TimeStamper(fmt='iso'), structlog.processors.format_exc_info,"
        " structlog.processors.JSONRenderer()]))\n"
        "logging.basicConfig(handlers=[handler], level=logging.INFO)\n"
        "structlog.contextvars.bind_contextvars(request_id='r-1')\n"
        "log = structlog.get_logger('shop')\n"
        "for n in range(300):\n"
        "    log.info('order placed', order_id=n, user='amy')\n"
        "log.warning('login', user='ann', password='hunter2')\n" + EXCEPTION
    )
    run_both(path, sink)
    rows = sink.settle(302)
    assert len(rows) == 302
    orders = [row for row in rows if row["_msg"] == "order placed"]
    assert sorted(int(row["order_id"]) for row in orders) == list(range(300))
    assert all((row["level"], row["logger"], row["user"], row["request_id"], row["stream"])
               == ("INFO", "shop", "amy", "r-1", "logging") for row in orders)  # fmt: skip
    assert not any("event" in row or "timestamp" in row for row in orders)
    login = next(row for row in rows if row["_msg"] == "login")
    assert (login["level"], login["password"], login["user"]) == ("WARNING", "[REDACTED]", "ann")
    zero_division(next(row for row in rows if row["_msg"] == "boom"))


def test_structlog_json_exceptions(script: Any, sink: Any) -> None:
    """A printed JSON line's `exception`: a traceback (format_exc_info) or its frames
    (dict_tracebacks)."""
    path = script(
        "import structlog\n"
        "for exceptions in (structlog.processors.format_exc_info,"
        " structlog.processors.dict_tracebacks):\n"
        "    structlog.configure(processors=[structlog.processors.add_log_level, exceptions,"
        " structlog.processors.JSONRenderer()])\n"
        "    log = structlog.get_logger()\n"
        + "".join("    " + line + "\n" for line in EXCEPTION.splitlines())
    )
    run_both(path, sink)
    text, frames = sink.settle(2)
    assert messages([text, frames]) == ["boom", "boom"]
    zero_division(text)
    for row in (text, frames):
        assert row["exception.type"] == "ZeroDivisionError" and "exception" not in row
        assert 'app.py", line 6, in <module>' in row["exception.stacktrace"]
    assert frames["exception.stacktrace"].endswith("\nZeroDivisionError: division by zero")


INTERLEAVED = """
import logging, sys, threading
logging.basicConfig(stream=sys.stderr, format="%(message)s", level=logging.INFO)
log = logging.getLogger("app")
def fails():
    raise ValueError("thread 150")
for i in range(300):
    print(f"line {i}")
    if i % 3:
        log.info("record %d", i)
        log.warning("record %d again", i)
    if i == 150:
        thread = threading.Thread(target=fails, name="worker")
        thread.start()
        thread.join()
import vlhook
vlhook.flush(10)  # by the sender thread's own path (the exit takes one capture at a time)
"""


def test_records_and_lines_keep_the_programs_order(
    script: Any, receiver: Any, tmp_path: Any
) -> None:
    """Runs of records are made into entries together: each still comes after the lines
    written before it and before those written after it (as sent, not only by _time)."""
    env = {"VICTORIALOGS_URL": receiver.url, "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool")}
    run = run_python(script(INTERLEAVED), env)
    assert run.rc == 0
    expected = []
    for i in range(300):
        expected.append(f"line {i}")
        if i % 3:
            expected += [f"record {i}", f"record {i} again"]
        if i == 150:
            expected.append("ValueError: thread 150")
    sent = [row["_msg"] for row in receiver.entries()]
    assert [m.rsplit("\n", 1)[-1] for m in sent] == expected
