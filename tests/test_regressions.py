"""Regression tests: each pins a bug once found in vlhook (exception-group tracebacks, `\r`
handling, truncated UTF-8, level detection after prefixes, impossible times, JSON escaping past
the line limit, encoding failures, secrets in warnings, endpoint equality, VICTORIALOGS_DISABLE)."""

from __future__ import annotations

import builtins
import io
import json
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from conftest import messages
from shipping import Shipper
from vlhook import _capture_streams
from vlhook._capture_streams import StreamTee
from vlhook._captures import STDOUT, Line, Text, text
from vlhook._captures import line as make_line
from vlhook._config import SERVER_LINE_LIMIT, Endpoint, load, parse_endpoint
from vlhook._entry import EntryBuilder, rfc3339
from vlhook._levels import detect_level
from vlhook._lines import LineAssembler
from vlhook._objects import valid_time
from vlhook._stats import Stats

EXCEPTION_GROUP: Any = getattr(builtins, "ExceptionGroup", None)


def assemble(chunks: list[Any]) -> list[Line]:
    asm = LineAssembler()
    out: list[Line] = []
    for index, chunk in enumerate(chunks):
        asm.feed(text(1, chunk, index, 1, None), out)
    asm.flush(out, final=True)
    return out


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _group() -> str:
    def inner() -> None:
        raise EXCEPTION_GROUP("two failures", [ValueError("a"), KeyError("b")])

    try:
        inner()
    except Exception as exc:
        return _format(exc)
    raise AssertionError


def _chained_group() -> str:
    try:
        try:
            raise ZeroDivisionError("first")
        except ZeroDivisionError as err:
            raise EXCEPTION_GROUP("outer", [err, TypeError("t")])
    except Exception as exc:
        return _format(exc)
    raise AssertionError


def _simple(message: str) -> str:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return _format(exc)
    raise AssertionError


needs_groups = pytest.mark.skipif(
    EXCEPTION_GROUP is None, reason="exception groups need Python 3.11"
)


# -- _lines.py --------------------------------------------------------------------------------


@needs_groups
def test_exception_group_traceback_is_one_error_entry() -> None:
    tb = _group()
    assert tb.startswith("  + Exception Group Traceback (most recent call last):")
    out = assemble([tb, "after\n"])
    assert [(line[1], line.level) for line in out] == [(tb.rstrip("\n"), "ERROR"), ("after", "")]


@needs_groups
def test_line_after_a_chained_exception_group_is_separate() -> None:
    tb = _chained_group()
    assert "During handling of the above exception" in tb
    out = assemble([tb, "after\n"])
    assert [line[1] for line in out] == [tb.rstrip("\n"), "after"]


def test_two_independent_tracebacks_are_two_entries() -> None:
    first, second = _simple("job 1 failed"), _simple("job 2 failed")
    out = assemble([first, second])
    assert [line[1] for line in out] == [first.rstrip("\n"), second.rstrip("\n")]


def test_carriage_return_result_does_not_depend_on_write_boundaries() -> None:
    one_write = assemble(["50%\r100%\n"])  # sys.stdout.write("50%\r100%\n")
    print_call = assemble(["50%\r100%", "\n"])  # print("50%\r100%"): text, then end
    assert [line[1] for line in one_write] == [line[1] for line in print_call]


def test_truncated_utf8_at_the_end_becomes_a_replacement_character() -> None:
    out = assemble([b"ok\n", b"end \xe2\x82"])
    assert [line[1] for line in out] == ["ok", "end \ufffd"]


# -- _entry.py --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        pytest.param("TRACE x", "DEBUG", id="TRACE"),
        pytest.param("TRACE: x", "DEBUG", id="TRACE-colon"),
        pytest.param("2024-01-01 12:00:00 TRACE x", "DEBUG", id="ts-TRACE"),
        pytest.param("[main] ERROR x", "ERROR", id="bracket-thread-ERROR"),
        pytest.param("[worker] WARN x", "WARNING", id="bracket-thread-WARN"),
        pytest.param("[app] [ERROR] x", "ERROR", id="bracket-app-bracket-ERROR"),
    ],
)
def test_detect_level_after_prefixes(text: str, level: str) -> None:
    assert detect_level(text) == level


@pytest.mark.parametrize(
    "value",
    ["2024-02-30T00:00:00Z", "2024-01-01T25:00:00Z", "2024-13-01T00:00:00Z", 1e300],
)
def test_valid_time_rejects_times_the_server_cannot_parse(value: Any) -> None:
    assert valid_time(value) is False


