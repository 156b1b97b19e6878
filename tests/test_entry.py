"""Unit and property tests of `vlhook._entry` (levels, times, JSON lines, splitting, keys) and
`vlhook._redact` (secrets never leave the process)."""

from __future__ import annotations

import calendar
import json
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlhook._captures import Line
from vlhook._captures import line as make_line
from vlhook._config import load
from vlhook._entry import (
    MAX_KEY_BYTES,
    Entry,
    EntryBuilder,
    _escaped_size,
    json_parts,
    rfc3339,
    split_utf8,
)
from vlhook._levels import detect_level
from vlhook._objects import MAX_VALUE_CHARS, valid_time
from vlhook._redact import MASK, Redactor, redact_text
from vlhook._stats import Stats

T_NS = 1_700_000_000_123_456_789
T_TEXT = "2023-11-14T22:13:20.123456789Z"
RFC3339 = re.compile(
    r"\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z\Z",
)
PROPS = settings(max_examples=300, deadline=None)


def builder(**env: str) -> tuple[EntryBuilder, Stats]:
    stats = Stats()
    return EntryBuilder(load(env), stats), stats


def line(text: str, forced: str = "", kind: int = 0) -> Line:
    return make_line(kind, text, T_NS, None, forced)


def one(entries: list[Entry]) -> Entry:
    assert len(entries) == 1, entries
    return entries[0]


# -- levels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("ERROR: x", "ERROR"),
        ("Error: x", "ERROR"),
        ("error: x", "ERROR"),
        ("[warn] x", "WARNING"),
        ("[ WARNING ] x", "WARNING"),
        ("level=error", "ERROR"),
        ('ts=1 level="warn" msg=x', "WARNING"),
        ("time=x level=debug msg=y", "DEBUG"),
        ("event='disk low' level='warning' pct=91", "WARNING"),  # structlog's KeyValueRenderer
        ("2024-01-01 12:00:00,123 INFO x", "INFO"),
        ("2024-01-01 12:00:00,123 ERROR x", "ERROR"),
        ("2024-01-01 12:00:00.123 | ERROR | y", "ERROR"),
        ("2024-01-01T12:00:00Z WARN x", "WARNING"),
        ("2024-01-01T12:00:00.5+02:00 [CRITICAL] x", "CRITICAL"),
        ("12:00:00 DEBUG x", "DEBUG"),
        ("x | ERROR | y", "INFO"),  # not leading: a pipe form only after a timestamp
        ("E x", "INFO"),
        ("error rate is 5%", "INFO"),
        ("errors: 0", "INFO"),
        ("WARNING:root:msg", "WARNING"),
        ("CRITICAL:app.db:gone", "CRITICAL"),
        ("DEBUG:asyncio:Using selector", "DEBUG"),
        ("[2024-01-01 10:00:00 +0000] [12] [ERROR] x", "ERROR"),
        ("[2024-01-01 10:00:00 +0000] [12] [INFO] Booting worker", "INFO"),
        ("FATAL x", "CRITICAL"),
        ("panic: x", "CRITICAL"),
        ("NOTICE x", "INFO"),
        ("ERR x", "ERROR"),
        ("ERROR", "ERROR"),
        ("ERRORS x", "INFO"),
        ("Hello: world", "INFO"),
        # `program: severity: message`, `file:line:col: severity: message`: argparse, GNU tools,
        # compilers, mypy. One name before the level, which takes its colon then.
        ("myprog: error: the following arguments are required: path", "ERROR"),
        ("gcc: error: x.c: No such file or directory", "ERROR"),
        ("src/app.c:10:5: warning: unused variable 'x'", "WARNING"),
        ("app/models.py:12: error: Incompatible types in assignment", "ERROR"),
        ("app/models.py:12: note: See https://mypy.rtfd.io", "INFO"),
        ("12:00:00 myprog: ERROR: gone", "ERROR"),
        ("myprog: fatal: not a repository", "CRITICAL"),
        ("Result: ERROR", "INFO"),
        ("Note: error handling changed", "INFO"),
        ("a: b: error: two names", "INFO"),
        ("user: errors: 0", "INFO"),
        # An exception's line, as a traceback ends and as programs print what they caught.
        ("ZeroDivisionError: division by zero", "ERROR"),
        ("CommandError: Unknown command: 'x'", "ERROR"),
        ("requests.exceptions.ConnectionError: refused", "ERROR"),
        ("ErrorCount: 3", "INFO"),
        ("MirrorErrors: none", "INFO"),
        ("ValueError", "INFO"),
        ("Information is free", "INFO"),
        ("[1/3] Building", "INFO"),
        ("[thread-1] WARNING x", "WARNING"),
        ("", "INFO"),
        ("   ", "INFO"),
        ("a level=error far " + "x" * 300, "ERROR"),
        ("x" * 300 + " level=error", "INFO"),  # logfmt only in the first 200 characters
        # Python's warnings: `<file>:<line>: <Category>: <message>`, maybe with a source line
        ("/app/job.py:7: DeprecationWarning: old() is deprecated", "WARNING"),
        ("<string>:1: SyntaxWarning: invalid escape sequence '\\d'", "WARNING"),
        ("C:\\My App\\job.py:12: UserWarning: careful", "WARNING"),
        ("sys:1: ResourceWarning: unclosed file", "WARNING"),
        ("job.py:3: Warning: the base category\n  warn('x')", "WARNING"),
        ("job.py:3: InsecureRequestWarning: Unverified HTTPS request", "WARNING"),
        ("saw a UserWarning: in job.py:3", "INFO"),
        ("job.py:3: has a UserWarning: inside", "INFO"),
        ("job.py: UserWarning: no line number", "INFO"),
        ("  job.py:3: UserWarning: indented (pytest's summary)", "INFO"),
        ("/" + "x" * 160 + ".py:3: UserWarning: named past the head", "INFO"),
    ],
)
def test_detect_level(text: str, level: str) -> None:
    assert detect_level(text) == level


