"""Real interpreters with the drop-in: what arrives, and that the program is unchanged."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import as_without_vlhook, messages, run_python

PROGRAM = r"""
import logging, sys, threading
print("hello world")
print("ERROR: something bad")
sys.stdout.write("partial ")
sys.stdout.write("line\r\n")
sys.stdout.writelines(["one\n", "two\n"])
sys.stderr.write("to stderr\n")
sys.stdout.flush()
sys.stdout.buffer.write(b"binary \xff\xfe ok\n")
sys.stdout.buffer.flush()
print('{"message": "json line", "level": "warn", "k": 1, "nested": {"a": 2}}')
def work(i):
    for j in range(5):
        print(f"thread {i} line {j}")
threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
sys.stdout.write("no newline at end")
"""

EXPECTED = (
    ["hello world", "ERROR: something bad", "partial line", "one", "two", "to stderr",
     "binary \ufffd\ufffd ok", "json line"]
    + [f"thread {i} line {j}" for i in range(4) for j in range(5)]
    + ["no newline at end"]
)  # fmt: skip


def test_every_line_arrives_once_and_output_is_unchanged(script: Any, sink: Any) -> None:
    path = script(PROGRAM)
    as_without_vlhook(path, sink.env())
    rows = sink.settle(len(EXPECTED))
    assert sorted(messages(rows)) == sorted(EXPECTED)
    by_msg = {r["_msg"]: r for r in rows}
    assert by_msg["ERROR: something bad"]["level"] == "ERROR"
    assert by_msg["hello world"]["level"] == "INFO"
    assert by_msg["to stderr"]["stream"] == "stderr"
    assert by_msg["hello world"]["stream"] == "stdout"
    json_row = by_msg["json line"]
    assert (json_row["level"], json_row["k"], json_row["nested.a"]) == ("WARNING", "1", "2")
    for row in rows:
        assert row["container_name"] and row["job"] == "app" and row["pid"] and row["host"]
    # _time is when the line was written, in program order for one thread
    times = [by_msg[m]["_time"] for m in ("hello world", "ERROR: something bad", "partial line")]
    assert times == sorted(times)


def test_inactive_without_url_imports_nothing(script: Any) -> None:
    path = script(
        "import sys, threading\n"
        "mods = sorted(m for m in sys.modules if m.startswith(('vlhook', 'orjson', 'http')))\n"
        "print(mods, threading.active_count(), type(sys.stdout).__name__)\n"
    )
    for env in ({}, {"VICTORIALOGS_URL": "http://127.0.0.1:9", "VICTORIALOGS_DISABLE": "1"}):
        run = run_python(path, env)
        assert run.out.strip() == "[] 1 TextIOWrapper", env
        assert run.stderr == b""


def test_active_process_that_writes_nothing_starts_no_thread(script: Any, sink: Any) -> None:
    path = script(
        "import sys, threading\n"
        "heavy = [m for m in ('orjson', 'http.client', 'logging', 'json') if m in sys.modules]\n"
        "sys.__stderr__._vl_target.write(f'{heavy} {threading.active_count()}\\n')\n"
    )
    run = run_python(path, sink.env())
    assert run.err.strip() == "[] 1"


def test_a_silent_process_loads_no_delivery_and_no_exit_code(script: Any, sink: Any) -> None:
    """What a process that writes nothing loads, up to its very end (every import listed):
    the capture and the sender's front, never the pipeline, the exit's code or the spool."""
    run = run_python(script("pass\n"), sink.env(PYTHONPROFILEIMPORTTIME="1"))
    imported = imported_modules(run.err)
    assert "vlhook._sender" in imported  # it is active: the list is vlhook's
    later = [m for m in imported if m.startswith(("vlhook._delivery", "vlhook._exit",
                                                  "vlhook._entry"))]  # fmt: skip
    assert later == []
    assert run.err.count("\n") == len(imported)  # and it said nothing


def test_a_delivered_line_loads_no_spool_up_to_the_end(script: Any, sink: Any) -> None:
    """The spool and its replay load only when there is something to keep or replay, zlib
    only for a body worth compressing: not in a script whose one line is delivered, not even
    at its exit (every import is listed)."""
    run = run_python(script("print('hello')\n"), sink.env(PYTHONPROFILEIMPORTTIME="1"))
    assert run.out == "hello\n"
    imported = imported_modules(run.err)
    assert "vlhook._delivery.client" in imported  # the line was sent: the list is complete
    assert "vlhook._delivery.spool" not in imported
    assert "vlhook._delivery.replay" not in imported
    assert "zlib" not in imported  # a body this small goes uncompressed
    # What loads after the start (the program imports nothing) is vlhook's own or C: no module
    # of the standard library written in Python (`operator` cost ~0.3 ms where `_operator` does).
    if sys.version_info >= (3, 11):  # before, the first capture imports threading on purpose
        later = imported[imported.index("site") + 1 :]  # (Sender._threading_first_here)
        assert [name for name in later if not name.startswith("vlhook")
                and written_in_python(name)] == []  # fmt: skip
    assert messages(sink.settle(1)) == ["hello"]


def test_logging_records_carry_code_location_extra_and_exception(script: Any, sink: Any) -> None:
    path = script(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s %(message)s')\n"
        "log = logging.getLogger('shop.orders')\n"
        "def place():\n"
        "    log.info('order %s placed', 17, extra={'order_id': 17, 'user': {'id': 'u1'}})\n"
        "    try:\n"
        "        {}['missing']\n"
        "    except KeyError:\n"
        "        log.exception('lookup failed')\n"
        "place()\n"
        "log.debug('not shipped: below the program level')\n"
    )
    run = run_python(path, sink.env())
    assert run.err.count("order 17 placed") == 1
    rows = sink.settle(2)
    assert messages(rows) == ["order 17 placed", "lookup failed"]
    info, error = rows
    assert info["logger"] == "shop.orders" and info["stream"] == "logging"
    assert info["code.function"] == "place" and info["code.line"] == "5"
    assert info["code.file"].endswith("app.py") and info["thread"] == "MainThread"
    assert info["order_id"] == "17" and info["user.id"] == "u1"
    assert error["level"] == "ERROR" and error["exception.type"] == "KeyError"
    assert error["exception.message"] == "'missing'"
    assert "Traceback (most recent call last)" in error["exception.stacktrace"]


def test_extra_keys_that_are_no_str_are_shipped_as_their_text(script: Any, sink: Any) -> None:
    """logging takes any key in `extra=`: one that is no str cost the whole record (an
    internal error on stderr, nothing shipped or counted)."""
    log = "logging.getLogger('t').warning('odd keys', extra={1: 'one', (1, 2): 'two'})\n"
    path = script("import logging\n" + log)
    run = run_python(path, sink.env())
    assert run.err == "odd keys\n"
    (row,) = sink.settle(1)
    assert (row["_msg"], row["1"], row["(1, 2)"]) == ("odd keys", "one", "two")


def test_record_attributes_set_by_filters_ship_and_underscored_ones_do_not(
    script: Any, sink: Any
) -> None:
    """What a filter sets on a record ships as `extra=` does; names that begin with `_` do
    not (libraries keep their objects there: structlog's `_logger`), as configuration.md says."""
    path = script(
        "import logging\n"
        "log = logging.getLogger('t')\n"
        "def tag(record):\n"
        "    record.tenant, record._internal = 't1', object()\n"
        "    return True\n"
        "log.addFilter(tag)\n"
        "log.warning('tagged', extra={'_id': 1, 'doc': 2})\n"
        "logging.getLogger('u').warning('only private', extra={'_id': 1})\n"
    )
    run_python(path, sink.env())
    row, private = sorted(sink.settle(2), key=lambda row: row["_msg"] != "tagged")
    assert (row["_msg"], row["tenant"], row["doc"]) == ("tagged", "t1", "2")
    assert (private["_msg"], private["logger"]) == ("only private", "u")
    assert not [key for key in row if key.startswith("_") and key not in ("_msg", "_time")
                and not key.startswith("_stream")]  # fmt: skip


def test_a_logged_record_is_freed_at_once_as_without_vlhook(script: Any, sink: Any) -> None:
    """The capture reads what it ships of a record when its handlers are done, and keeps not
    the record itself: it is freed when the call returns (with the sender asleep), as without
    vlhook. Kept until the sender's turn, records cost logger.info() ~6 µs a call in a burst."""
    path = script(
        "import gc, logging, weakref\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "log = logging.getLogger('app')\n"
        "refs = []\n"
        "log.addFilter(lambda record: refs.append(weakref.ref(record)) or True)\n"
        "log.info('order %s', 17, extra={'order_id': 17})\n"
        "gc.collect()\n"
        "print('freed' if refs[0]() is None else 'held')\n"
    )
    env = sink.env(VICTORIALOGS_BATCH_LINES="100000", VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    run = run_python(path, env)
    assert run.out == "freed\n"
    (row,) = [r for r in sink.settle(2) if r["stream"] == "logging"]
    assert row["_msg"] == "order 17" and row["order_id"] == "17"


def test_printed_traceback_is_one_error_entry(script: Any, sink: Any) -> None:
    path = script(
        "import traceback\n"
        "print('before')\n"
        "try:\n"
        "    try:\n"
        "        1 / 0\n"
        "    except ZeroDivisionError as e:\n"
        "        raise ValueError('wrapped') from e\n"
        "except ValueError:\n"
        "    traceback.print_exc()\n"
        "print('after')\n"
    )
    run_python(path, sink.env())
    rows = sorted(sink.settle(3), key=lambda r: r["_time"])
    assert len(rows) == 3, messages(rows)
    before, tb, after = rows
    assert (before["_msg"], after["_msg"]) == ("before", "after")
    assert tb["level"] == "ERROR" and tb["stream"] == "stderr"
    assert tb["_msg"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in tb["_msg"]
    assert "direct cause" in tb["_msg"] and tb["_msg"].endswith("ValueError: wrapped")


WARNINGS_PROGRAM = """\
import gc, warnings
def old():
    warnings.warn("old() is deprecated", DeprecationWarning, stacklevel=2)
print("before")
old()
print("  indented, the program's own")
warnings.warn("careful")
warnings.simplefilter("always", ResourceWarning)
f = open(__file__)
del f
gc.collect()
warnings.warn("a message\\nof two lines")
print("after")
"""


@pytest.mark.parametrize("capture", ["stdout,stderr,logging", "fd,logging"])
def test_python_warnings_are_one_warning_entry_each_with_their_source_line(
    script: Any, sink: Any, capture: str
) -> None:
    """What Python's `warnings` module prints: the first line, the source line, a
    ResourceWarning's tracemalloc hint, in one entry at WARNING; nothing else joins it. Under
    `fd` the helper process reads what reached the descriptors, in chunks of many lines."""
    path = script(WARNINGS_PROGRAM)
    _, hooked = as_without_vlhook(path, {**sink.env(), "VICTORIALOGS_CAPTURE": capture})
    rows = sink.settle(7)
    printed = sorted((r["_msg"], r["level"]) for r in rows if r["stream"] == "stdout")
    own = "  indented, the program's own"
    assert printed == [(own, "INFO"), ("after", "INFO"), ("before", "INFO")]
    warned = [r for r in rows if r["stream"] == "stderr"]
    assert [r["level"] for r in warned] == ["WARNING"] * 4
    said = sorted((r["_msg"] for r in warned), key=lambda text: int(text.split(":")[1]))
    assert said[0] == f"{path}:5: DeprecationWarning: old() is deprecated\n  old()"
    assert said[1] == f'{path}:7: UserWarning: careful\n  warnings.warn("careful")'
    assert said[2].startswith(f"{path}:") and "ResourceWarning: unclosed file" in said[2]
    assert said[2].endswith("Enable tracemalloc to get the object allocation traceback")
    assert said[3] == (f"{path}:12: UserWarning: a message\nof two lines\n"
                       '  warnings.warn("a message\\nof two lines")')  # fmt: skip
    assert hooked.stderr.decode() == "".join(f"{text}\n" for text in said)


def test_a_warning_the_interpreter_prints_before_the_warnings_module_is_one_entry(
    script: Any, sink: Any
) -> None:
    """Until `warnings` is loaded the interpreter prints a warning itself, its source line in
    a write of its own: here a SyntaxWarning made when an imported module is compiled."""
    script("x = 1 is 1\n", name="legacy.py")
    path = script("import sys\nprint('warnings' in sys.modules)\nimport legacy\nprint('after')\n")
    env = {**sink.env(), "PYTHONDONTWRITEBYTECODE": "1"}
    bare, hooked = as_without_vlhook(path, env)
    assert hooked.out.startswith("False\n")  # the interpreter's own printing, in pieces
    rows = sorted(sink.settle(3), key=lambda r: r["_time"])
    printed = bare.stderr.decode()  # the message's wording differs between versions
    assert printed.startswith(f"{path.parent / 'legacy.py'}:1: SyntaxWarning: ")
    assert printed.endswith("\n  x = 1 is 1\n") and printed.count("\n") == 2
    assert [(r["_msg"], r["level"]) for r in rows] == [
        ("False", "INFO"), (printed[:-1], "WARNING"), ("after", "INFO")]  # fmt: skip


def test_a_json_object_printed_over_several_lines_is_one_entry_with_its_keys(
    script: Any, sink: Any
) -> None:
    """`print(json.dumps(obj, indent=2))`, as handlers print their events: one entry keeping
    the object's keys, as the same object printed on one line; pprint's text of a dict, which
    is no JSON, stays a line per entry."""
    path = script(
        "import json, pprint\n"
        "print(json.dumps({'message': 'pretty', 'level': 'error', 'user': {'id': 7}}, indent=2))\n"
        "print(json.dumps({'event': {'path': '/items', 'n': 2}}, indent=4))\n"
        "pprint.pprint({'k%d' % i: 'v' * 10 for i in range(8)})\n"
    )
    bare, _ = as_without_vlhook(path, sink.env())
    rows = sorted(sink.settle(10), key=lambda r: r["_time"])
    pretty, event, *dict_lines = rows
    assert (pretty["_msg"], pretty["level"], pretty["user.id"]) == ("pretty", "ERROR", "7")
    assert (event["event.path"], event["event.n"], event["level"]) == ("/items", "2", "INFO")
    assert event["_msg"] == bare.out.split("\n}\n", 2)[1] + "\n}"  # as printed: no message key
    # one write, so one time: the server returns them in any order
    assert sorted(r["_msg"] for r in dict_lines) == sorted(bare.out.splitlines()[-8:])


def test_long_message_is_split_into_numbered_parts(script: Any, sink: Any) -> None:
    path = script("print('x' * 300_000 + 'END')\nprint('next line')\n")
    run_python(path, sink.env(VICTORIALOGS_MAX_LINE_BYTES="65536"))
    rows = sink.settle(6)
    # The parts share one _time: the server returns them in any order; msg_part orders them.
    parts = sorted((r for r in rows if r["_msg"] != "next line"), key=lambda r: int(r["msg_part"]))
    assert [r["msg_part"] for r in parts] == [str(i) for i in range(1, 6)]
    assert {r["msg_parts"] for r in parts} == {"5"}
    assert "".join(r["_msg"] for r in parts) == "x" * 300_000 + "END"
    assert messages(rows)[-1] == "next line"  # nothing after the long line was lost


def test_secrets_are_redacted_before_leaving(script: Any, sink: Any) -> None:
    path = script(
        "print('key AKIAIOSFODNN7EXAMPLE used')\n"
        "print('Authorization: Bearer abcdefghijklmnop.qrstuv')\n"
        "print('db at postgres://admin:s3cret@db:5432/x')\n"
        "print('token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig_nature')\n"
    )
    run = run_python(path, sink.env())
    assert "s3cret" in run.out  # the program's own output is untouched
    shipped = "\n".join(messages(sink.settle(4)))
    for secret in ("AKIAIOSFODNN7EXAMPLE", "abcdefghijklmnop", "s3cret", "eyJzdWIi"):
        assert secret not in shipped
    assert shipped.count("[REDACTED]") == 4


def test_redaction_can_be_turned_off(script: Any, sink: Any) -> None:
    path = script("print('key AKIAIOSFODNN7EXAMPLE used')\n")
    run_python(path, sink.env(VICTORIALOGS_REDACT="off"))
    assert messages(sink.settle(1)) == ["key AKIAIOSFODNN7EXAMPLE used"]


def test_file_url_writes_json_lines(script: Any, tmp_path: Path) -> None:
    out = tmp_path / "logs.jsonl"
    path = script("print('to a file')\nimport logging\nlogging.warning('warned')\n")
    # A spool of its own: the machine-wide default may hold other programs' batches to replay.
    spool = str(tmp_path / "spool")
    run_python(path, {"VICTORIALOGS_URL": f"file://{out}", "VICTORIALOGS_SPOOL_DIR": spool})
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["_msg"] for r in rows] == ["to a file", "warned"]
    assert oct(out.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("capture", ["stdout", "logging", "stderr,logging"])
def test_capture_selects_sources(script: Any, sink: Any, capture: str) -> None:
    path = script(
        "import sys, logging\nprint('out')\nsys.stderr.write('err\\n')\nlogging.warning('rec')\n"
    )
    run_python(path, sink.env(VICTORIALOGS_CAPTURE=capture))
    expected = {"stdout": ["out"], "logging": ["rec"], "stderr,logging": ["err", "rec"]}[capture]
    rows = sink.settle(len(expected))
    assert sorted(messages(rows)) == expected


def imported_modules(err: str) -> list[str]:
    """The modules `-X importtime` (PYTHONPROFILEIMPORTTIME) listed on stderr, in order."""
    return [line.rsplit("|", 1)[-1].strip() for line in err.splitlines()
            if line.startswith("import time:")]  # fmt: skip


def written_in_python(module: str) -> bool:
    """Whether a module (of this interpreter's) is Python source, not C."""
    spec = importlib.util.find_spec(module)
    return spec is not None and (spec.origin or "").endswith(".py")