def test_json_line_with_impossible_time_still_arrives(sink: Any) -> None:
    """VictoriaLogs skips a line whose time it cannot parse: the line must not carry it."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    config = load(sink.env(VICTORIALOGS_SPOOL_DIR="off"))
    stats = Stats()
    delivery, builder = Shipper(config, stats), EntryBuilder(config, stats)
    text = json.dumps({"message": "with time", "time": f"{day}T25:00:00Z"})
    delivery.add(builder.from_line(make_line(0, text, time.time_ns(), None)))
    delivery.add(builder.from_line(make_line(0, "good", time.time_ns(), None)))
    assert delivery.send().delivered == 2
    delivery.close()
    assert sorted(r["_msg"] for r in sink.settle(2)) == ["good", "with time"]


# -- _delivery.py / _entry.py: line limit -----------------------------------------------------


@pytest.mark.parametrize(
    ("max_line_bytes", "char"),
    [("65536", "\x01"), ("65536", "\x1b"), ("131071", '"'), ("131071", "\\")],
)
def test_escaped_message_lines_stay_below_the_server_limit(
    tmp_path: Path, max_line_bytes: str, char: str
) -> None:
    config = load(
        {
            "VICTORIALOGS_URL": f"file://{tmp_path}/o.jsonl",
            "VICTORIALOGS_SPOOL_DIR": "off",
            "VICTORIALOGS_MAX_LINE_BYTES": max_line_bytes,
        }
    )
    stats = Stats()
    delivery, builder = Shipper(config, stats), EntryBuilder(config, stats)
    message = char * 300_000
    entries = builder.from_line(make_line(0, message, time.time_ns(), None))
    lines = [delivery.encode(e) for e in entries]
    assert max(len(x) for x in lines) < SERVER_LINE_LIMIT
    assert "".join(json.loads(x)["_msg"] for x in lines) == message


def test_lines_after_an_escaped_long_message_are_not_lost(sink: Any) -> None:
    """Escaping grows a message (`\x01` becomes 6 bytes): a line over the server's limit would be
    skipped, and the lines after it in the request lost with it."""
    config = load(sink.env(VICTORIALOGS_SPOOL_DIR="off"))
    stats = Stats()
    delivery, builder = Shipper(config, stats), EntryBuilder(config, stats)
    delivery.add(builder.from_line(make_line(0, "\x01" * 65536, time.time_ns(), None)))
    delivery.add(builder.from_line(make_line(0, "after", time.time_ns(), None)))
    lines = delivery.lines
    assert delivery.send().delivered == lines
    delivery.close()
    rows = sink.settle(lines)
    assert messages(rows)[-1] == "after"
    assert "".join(m for m in messages(rows) if m != "after") == "\x01" * 65536


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"_msg": "name \udcff.txt"}, id="lone-surrogate-message"),
        pytest.param({"_msg": "m", "path": "\udce9t\udce9"}, id="lone-surrogate-field"),
        pytest.param({"_msg": "m", "user_id": 2**64}, id="int-over-64-bits"),
    ],
)
def test_encode_never_raises(tmp_path: Path, fields: dict[str, Any]) -> None:
    config = load({"VICTORIALOGS_URL": f"file://{tmp_path}/o.jsonl"})
    delivery = Shipper(config, Stats())
    entry = {"_time": rfc3339(time.time_ns()), "level": "INFO", **fields}
    line = delivery.encode(entry)
    assert json.loads(line)["level"] == "INFO"


def test_surrogateescape_output_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    config = load({"VICTORIALOGS_URL": f"file://{path}", "VICTORIALOGS_SPOOL_DIR": "off"})
    stats = Stats()
    delivery, builder = Shipper(config, stats), EntryBuilder(config, stats)
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape")
    items: list[Text] = []
    saved = _capture_streams._put
    _capture_streams._put = items.append
    try:
        tee = StreamTee(stream, STDOUT)
        tee.write(b"caf\xe9.txt".decode("utf-8", "surrogateescape") + "\n")
        tee.flush()
    finally:
        _capture_streams._put = saved
    assert raw.getvalue() == b"caf\xe9.txt\n"  # the program's own output is fine
    asm = LineAssembler()
    lines: list[Line] = []
    for item in items:
        asm.feed(item, lines)
    for line in lines:
        delivery.add(builder.from_line(line))
    assert delivery.send().delivered == len(lines)
    assert json.loads(path.read_bytes())["_msg"] == "caf\ufffd.txt"


# -- _config.py -------------------------------------------------------------------------------

SECRET = "S3cr3tV4lue"


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"VICTORIALOGS_HEADERS": f"Authorization: Bearer {SECRET}"}, id="colon"),
        pytest.param({"VICTORIALOGS_HEADERS": f"X-Api-Key {SECRET}"}, id="space"),
    ],
)
def test_malformed_headers_never_show_their_value(env: dict[str, str]) -> None:
    config = load({"VICTORIALOGS_URL": "http://127.0.0.1:9428", **env})
    assert any("VICTORIALOGS_HEADERS" in w for w in config.warnings)
    assert SECRET not in "\n".join(config.warnings)
    assert SECRET not in repr(config)


def test_password_with_at_sign_never_in_warnings() -> None:
    url = "http://admin:pa@S3cr3t@host:badport"
    config = load({"VICTORIALOGS_URL": url})
    assert config.warnings
    assert "S3cr3t" not in "\n".join(config.warnings)
    assert "S3cr3t" not in repr(config)


def test_endpoints_with_equal_fields_are_equal() -> None:
    parsed = parse_endpoint("http://h:9428")
    built = Endpoint(scheme="http", host="h", port=9428)
    assert repr(parsed) == repr(built)
    assert parsed == built
    assert hash(parsed) == hash(built)


def test_bad_disable_value_is_warned_about() -> None:
    config = load({"VICTORIALOGS_URL": "http://127.0.0.1:9428", "VICTORIALOGS_DISABLE": "maybe"})
    assert any(w.startswith("VICTORIALOGS_DISABLE=") for w in config.warnings)