@pytest.mark.parametrize(
    ("text", "level"),
    [("ERROR: boom", "ERROR"), ("[warn] careful", "WARNING"), ("plain", "INFO")],
)
def test_plain_line_gets_detected_level(text: str, level: str) -> None:
    b, _ = builder()
    entry = one(b.from_line(line(text, kind=1)))
    assert entry == {"_time": T_TEXT, "_msg": text, "level": level, "stream": "stderr"}


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        # As Python's json.dumps prints NaN and the infinities (orjson refuses them).
        ('{"msg": "m", "ratio": NaN, "up": Infinity, "l": [-Infinity, 1]}',
         {"_msg": "m", "ratio": "NaN", "up": "Infinity", "l": ["-Infinity", 1]}),
        # Read that way, an integer keeps every digit (written as text: see test_line_runs).
        (f'{{"msg": "m", "r": NaN, "id": {2**70}}}', {"_msg": "m", "r": "NaN", "id": 2**70}),
        ('{"msg": "NaN", "n": 1}', {"_msg": "NaN", "n": 1}),  # no such number: orjson reads it
        ('{"msg": "m", "ratio": NaN', None),  # not an object: text
        ('{"msg": "m", "ratio": NaN} {"b": 1}', None),
        ('{"msg": "m", "ratio": nan}', None),  # not as Python prints it
        ('{"a":' * 20_000 + "NaN" + "}" * 20_000, None),  # too deep to read: text
    ],
)  # fmt: skip
def test_printed_json_with_nan_or_infinity_is_read_as_an_object(
    text: str, fields: dict[str, Any]
) -> None:
    b, _ = builder()
    entries = b.from_line(line(text))
    if fields is None:  # in parts when long
        assert "".join(entry["_msg"] for entry in entries) == text
        assert {entry["level"] for entry in entries} == {"INFO"}
    else:
        assert {key: one(entries)[key] for key in fields} == fields


def test_forced_level_wins_and_json_is_not_parsed() -> None:
    b, _ = builder()
    text = '{"message": "x", "level": "debug"}'
    entry = one(b.from_line(line(text, forced="ERROR")))
    assert entry == {"_time": T_TEXT, "_msg": text, "level": "ERROR", "stream": "stdout"}


# A text made of pieces that trip the batch searches: level words in any case, secrets (the
# users' patterns' too: U+017F, the long s, is an `s` to `(?i)ssn`), a dotless i (upper-cases
# to "I"), JSON objects, colour codes.
_PIECES = st.sampled_from(
    ["ERROR:", "[warn]", "cr\u0131t:", "CRIT", '{"msg": "m", "level": "warn"}', "debug",
     "level=error", "x", " ", "12:00:01",
     "Bearer abcdefgh1234", "AKIAIOSFODNN7EXAMPLE", "https://u:pw@h/", "{", "}", '"k": 1', "\r",
     "é", "😀", "\x00", "trace", "panic", "Fatal", "[main]", "| DBG |", "error rate",
     "\x1b[31m", "\x1b[0m", "\x1b", "card=42", "CARD=7", "\u017fsn-9", "SSN-1"]
)  # fmt: skip
_BATCH_TEXT = st.lists(_PIECES | st.text(max_size=12), min_size=1, max_size=12).map("".join)


@PROPS
@given(
    st.lists(
        st.tuples(
            _BATCH_TEXT,
            st.sampled_from(["", "ERROR"]),
            st.sampled_from(
                [
                    None,
                    {"b": "v"},
                    {
                        "trace_id": "0af7651916cd43dd8448eb211c80319c",
                        "span_id": "b7ad6b7169203331",
                        "trace_flags": "01",
                    },
                ]
            ),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(
        [
            {},
            {"VICTORIALOGS_REDACT": "card=\\d+"},
            {"VICTORIALOGS_REDACT": "off"},
            {"VICTORIALOGS_REDACT": "(?i)ssn-\\d"},
        ]
    ),
)
def test_batch_of_lines_makes_the_same_entries_as_one_by_one(
    specs: list[tuple[str, str, Any]], env: dict[str, str]
) -> None:
    lines = [make_line(i % 2, text, T_NS + i, (None, bound) if bound else None, forced)
             for i, (text, forced, bound) in enumerate(specs) if text.strip()]  # fmt: skip
    b, _ = builder(VICTORIALOGS_MAX_LINE_BYTES="1024", **env)
    expected = [entry for one_line in lines for entry in b.from_line(one_line)]
    assert b.from_lines(lines) == expected


@pytest.mark.parametrize(
    "texts",
    [
        ["cr\u0131t: the dotless i upper-cases to CRIT", "plain"],
        ["İ lower-cases to two characters" + "İ" * 40, "ERROR: after it", "plain " * 20],
        ['{"msg": "json", "level": "warn"}', "plain"],
        ["plain", "WARN: x " + "y" * 300, "z" * 300 + " ERROR: not in the head"],
        ["token Bearer abcdefgh12345678", "plain"],
    ],
)
def test_batch_traps_make_the_same_entries_as_one_by_one(texts: list[str]) -> None:
    b, _ = builder()
    lines = [line(text) for text in texts]
    assert b.from_lines(lines) == [entry for one_line in lines for entry in b.from_line(one_line)]


# -- times ------------------------------------------------------------------------------------


def test_rfc3339_known_value() -> None:
    assert rfc3339(T_NS) == T_TEXT
    assert rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339(1) == "1970-01-01T00:00:00.000000001Z"
    assert rfc3339(999_999_999) == "1970-01-01T00:00:00.999999999Z"
    assert rfc3339(951_782_400 * 10**9) == "2000-02-29T00:00:00.000000000Z"


def _parse(text: str) -> int:
    m = RFC3339.match(text)
    assert m, text
    y, mo, d, h, mi, s, frac = (int(g) for g in m.groups())
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 10**9 + frac


@PROPS
@given(st.lists(st.integers(0, 253_402_300_799 * 10**9), min_size=1, max_size=20))
def test_rfc3339_round_trips_any_sequence(values: list[int]) -> None:
    # A sequence exercises the per-second cache: same second, other second, going back.
    for t_ns in [*values, *values[::-1]]:
        text = rfc3339(t_ns)
        assert RFC3339.match(text), text
        assert _parse(text) == t_ns


@PROPS
@given(st.integers(0, 4_102_444_800 * 10**9))
def test_rfc3339_microseconds_round_trip_via_datetime(t_ns: int) -> None:
    from datetime import datetime, timezone

    text = rfc3339(t_ns)
    parsed = datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    expected = datetime.fromtimestamp(t_ns // 10**9, timezone.utc).replace(
        microsecond=t_ns % 10**9 // 1000
    )
    assert parsed == expected


def test_rfc3339_of_now_round_trips() -> None:
    now = time.time_ns()
    assert _parse(rfc3339(now)) == now


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2024-01-01T00:00:00Z", True),
        ("2024-01-01T00:00:00.1Z", True),
        ("2024-01-01T00:00:00.123456789Z", True),
        ("2024-01-01T00:00:00+02:00", True),
        ("2024-01-01T00:00:00.5-07:30", True),
        ("2024-01-01T00:00:00.1234567890Z", False),  # > 9 digits
        ("2024-01-01T00:00:00", False),  # no zone
        ("2024-01-01 00:00:00Z", False),
        ("2024-01-01T00:00:00+0200", False),
        ("2024-01-01T00:00:00Zjunk", False),
        ("2024-01-01T00:00:00Z\n", False),
        ("yesterday", False),
        ("", False),
        (0, True),
        (1_700_000_000, True),
        (1_700_000_000.5, True),
        (-1, False),
        (-0.5, False),
        (True, False),
        (False, False),
        (None, False),
        ([2024], False),
        ({"t": 1}, False),
    ],
)
def test_valid_time(value: Any, ok: bool) -> None:
    assert valid_time(value) is ok


