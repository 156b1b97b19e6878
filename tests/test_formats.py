"""Unit tests of what common logging libraries print, understood: `vlhook._formats`, a record's
line and its traceback written at once (`_lines`), and how entries are made of them (`_entry`).
The libraries themselves run for real in test_logging_libraries.py."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any, TypeVar

import pytest

from vlhook._captures import Line, record, text
from vlhook._captures import line as make_line
from vlhook._config import load
from vlhook._entry import Entry, EntryBuilder
from vlhook._formats import exception_key, loguru_json, strip_colours, traceback_fields
from vlhook._lines import LineAssembler
from vlhook._stats import Stats

T_NS = 1_700_000_000_123_456_789
T = TypeVar("T")


def builder() -> EntryBuilder:
    return EntryBuilder(load({}), Stats())


def one(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


def formatted(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException as caught:
        return "".join(traceback.format_exception(type(caught), caught, caught.__traceback__))


def feed(*writes: str) -> list[Line]:
    asm = LineAssembler()
    out: list[Line] = []
    for index, data in enumerate(writes):
        asm.feed(text(0, data, index, 1, None), out)
    asm.flush(out, final=True, now_ns=10**18)
    return out


# -- a record's line and its traceback ---------------------------------------------------------


def test_line_and_traceback_written_at_once_are_one_entry() -> None:
    tb = formatted(ZeroDivisionError("division by zero"))
    (only,) = feed(f"12:00:01 [error    ] boom\n{tb}", "after\n")[:1]
    entry = one(builder().from_line(only))
    assert entry["_msg"] == "12:00:01 [error    ] boom" and entry["level"] == "ERROR"
    assert entry["exception.type"] == "ZeroDivisionError"
    assert entry["exception.message"] == "division by zero"
    assert entry["exception.stacktrace"] == tb.rstrip("\n")


def test_the_lines_level_is_the_entrys() -> None:
    tb = formatted(ValueError("bad"))
    lines = feed(f"2024-01-01 10:00:00 | WARNING  | mod:f:3 - retrying\n{tb}")
    entry = one(builder().from_line(one(lines)))
    assert entry["level"] == "WARNING" and entry["exception.type"] == "ValueError"


def test_a_line_naming_no_level_before_a_traceback_is_an_error() -> None:
    tb = formatted(KeyError("k"))
    entry = one(builder().from_line(one(feed(f"lookup failed\n{tb}"))))
    assert (entry["_msg"], entry["level"]) == ("lookup failed", "ERROR")


def test_a_line_and_a_traceback_written_apart_stay_apart() -> None:
    """Only one write makes one record: a line printed before a traceback is its own entry."""
    tb = formatted(KeyError("k"))
    lines = feed("before\n", tb, "after\n")
    assert [line.text.split("\n")[0] for line in lines] == [
        "before", "Traceback (most recent call last):", "after"
    ]  # fmt: skip


def test_the_start_of_the_line_may_come_in_an_earlier_write() -> None:
    tb = formatted(KeyError("k"))
    (line, after) = feed("[error] lookup ", f"failed\n{tb}", "after\n")
    assert line.text.startswith("[error] lookup failed\nTraceback") and line.t_ns == 0
    assert after.text == "after"


def test_printed_traceback_alone_gets_its_exception_type() -> None:
    tb = formatted(KeyError("k"))
    entry = one(builder().from_line(one(feed(tb))))
    assert entry["_msg"] == tb.rstrip("\n") and entry["level"] == "ERROR"
    assert (entry["exception.type"], entry["exception.message"]) == ("KeyError", "'k'")
    assert "exception.stacktrace" not in entry  # it is the message already


def lambda_error_report(exc: BaseException) -> str:
    """What awslambdaric prints for a handler that raised, in its text format (its own code)."""
    from awslambdaric import bootstrap

    printed: list[str] = []

    class Sink:
        def log_error(self, lines: list[str]) -> None:
            printed.append(bootstrap.ERROR_LOG_LINE_TERMINATE.join(lines) + "\n")

    try:
        raise exc
    except BaseException:
        bootstrap.log_error(bootstrap.build_fault_result(sys.exc_info(), None), Sink())
    return one(printed)


@pytest.mark.parametrize("exc", [ValueError("cannot process bob: no stock"), KeyError("k")])
def test_a_lambda_runtimes_error_report_is_an_error_with_its_exception(exc: Exception) -> None:
    """awslambdaric prints a handler's error as `[ERROR] Type: message` and the traceback, its
    lines ended by carriage returns and indented with no-break spaces: one ERROR entry, which
    had no `exception.*` and kept those characters in its message."""
    report = lambda_error_report(exc)
    assert report.startswith("[ERROR] ") and "\r" in report and "\u00a0" in report
    name, message = type(exc).__name__, str(exc)
    [line] = feed(report)
    expected = report.rstrip("\n").replace("\r", "\n").replace("\u00a0", " ")
    b = builder()
    made: list[list[Any]] = [b.from_line(line), b.from_lines([line]), b.written_lines([line])]
    for entries in made:
        entry = one(entries)
        assert isinstance(entry, dict), entry
        assert entry["_msg"] == expected and entry["_msg"].startswith(f"[ERROR] {name}: {message}")
        assert "File " in entry["_msg"] and "raise exc" in entry["_msg"]
        assert entry["level"] == "ERROR" and entry["exception.type"] == name
        assert entry["exception.message"] == message


@pytest.mark.parametrize(
    "printed",
    [
        "[ERROR] the disk is full: retrying",  # a program's own line: no exception named
        "[ERROR] ValueError: bad\rTraceback-like but not the runtime's",
    ],
)
def test_other_error_lines_are_not_taken_for_a_lambda_report(printed: str) -> None:
    entry = one(builder().from_line(one(feed(printed + "\n"))))
    assert entry["level"] == "ERROR" and "exception.type" not in entry
    assert entry["_msg"] == printed.replace("\r", "\n")  # one line's lines


@pytest.mark.parametrize(
    ("trace", "fields"),
    [
        ("Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: x: y",
         {"exception.type": "ValueError", "exception.message": "x: y"}),
        ("Traceback (most recent call last):\n  File \"a.py\", line 1\nmod.Timeout",
         {"exception.type": "mod.Timeout", "exception.message": ""}),
        # A message of several lines: its last line is not taken for the exception.
        ("Traceback (most recent call last):\n  File \"a.py\"\nValueError: first\nsecond",
         {"exception.type": "ValueError", "exception.message": "first"}),
        ("Traceback (most recent call last):\n  File \"a.py\", line 1\n", {}),
    ],
)  # fmt: skip
def test_traceback_fields(trace: str, fields: dict[str, str]) -> None:
    assert traceback_fields(trace) == fields


# -- colours ----------------------------------------------------------------------------------


def test_colour_codes_are_not_stored_and_the_level_is_read_without_them() -> None:
    coloured = "\x1b[2m2024-01-01 10:00:00\x1b[0m [\x1b[33m\x1b[1mwarning  \x1b[0m] \x1b[1mdisk low"
    assert strip_colours(coloured) == "2024-01-01 10:00:00 [warning  ] disk low"
    line = make_line(0, coloured, T_NS, None)
    for entry in (one(builder().from_line(line)), one(builder().from_lines([line]))):
        assert entry["_msg"] == "2024-01-01 10:00:00 [warning  ] disk low"
        assert entry["level"] == "WARNING"


# -- JSON lines -------------------------------------------------------------------------------


def test_msg_key_wins_and_message_stays_a_field() -> None:
    line = make_line(0, json.dumps({"message": "m", "_msg": "the _msg"}), T_NS, None)
    entry = one(builder().from_line(line))
    assert (entry["_msg"], entry["message"]) == ("the _msg", "m")


def test_exception_key_with_a_traceback() -> None:
    tb = formatted(KeyError("k")).rstrip("\n")
    obj: dict[str, Any] = {"event": "x", "exception": tb}
    assert exception_key(obj) == {"exception.type": "KeyError", "exception.message": "'k'",
                                  "exception.stacktrace": tb}  # fmt: skip
    assert obj == {"event": "x"}


def test_exception_key_with_structlog_frames_and_a_cause() -> None:
    obj: dict[str, Any] = {"exception": [
        {"exc_type": "ValueError", "exc_value": "wrapped", "is_cause": False,
         "frames": [{"filename": "a.py", "lineno": 9, "name": "f", "locals": {"pw": "s3cr3t"}}]},
        {"exc_type": "ZeroDivisionError", "exc_value": "division by zero", "is_cause": True,
         "frames": [{"filename": "a.py", "lineno": 7, "name": "g"}]},
    ]}  # fmt: skip
    fields = exception_key(obj)
    assert (fields["exception.type"], fields["exception.message"]) == ("ValueError", "wrapped")
    assert fields["exception.stacktrace"] == (
        'Traceback (most recent call last):\n  File "a.py", line 7, in g\n'
        "ZeroDivisionError: division by zero\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        'Traceback (most recent call last):\n  File "a.py", line 9, in f\nValueError: wrapped'
    )
    assert "s3cr3t" not in json.dumps(fields) and obj == {}


@pytest.mark.parametrize("value", ["not a traceback", 3, [1, 2], [{"no": "exc_type"}], None])
def test_other_exception_values_stay_a_field(value: Any) -> None:
    obj = {"exception": value}
    assert exception_key(obj) == {} and obj == {"exception": value}


LOGURU_TRACE = "Traceback (most recent call last):\n  File \"a.py\"\nKeyError: 'k'"
LOGURU: dict[str, Any] = {
    "text": f"2024-01-01 10:00:00.000 | ERROR    | app:f:3 - boom\n{LOGURU_TRACE}\n",
    "record": {
        "elapsed": {"repr": "0:00:00.01", "seconds": 0.01},
        "exception": {"type": "KeyError", "value": "'k'", "traceback": True},
        "extra": {"order": 7, "level": "not the level"},
        "file": {"name": "a.py", "path": "/srv/a.py"}, "function": "f",
        "level": {"icon": "x", "name": "ERROR", "no": 40}, "line": 3, "message": "boom",
        "module": "a", "name": "app", "process": {"id": 1, "name": "MainProcess"},
        "thread": {"id": 2, "name": "MainThread"},
        "time": {"repr": "2024-01-01 10:00:00+00:00", "timestamp": 1704103200.25},
    },
}  # fmt: skip


def test_loguru_serialized_line() -> None:
    entry = one(builder().from_line(make_line(1, json.dumps(LOGURU), T_NS, None)))
    assert entry == {
        "_time": "2024-01-01T10:00:00.250000000Z", "_msg": "boom", "level": "ERROR",
        "stream": "stderr", "logger": "app", "code.file": "/srv/a.py", "code.line": 3,
        "code.function": "f", "thread": "MainThread", "exception.type": "KeyError",
        "exception.message": "'k'", "order": 7,
        "exception.stacktrace": LOGURU_TRACE,
    }  # fmt: skip


@pytest.mark.parametrize(
    "obj",
    [{"text": "t", "record": {"level": "ERROR", "message": "m"}}, {"text": "t", "record": "r"},
     {"text": "t", "record": {"level": {"no": 40}, "message": "m"}, "more": 1}],
)  # fmt: skip
def test_other_objects_are_not_taken_for_loguru_lines(obj: dict[str, Any]) -> None:
    assert loguru_json(obj) is None


# -- logging records whose message is an object (structlog through logging) ---------------------


def record_entry(msg: Any, args: Any = None) -> Entry:
    rec = logging.LogRecord("shop", logging.WARNING, "/srv/a.py", 3, msg, args, None)
    message = rec.getMessage()
    return one(builder().from_item(record(rec, T_NS, 1, None, logging.WARNING, message, [])))


def test_record_with_a_json_message() -> None:
    tb = formatted(KeyError("k")).rstrip("\n")
    message = {"event": "disk low", "pct": 91, "level": "info",
               "timestamp": "2024-01-01T00:00:00Z", "exception": tb}  # fmt: skip
    entry = record_entry(json.dumps(message))
    assert (entry["_msg"], entry["pct"], entry["level"]) == ("disk low", 91, "WARNING")
    assert entry["_time"] != "2024-01-01T00:00:00Z" and "timestamp" not in entry
    assert entry["exception.type"] == "KeyError" and entry["exception.stacktrace"] == tb


def test_record_with_a_dict_message() -> None:
    entry = record_entry({"event": "disk low", "pct": 91, "_record": object(), "exc_info": True})
    assert (entry["_msg"], entry["pct"]) == ("disk low", 91)
    assert "_record" not in entry and "exc_info" not in entry


def test_record_with_an_ordinary_message_is_unchanged() -> None:
    entry = record_entry("{not json %s", ("x",))
    assert entry["_msg"] == "{not json x"