# -- JSON lines -------------------------------------------------------------------------------


def test_json_line_maps_message_level_time_and_keeps_nested() -> None:
    b, _ = builder()
    text = json.dumps(
        {
            "message": "hi",
            "level": "warn",
            "time": "2024-01-01T00:00:00Z",
            "a": {"b": [1, {"c": None}]},
            "n": 1.5,
            "ok": True,
        }
    )
    entry = one(b.from_line(line(text)))
    assert entry == {
        "_time": "2024-01-01T00:00:00Z",
        "_msg": "hi",
        "level": "WARNING",
        "stream": "stdout",
        "a": {"b": [1, {"c": None}]},
        "n": 1.5,
        "ok": True,
    }


@pytest.mark.parametrize("msg_key", ["message", "msg", "_msg", "event"])
def test_json_message_keys(msg_key: str) -> None:
    b, _ = builder()
    entry = one(b.from_line(line(json.dumps({msg_key: "the text", "k": "v"}))))
    assert entry["_msg"] == "the text"
    assert msg_key not in entry or msg_key == "_msg"
    assert entry["k"] == "v"


def test_json_first_non_empty_message_key_wins() -> None:
    b, _ = builder()
    entry = one(b.from_line(line('{"message": "", "msg": "second", "event": "third"}')))
    assert entry["_msg"] == "second"
    assert entry["message"] == ""
    assert entry["event"] == "third"


def test_json_without_message_key_keeps_the_line_as_message() -> None:
    b, _ = builder()
    text = '{"a": 1}'
    entry = one(b.from_line(line(text)))
    assert entry == {"_time": T_TEXT, "_msg": text, "level": "INFO", "stream": "stdout", "a": 1}


@pytest.mark.parametrize(
    ("key", "value", "level"),
    [
        ("level", "warn", "WARNING"),
        ("level", "ERROR", "ERROR"),
        ("levelname", "CRITICAL", "CRITICAL"),
        ("severity", "debug", "DEBUG"),
        ("severity", "notice", "INFO"),
        ("log.level", "fatal", "CRITICAL"),
        ("level", "trace", "DEBUG"),
    ],
)
def test_json_level_keys(key: str, value: str, level: str) -> None:
    b, _ = builder()
    entry = one(b.from_line(line(json.dumps({"message": "m", key: value}))))
    assert entry["level"] == level
    assert key not in entry or key == "level"


def test_json_unknown_level_word_stays_a_field_and_level_is_info() -> None:
    b, _ = builder()
    entry = one(b.from_line(line('{"message": "m", "severity": "verbose"}')))
    assert entry["level"] == "INFO"
    assert entry["severity"] == "verbose"


@PROPS
@given(st.tuples(st.integers(0, 13), st.integers(0, 32), st.integers(22, 25),
                 st.integers(58, 61), st.integers(58, 61),
                 st.sampled_from([0, 1900, 2000, 2024, 2026, 9999])),
       st.sampled_from(["Z", ".5Z", "+01:00"]))  # fmt: skip
def test_valid_time_tells_dates_and_times_as_a_calendar_does(
    parts: tuple[int, int, int, int, int, int], zone: str
) -> None:
    month, day, hour, minute, second, year = parts
    value = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{zone}"
    expected = (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
                and hour < 24 and minute < 60 and second < 60)  # fmt: skip
    assert valid_time(value) is expected


@pytest.mark.parametrize("time_key", ["_time", "timestamp", "time", "ts", "@timestamp"])
def test_json_valid_time_is_mapped(time_key: str) -> None:
    b, _ = builder()
    stamp = "2024-05-06T07:08:09.123+02:00"
    entry = one(b.from_line(line(json.dumps({"message": "m", time_key: stamp}))))
    assert entry["_time"] == stamp
    assert time_key == "_time" or time_key not in entry


def test_json_numeric_time_is_mapped() -> None:
    b, _ = builder()
    entry = one(b.from_line(line('{"message": "m", "ts": 1700000000.25}')))
    assert entry["_time"] == 1700000000.25
    assert "ts" not in entry


@pytest.mark.parametrize(
    ("time_key", "value"),
    [
        ("timestamp", "yesterday"),
        ("time", "2024-01-01 00:00:00"),
        ("ts", -5),
        ("@timestamp", True),
        ("time", {"sec": 1}),
    ],
)
def test_json_invalid_time_is_kept_as_its_own_field(time_key: str, value: Any) -> None:
    b, _ = builder()
    entry = one(b.from_line(line(json.dumps({"message": "m", time_key: value}))))
    assert entry["_time"] == T_TEXT
    assert entry[time_key] == value


def test_json_invalid_literal_time_field_does_not_hide_the_real_time() -> None:
    b, _ = builder()
    entry = one(b.from_line(line('{"message": "m", "_time": "garbage"}')))
    assert entry["_time"] == T_TEXT


def test_json_first_time_key_decides() -> None:
    b, _ = builder()
    text = '{"message": "m", "timestamp": "2024-01-01T00:00:00Z", "time": "2025-01-01T00:00:00Z"}'
    entry = one(b.from_line(line(text)))
    assert entry["_time"] == "2024-01-01T00:00:00Z"
    assert entry["time"] == "2025-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "text",
    ['{"message": "x"} trailing', "[1, 2]", '{"message": "x"', "{not json}", '"just a string"'],
)
def test_non_object_or_broken_json_is_plain_text(text: str) -> None:
    b, _ = builder()
    entry = one(b.from_line(line(text)))
    assert entry == {"_time": T_TEXT, "_msg": text, "level": "INFO", "stream": "stdout"}


def test_json_with_too_many_fields_is_plain_text() -> None:
    b, _ = builder()
    text = json.dumps({f"k{i}": i for i in range(1000)})
    entry = one(b.from_line(line(text)))
    assert entry["_msg"] == text
    assert "k0" not in entry


def test_json_line_with_trailing_whitespace_is_parsed() -> None:
    b, _ = builder()
    entry = one(b.from_line(line('{"msg": "x", "level": "error"}  ')))
    assert entry["_msg"] == "x"
    assert entry["level"] == "ERROR"


def test_invocation_and_bound_fields_are_added_bound_last() -> None:
    b, _ = builder()
    context = ({"request_id": "r1", "a": 1}, {"a": 2, "user": "u"})
    entries = b.from_line(make_line(0, "m", T_NS, context))
    assert one(entries) == {
        "_time": T_TEXT,
        "_msg": "m",
        "level": "INFO",
        "stream": "stdout",
        "request_id": "r1",
        "a": 2,
        "user": "u",
    }


# -- splitting --------------------------------------------------------------------------------


@PROPS
@given(st.text(st.characters(codec="utf-8"), max_size=300), st.integers(4, 64))
def test_split_utf8_parts_fit_join_and_never_cut_a_character(text: str, limit: int) -> None:
    data = text.encode("utf-8")
    parts = split_utf8(data, limit)
    assert "".join(parts) == text
    assert all(0 < len(p.encode("utf-8")) <= limit for p in parts)
    assert "\ufffd" not in "".join(parts) or "\ufffd" in text
    # greedy: every part but the last is cut only because the next character did not fit
    for part, following in zip(parts, parts[1:]):
        assert len(part.encode("utf-8")) + len(following[0].encode("utf-8")) > limit


def test_split_utf8_of_empty_is_empty() -> None:
    assert split_utf8(b"", 1024) == []


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_long_message_is_split_in_numbered_parts(char: str) -> None:
    b, stats = builder(VICTORIALOGS_MAX_LINE_BYTES="1024")
    message = char * 3001
    entries = b.from_line(make_line(1, message, T_NS, (None, {"user": "u"}), "ERROR"))
    data = message.encode()
    count = -(-len(data) // 1024)
    assert len(entries) >= count
    assert stats.split == 1
    assert "".join(e["_msg"] for e in entries) == message
    for number, entry in enumerate(entries, 1):
        assert len(entry["_msg"].encode()) <= 1024
        assert entry["msg_part"] == number
        assert entry["msg_parts"] == len(entries)
        rest = {k: v for k, v in entry.items() if k not in ("_msg", "msg_part", "msg_parts")}
        assert rest == {"_time": T_TEXT, "level": "ERROR", "stream": "stderr", "user": "u"}


@PROPS
@given(st.lists(st.sampled_from(["x", "\\", '"', "\n", "é", "\x01", "😀", " hello world"]),
                max_size=400), st.integers(16, 128))  # fmt: skip
def test_json_parts_fit_join_and_take_all_that_fits(pieces: list[str], limit: int) -> None:
    """Parts of a text that escaping grows, each as long as fits: a line of 32,765 backslashes
    and a few words was cut into 5 parts, its last words into pieces of 2, 3 and 6 characters
    (`' w'`, `'orl'`, `'d this'`), which no search for a word finds."""
    text = "".join(pieces)
    parts = json_parts(text, limit)
    assert "".join(parts) == text
    assert all(part and _escaped_size(part) <= limit for part in parts)
    for part, following in zip(parts, parts[1:]):
        assert _escaped_size(part + following[0]) > limit


def test_a_long_line_of_escaped_characters_is_cut_in_as_few_parts_as_fit() -> None:
    b, _ = builder()
    text = "\\" * 32765 + " hello world this is the rest"
    entries = b.from_line(line(text))
    assert len(entries) == 2 and "".join(e["_msg"] for e in entries) == text


def test_message_at_the_limit_is_not_split() -> None:
    b, stats = builder(VICTORIALOGS_MAX_LINE_BYTES="1024")
    entry = one(b.from_line(line("é" * 512)))
    assert entry["_msg"] == "é" * 512
    assert "msg_part" not in entry
    assert stats.split == 0
    assert len(b.from_line(line("é" * 513))) == 2
    assert stats.split == 1


def test_long_json_message_is_split_too() -> None:
    b, _ = builder(VICTORIALOGS_MAX_LINE_BYTES="1024")
    entries = b.from_line(line(json.dumps({"msg": "y" * 2500, "level": "warn", "k": 1})))
    assert [e["msg_part"] for e in entries] == [1, 2, 3]
    assert all(e["level"] == "WARNING" and e["k"] == 1 for e in entries)
    assert "".join(e["_msg"] for e in entries) == "y" * 2500


# -- captures whose objects break the making ---------------------------------------------------


def test_a_capture_that_cannot_be_made_still_goes_as_an_entry_that_says_why() -> None:
    """An uncaught "exception" that is no exception (a program calling sys.excepthook by hand
    with a string): an exception out of the builder took the whole group popped with it."""
    from vlhook._captures import uncaught

    b, _ = builder(VICTORIALOGS_URL="http://x")
    bad = uncaught("not an exception", T_NS, 1, None, "MainThread")  # type: ignore[arg-type]
    entry = one(b.from_item(bad))
    assert entry["level"] == "ERROR" and entry["stream"] == "stderr"
    assert entry["_msg"].startswith("[vlhook could not make this entry: AttributeError")
    assert entry["_time"] == rfc3339(T_NS)
    good = uncaught(ValueError("fine"), T_NS, 1, None, "MainThread")
    made = b.written_records([bad, good])
    assert len(made) == 2 and isinstance(made[1], dict)
    assert made[1]["exception.type"] == "ValueError"


# -- keys and values --------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["k", "é", "€", "😀"])
def test_keys_longer_than_128_bytes_are_shortened(char: str) -> None:
    b, _ = builder()
    long_key = char * 200
    entry = one(b.from_line(make_line(0, "m", T_NS, (None, {long_key: "v"}), "")))
    assert long_key not in entry
    (short,) = (k for k in entry if k not in ("_time", "_msg", "level", "stream"))
    assert entry[short] == "v"
    assert len(short.encode()) <= MAX_KEY_BYTES
    head, tilde, digest = short.rpartition("~")  # a hash of the whole key: unique
    assert tilde and re.fullmatch("[0-9a-f]{8}", digest)
    assert long_key.startswith(head)  # cut between characters, never inside one


def test_key_of_exactly_128_bytes_is_kept() -> None:
    b, _ = builder()
    key = "k" * MAX_KEY_BYTES
    entry = one(b.from_line(make_line(0, "m", T_NS, (None, {key: 1, "é" * 64: 2}), "")))
    assert entry[key] == 1
    assert entry["é" * 64] == 2


def test_long_json_key_is_shortened() -> None:
    b, _ = builder()
    key = "x" * 300
    entry = one(b.from_line(line(json.dumps({"message": "m", key: 7}))))
    assert key not in entry
    assert [v for k, v in entry.items() if k.startswith("xxx")] == [7]
    assert all(len(k.encode()) <= MAX_KEY_BYTES for k in entry)


def test_a_line_over_the_budget_with_a_lone_surrogate_is_split() -> None:
    """Bytes a surrogateescape stream let through (`\\udcff`) in a line longer than one entry:
    measured as the encoder writes them (replaced), not refused by the encoder (a TypeError
    out of the making of entries before)."""
    b, stats = builder(VICTORIALOGS_MAX_LINE_BYTES="1024")
    text = ("caf\udce9 " + "x" * 60) * 40
    entries = b.from_line(line(text))
    assert len(entries) > 1 and stats.split == 1
    assert all(entry["msg_parts"] == len(entries) for entry in entries)
    assert sum(len(entry["_msg"]) for entry in entries) >= len(text) - 40


def test_long_field_values_are_truncated_but_not_the_message() -> None:
    b, _ = builder()
    big = "v" * (MAX_VALUE_CHARS + 100)
    entry = one(
        b.from_line(make_line(0, "m" * (MAX_VALUE_CHARS + 100), T_NS, (None, {"big": big}), ""))
    )
    assert entry["_msg"] == "m" * (MAX_VALUE_CHARS + 100)
    assert entry["big"].startswith("v" * MAX_VALUE_CHARS)
    assert len(entry["big"]) < MAX_VALUE_CHARS + 100
    assert f"truncated {MAX_VALUE_CHARS + 100} chars" in entry["big"]


# -- redaction --------------------------------------------------------------------------------

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GH_TOKEN = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"
HEX40 = "0123456789abcdef0123456789abcdef01234567"
AZURE_PAT = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6"
S3_SIGNED = (
    "https://bucket.s3.amazonaws.com/k.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Date=20261206T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature="
)
AZURE_SAS = "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026-12-07&sp=r&sig="
S3_SIG = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
SLACK_SECRET = "Zq8Xw7Vu6Ts5Rq4Po3Nm2Lk1"
DISCORD_TOKEN = "abcDEF_ghi-JKL0123456789mnoPQRstuVWXyz0123456789abcDEF_ghi-JKL01234"
TELEGRAM_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    ("text", "redacted", "secret"),
    [
        ("key AKIAIOSFODNN7EXAMPLE used", f"key {MASK} used", "AKIAIOSFODNN7EXAMPLE"),
        ("ASIAY34FZKBOKMUTVV7A", MASK, "ASIAY34FZKBOKMUTVV7A"),
        (
            f"aws_secret_access_key = {AWS_SECRET}",
            f"aws_secret_access_key = {MASK}",
            AWS_SECRET,
        ),
        (
            f'{{"SecretAccessKey": "{AWS_SECRET}"}}',
            f'{{"SecretAccessKey": "{MASK}"}}',
            AWS_SECRET,
        ),
        (
            "Authorization: Bearer abcdef0123456789.xyz",
            f"Authorization: Bearer {MASK}",
            "abcdef0123456789",
        ),
        ("authorization: bearer tok_ABCDEFGH==", f"authorization: bearer {MASK}", "ABCDEFGH"),
        (f"token={JWT} end", f"token={MASK} end", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
        (
            "connect https://admin:hunter2@db.example.com/x",
            f"connect https://admin:{MASK}@db.example.com/x",
            "hunter2",
        ),
        (
            "postgres://app:p%40ss:w0rd@10.0.0.1:5432/db",
            f"postgres://app:{MASK}@10.0.0.1:5432/db",
            "w0rd",
        ),
        ("redis://:s3cr3t@localhost:6379/0", f"redis://:{MASK}@localhost:6379/0", "s3cr3t"),
        (  # a mail address for the user name, as SMTP and IMAP URLs often have
            "smtp://alerts@example.com:hunter22@smtp.example.com:587",
            f"smtp://alerts@example.com:{MASK}@smtp.example.com:587",
            "hunter22",
        ),
        (  # base64 passwords hold "/"
            "dsn postgresql://app:Zm9v/YmFy+cXV4@db:5432/app",
            f"dsn postgresql://app:{MASK}@db:5432/app",
            "YmFy",
        ),
        ("dsn postgresql://app:p@ssw0rd@db/app", f"dsn postgresql://app:{MASK}@db/app", "ssw0rd"),
        ('{"dsn": "https://u:a/b@h"}', f'{{"dsn": "https://u:{MASK}@h"}}', "a/b"),
        ("key_AKIAIOSFODNN7EXAMPLE", f"key_{MASK}", "IOSFODNN7"),
        # A token as a URL's user name, as git takes one: alone, or before a password that
        # says nothing (GitHub's `x-oauth-basic`).
        (
            f"git clone https://{GH_TOKEN}@github.com/org/repo.git",
            f"git clone https://{MASK}@github.com/org/repo.git",
            GH_TOKEN[4:],
        ),
        (
            f"remote: https://{GH_TOKEN}:x-oauth-basic@github.com/org/repo",
            f"remote: https://{MASK}:{MASK}@github.com/org/repo",
            GH_TOKEN[4:],
        ),
        (  # a classic GitHub token: 40 hex digits
            f"https://{HEX40}@github.com/o/r.git",
            f"https://{MASK}@github.com/o/r.git",
            HEX40,
        ),
        (  # GitLab's, shorter than 32 characters: told by its prefix
            "pip install git+https://glpat-Abc123_def456-GHI789@gitlab.com/g/p.git",
            f"pip install git+https://{MASK}@gitlab.com/g/p.git",
            "Abc123_def456",
        ),
        (  # GitLab's routable tokens hold dots
            "https://glpat-6_yXabcdEFGHijkl1234OjEH.01.0w1lg6ykt@gitlab.com/g/p.git",
            f"https://{MASK}@gitlab.com/g/p.git",
            "OjEH.01",
        ),
        (  # an Azure DevOps token: 52 letters and digits
            f"https://{AZURE_PAT}@dev.azure.com/org/p/_git/r",
            f"https://{MASK}@dev.azure.com/org/p/_git/r",
            AZURE_PAT,
        ),
        # A signed URL's signature: whoever holds the URL has what it grants until it expires.
        (
            f"GET {S3_SIGNED}{S3_SIG}",
            f"GET {S3_SIGNED}{MASK}",
            S3_SIG,
        ),
        (
            f'{{"url": "https://storage.googleapis.com/b/o?X-Goog-Expires=900&X-Goog-Signature={S3_SIG}"}}',
            f'{{"url": "https://storage.googleapis.com/b/o?X-Goog-Expires=900&X-Goog-Signature={MASK}"}}',
            S3_SIG,
        ),
        (  # CloudFront's signed URL
            "https://d111.cloudfront.net/a.jpg?Expires=1700000000&Signature=Ab~Cd-Ef__12&Key-Pair-Id=K2J",
            f"https://d111.cloudfront.net/a.jpg?Expires=1700000000&Signature={MASK}&Key-Pair-Id=K2J",
            "Ab~Cd-Ef__12",
        ),
        (  # in HTML, and in JSON a Go program wrote (`&` escaped); other clouds' names
            f"<a href='https://h/a?Expires=1&amp;Signature=AbC~dEf_123&amp;Key-Pair-Id=K'>; "
            f'{{"u": "https://h/b?X-Amz-Date=1\\u0026X-Amz-Signature={S3_SIG}"}}; '
            "https://b.oss-cn-hangzhou.aliyuncs.com/o?x-oss-signature=Zm9vYmFyYmF6%3D",
            f"<a href='https://h/a?Expires=1&amp;Signature={MASK}&amp;Key-Pair-Id=K'>; "
            f'{{"u": "https://h/b?X-Amz-Date=1\\u0026X-Amz-Signature={MASK}"}}; '
            f"https://b.oss-cn-hangzhou.aliyuncs.com/o?x-oss-signature={MASK}",
            "AbC~dEf_123",
        ),
        (  # a signature ends where a URL's value can: `;`, `,`, `)` and the rest stay
            "url=https://h/k?Signature=abcdefgh12;status=200 ([link](https://h/?sig=AbCdEfGh99),)",
            f"url=https://h/k?Signature={MASK};status=200 ([link](https://h/?sig={MASK}),)",
            "abcdefgh12",
        ),
        (  # an Azure shared access signature
            f"{AZURE_SAS}Ab%2B12cd%3D 200",
            f"{AZURE_SAS}{MASK} 200",
            "Ab%2B12cd",
        ),
        ("'[default]\\nAKIAIOSFODNN7EXAMPLE'", f"'[default]\\n{MASK}'", "IOSFODNN7"),
        # A webhook's or a bot's secret in its URL's path; what follows it is kept.
        (
            f'POST https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/{SLACK_SECRET} "200 OK"',
            f'POST https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/{MASK} "200 OK"',
            SLACK_SECRET,
        ),
        (
            f"https://hooks.slack.com/workflows/T0A1B2C3D/A05ABCDEF/4567890123/{SLACK_SECRET}",
            f"https://hooks.slack.com/workflows/T0A1B2C3D/A05ABCDEF/4567890123/{MASK}",
            SLACK_SECRET,
        ),
        (
            f"https://discord.com/api/webhooks/123456789012345678/{DISCORD_TOKEN}?wait=true",
            f"https://discord.com/api/webhooks/123456789012345678/{MASK}?wait=true",
            DISCORD_TOKEN,
        ),
        (
            f"https://canary.discordapp.com/api/v10/webhooks/12345/{DISCORD_TOKEN}/messages/1",
            f"https://canary.discordapp.com/api/v10/webhooks/12345/{MASK}/messages/1",
            DISCORD_TOKEN,
        ),
        (
            f'POST https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage "HTTP/1.1 200 OK"',
            f'POST https://api.telegram.org/bot{MASK}/sendMessage "HTTP/1.1 200 OK"',
            TELEGRAM_TOKEN.split(":")[1],
        ),
        (
            f"HTTPS://API.TELEGRAM.ORG/file/bot{TELEGRAM_TOKEN}/photos/file_1.jpg",
            f"HTTPS://API.TELEGRAM.ORG/file/bot{MASK}/photos/file_1.jpg",
            TELEGRAM_TOKEN.split(":")[1],
        ),
    ],
)
def test_redactor_masks_secrets(text: str, redacted: str, secret: str) -> None:
    out = Redactor()(text)
    assert out == redacted
    assert secret not in out


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "the bearer of bad news",
        "Bearer short",
        "AKIA is a prefix",
        "https://example.com/path?q=1",
        "https://user@example.com/",
        "mailto:someone@example.com",
        "secret of the universe",
        "ratio 12:30 at host@example",
        "https://host:8080/a/b then mail bob@example.com",
        "ssh://git@github.com:org/repo.git and https://git@host:22/x",
        "XAKIAIOSFODNN7EXAMPLE9",
        # User names that are names, and a host that is no user: left as they are.
        "ssh://git@github.com/org/repo.git and postgres://postgres@db/app",
        "https://deploy-bot-2024@git.example.com/r.git",
        "smtp://alerts-2024@example.com@smtp.example.com",
        f"http://{HEX40}:8080/health",
        f"http://{HEX40}:8080/users/bob@example.com",  # a port, and an `@` in the path
        f"https://{HEX40}.example.com/",
        # A Sentry DSN's key (public: 32 hex digits), a long user name, a `[a-z]+://` that is
        # no URL's scheme (a regular expression in a traceback's source line).
        "sentry dsn https://e3b0c44298fc1c149afbf4c8996fb924@o12345.ingest.us.sentry.io/4505",
        "postgresql://analytics_readonly_service_user_2024@db/app",
        'URL = re.compile(r"[a-z]+://([^:/]+):([^@]+)@")',
        # Query parameters that only look like a signature's, and one too short to be one.
        "https://h/a?signature_version=4&sigma=2&Signed=1&x-sig=3",
        "https://h/verify?signature=valid&user=bob",
        "a sig=abc outside any URL, and ?sig=abc too",
        # The services' URLs without a secret, a secret's shape elsewhere, a masked one.
        "https://hooks.slack.com/ and https://hooks.slack.com/services/T0A1B2C3D/",
        "https://api.telegram.org/bot/getMe https://example.com/bot123:abcdefghijklmnop",
        "https://discord.com/api/webhooks/ https://notdiscord.com/api/webhooks/1/abcdefghij",
        f"https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/{MASK}",
        "",
    ],
)
def test_redactor_leaves_ordinary_text_alone(text: str) -> None:
    assert Redactor()(text) is None
    assert redact_text(text) == text


@PROPS
@given(st.text(st.characters(codec="utf-8", exclude_characters=":"), max_size=80))
def test_redactor_returns_none_or_a_changed_text(text: str) -> None:
    out = Redactor()(text)
    assert out is None or (out != text and MASK in out)


def test_user_patterns_are_applied() -> None:
    r = Redactor([r"card=\d{16}", r"ssn:\d{3}-\d\d-\d{4}"])
    assert r("pay card=4111111111111111 now") == f"pay {MASK} now"
    assert r("ssn:123-45-6789") == MASK
    assert r("nothing") is None
    assert Redactor([r"x+"], builtin=False)("AKIAIOSFODNN7EXAMPLE") is None


def test_builder_redacts_message_and_fields_and_counts() -> None:
    b, stats = builder()
    entries = b.from_line(
        make_line(
            0,
            "key AKIAIOSFODNN7EXAMPLE",
            T_NS,
            (None, {"url": "https://u:pw123@h/", "ok": "x"}),
            "",
        )
    )
    entry = one(entries)
    assert entry["_msg"] == f"key {MASK}"
    assert entry["url"] == f"https://u:{MASK}@h/"
    assert entry["ok"] == "x"
    assert stats.redacted == 2


def test_builder_redacts_json_fields() -> None:
    b, _ = builder()
    text = json.dumps({"msg": "login", "header": "Bearer abcdefghijklmnop0", "user": "bob"})
    entry = one(b.from_line(line(text)))
    assert entry["header"] == f"Bearer {MASK}"
    assert entry["user"] == "bob"


def test_redaction_off_and_extra_patterns_from_config() -> None:
    b, stats = builder(VICTORIALOGS_REDACT="off")
    assert one(b.from_line(line("AKIAIOSFODNN7EXAMPLE")))["_msg"] == "AKIAIOSFODNN7EXAMPLE"
    assert stats.redacted == 0
    b, _ = builder(VICTORIALOGS_REDACT=r"tenant-\d+")
    entry = one(b.from_line(line("tenant-42 AKIAIOSFODNN7EXAMPLE")))
    assert entry["_msg"] == f"{MASK} {MASK}"


def test_secret_cut_by_splitting_is_redacted_first() -> None:
    b, _ = builder(VICTORIALOGS_MAX_LINE_BYTES="1024")
    message = "x" * 1020 + " AKIAIOSFODNN7EXAMPLE " + "y" * 1500
    entries = b.from_line(line(message))
    joined = "".join(e["_msg"] for e in entries)
    assert "AKIA" not in joined
    assert MASK in joined


# -- what the server would refuse: too big, too many fields, vlhook's own names -----------------


def _encoded(entries: list[Entry], stats: Stats) -> list[dict[str, Any]]:
    """The entries as the encoder writes them, each checked below the server's line limit."""
    from vlhook._config import SERVER_LINE_LIMIT
    from vlhook._delivery.encode import Encoder, constant_fields

    encoder = Encoder(constant_fields(load({})), stats)
    lines = [encoder.encode(entry) for entry in entries]
    assert all(len(line) < SERVER_LINE_LIMIT for line in lines), [len(x) for x in lines]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    "obj",
    [
        {"msg": "x", "level": "a" * 300_000},
        {"msg": "x", "stream": "a" * 300_000},
        {"msg": "x", "code.line": "a" * 300_000},
        {"msg": "x", "logger": ["a" * 300_000]},
        {"msg": "x", "n": {"deep": ["a" * 300_000]}},
        {"_msg": {f"k{i}": "a" * 15_000 for i in range(30)}},
    ],
)
def test_no_encoded_line_reaches_the_server_limit(obj: dict[str, Any]) -> None:
    made, stats = builder()
    rows = _encoded(made.from_line(line(json.dumps(obj))), stats)
    assert rows[0]["_msg"].startswith("x") or rows[0]["_msg"].startswith('{"_msg"')
    # Cut where it was too long (said in the value), or left out (said and counted).
    assert "…[truncated " in json.dumps(rows, ensure_ascii=False) or stats.truncated >= 1


def test_a_message_that_is_no_text_is_bounded_when_too_big() -> None:
    stats = Stats()
    entry: Entry = {"_time": T_TEXT, "_msg": {"k": "a" * 400_000}, "level": "INFO",
                    "stream": "logging", "logger": "l", "msg_part": 2, "other": 1}  # fmt: skip
    (row,) = _encoded([entry], stats)
    assert row["_msg"].startswith("{'k': 'aaa") and row["_msg"].endswith("…")
    assert (row["_time"], row["level"], row["msg_part"]) == (T_TEXT, "INFO", 2)
    assert set(row["vlhook.truncated"].split(",")) == {"_msg", "other"}
    assert stats.truncated == 1


def test_an_entry_too_big_even_shrunk_gets_the_last_resort() -> None:
    """Constant fields so big that the message no longer fits with them: its beginning."""
    from vlhook._config import SERVER_LINE_LIMIT
    from vlhook._delivery.encode import Encoder

    stats = Stats()
    for size in (210_000, 300_000):  # with the constants; without them (they alone too big)
        encoder = Encoder({"job": "j", "big": "c" * size}, stats)
        entry: Entry = {"_time": T_TEXT, "_msg": "m" * 60_000, "level": "INFO",
                        "stream": "stdout", "logger": "x" * 5_000}  # fmt: skip
        encoded = encoder.encode(entry)
        assert len(encoded) < SERVER_LINE_LIMIT
        row = json.loads(encoded)
        assert row["_msg"].startswith("m" * 16_384) and row["_msg"].endswith(
            "…[truncated 60000 chars]"
        )
        assert (row["_time"], row["level"], row["stream"]) == (T_TEXT, "INFO", "stdout")
        assert row["vlhook.truncated"] == "_msg,logger"
        assert ("big" in row) == (size == 210_000)
    assert stats.truncated == 2


def test_a_shrunk_part_keeps_its_part_number() -> None:
    made, stats = builder(VICTORIALOGS_MAX_LINE_BYTES="65536")
    entries = made.from_line(make_line(0, "m" * 200_000, T_NS, ({"f": ["x" * 300_000]},)))
    rows = _encoded(entries, stats)
    assert [row["msg_part"] for row in rows] == list(range(1, len(rows) + 1))
    assert "".join(row["_msg"] for row in rows) == "m" * 200_000


@pytest.mark.parametrize(
    "obj",
    [
        {"msg": "m", "n": {f"k{i}": i for i in range(1200)}},
        {"msg": "m", "n": {f"k{i}": {"a": i, "b": [i]} for i in range(600)}},
        {"msg": "m", **{f"o{j}": {f"k{i}": i for i in range(100)} for j in range(12)}},
    ],
)
def test_nested_fields_are_counted_as_the_server_flattens_them(obj: dict[str, Any]) -> None:
    made, stats = builder()
    entry = one(made.from_line(line(json.dumps(obj))))
    assert "vlhook.folded_fields" in entry and stats.folded == 1
    from vlhook._entry import _leaves

    assert _leaves(entry, 2000) <= 1000


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"msg": "s", "stream": "key AKIAIOSFODNN7EXAMPLE"}, "fields.stream"),
        ({"msg": "s", "level": "key AKIAIOSFODNN7EXAMPLE"}, "fields.level"),
        ({"msg": "s", "code.line": "key AKIAIOSFODNN7EXAMPLE"}, "code.line"),
        ({"msg": "s", "cold_start": "key AKIAIOSFODNN7EXAMPLE"}, "cold_start"),
    ],
)
def test_program_values_under_vlhooks_names_are_redacted(
    obj: dict[str, Any], expected: str
) -> None:
    made, _ = builder()
    entry = one(made.from_line(line(json.dumps(obj))))
    assert "AKIA" not in json.dumps(entry) and "[REDACTED]" in entry[expected]


@pytest.mark.parametrize(
    ("obj", "msg", "level", "kept"),
    [
        ({"level": 40, "levelname": "ERROR", "msg": "m"}, "m", "ERROR", {"levelname": "ERROR"}),
        ({"_msg": 5, "message": "hello"}, "hello", "INFO", {"fields._msg": 5}),
        ({"severity": "ERROR", "level": {"n": 1}, "msg": "m"}, "m", "ERROR",
         {"fields.level": {"n": 1}}),
        ({"": "v", "msg": "m"}, "m", "INFO", {"fields.(empty)": "v"}),
        ({"msg": "m", "stream": "payments"}, "m", "INFO", {"fields.stream": "payments"}),
        ({"msg": "m", "_time": "yesterday"}, "m", "INFO", {"fields._time": "yesterday"}),
        ({"msg": "m", "level": "gold"}, "m", "INFO", {"fields.level": "gold"}),
    ],
)  # fmt: skip
def test_printed_json_keeps_vlhooks_own_fields_and_the_programs(
    obj: dict[str, Any], msg: str, level: str, kept: dict[str, Any]
) -> None:
    made, _ = builder()
    entry = one(made.from_line(line(json.dumps(obj))))
    assert (entry["_msg"], entry["level"], entry["stream"]) == (msg, level, "stdout")
    assert RFC3339.match(entry["_time"])
    assert {key: entry[key] for key in kept} == kept


def test_bound_fields_never_replace_vlhooks_own() -> None:
    made, _ = builder()
    bound = {"_msg": "bound", "level": "gold", "_time": "yesterday", "stream": "s", "": "e"}
    for entries in (made.from_line(make_line(1, "ERROR text", T_NS, (bound,))),
                    made.from_lines([make_line(1, "ERROR text", T_NS, (bound,))])):  # fmt: skip
        entry = one(entries)
        assert (entry["_msg"], entry["level"], entry["stream"], entry["_time"]) == (
            "ERROR text",
            "ERROR",
            "stderr",
            T_TEXT,
        )
        assert {k: entry[f"fields.{k or '(empty)'}"] for k in bound} == bound


def test_long_keys_cut_alike_stay_apart() -> None:
    made, _ = builder()
    obj = {"msg": "m", "a" * 200 + "1": "one", "a" * 200 + "2": "two"}
    entry = one(made.from_line(line(json.dumps(obj))))
    cut = {key: value for key, value in entry.items() if key.startswith("aaa")}
    assert sorted(cut.values()) == ["one", "two"]
    assert all(len(key.encode()) <= 128 for key in cut)


@pytest.mark.parametrize("zero", ["\u0660", "\u06f0", "\uff10"])  # Arabic-Indic, Persian, wide
def test_times_with_digits_of_other_scripts_are_not_times(zero: str) -> None:
    assert valid_time("2024-01-01T00:00:00Z")
    assert not valid_time("2024-01-01T00:00:0" + zero + "Z")
    assert not valid_time("2024-01-01T00:00:00Z".replace("0", zero))


def test_a_records_line_with_its_traceback_in_a_box_has_its_exception() -> None:
    """structlog's console line with rich's traceback box (see test_lines.BOXED): the line is
    the message, the exception line after the box gives `exception.*`."""
    boxed = (
        "2026-12-07 22:15:04 [error    ] division failed    op=div\n"
        "\u256d\u2500 Traceback (most recent call last) \u2500\u256e\n"
        "\u2502 in <module>:4   \u2502\n"
        "\u2570\u2500\u2500\u2500\u2500\u2500\u256f\n"
        "ZeroDivisionError: division by zero"
    )
    b, _ = builder()
    entry = one(b.from_line(line(boxed, forced="ERROR", kind=1)))
    assert entry["_msg"] == "2026-12-07 22:15:04 [error    ] division failed    op=div"
    assert entry["level"] == "ERROR"
    assert entry["exception.type"] == "ZeroDivisionError"
    assert entry["exception.message"] == "division by zero"
    assert entry["exception.stacktrace"].startswith("\u256d\u2500 Traceback")
