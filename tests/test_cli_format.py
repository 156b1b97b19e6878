"""The one-line entry format shared by `vlhook tail`, `query` and `listen`."""

from __future__ import annotations

import io
import os
import time

import pytest

from vlhook.cli._format import format_entry, time_ns, wants_colour


def _utc(stamp: str) -> tuple[str, str]:
    """The local clock and day `format_entry` shows for a UTC time (the zone may be any)."""
    t_ns = time_ns(stamp)
    assert t_ns is not None
    local = time.localtime(t_ns // 10**9)
    clock = time.strftime("%H:%M:%S", local) + f".{t_ns // 10**6 % 1000:03d}"
    return clock, time.strftime("%Y-%m-%d", local)


def test_time_ns_reads_the_servers_times() -> None:
    assert time_ns("1970-01-01T00:00:01Z") == 10**9
    assert time_ns("1970-01-01T00:00:01.5Z") == 15 * 10**8
    assert time_ns("1970-01-01T00:00:01.000000007Z") == 10**9 + 7
    assert time_ns("yesterday") is None


def test_a_vlhook_logging_entry() -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S.250Z", time.gmtime())
    row = {
        "_time": now, "_stream": '{container_name="web",job="shop"}', "_stream_id": "00ab",
        "_msg": "payment failed", "level": "ERROR", "stream": "logging", "logger": "shop.pay",
        "container_name": "web", "job": "shop", "host": "h", "pid": "12", "thread": "Main",
        "code.file": "/a.py", "code.line": "3", "code.function": "f", "order": "A 17",
        "exception.stacktrace": "Traceback...", "exception.type": "KeyError", "amount": "12",
    }  # fmt: skip
    clock, _ = _utc(now)
    assert format_entry(row) == (
        f"{clock} ERROR [web shop] shop.pay: payment failed  amount=12 exception.type=KeyError "
        'order="A 17"'
    )


def test_a_foreign_entry_with_little_in_it() -> None:
    row = {"_time": "2001-02-03T04:05:06Z", "_stream": "{}", "_msg": "one\ntwo\r\nthree",
           "logger": "not shown as the source", "note": 'say "hi"\n'}  # fmt: skip
    clock, day = _utc("2001-02-03T04:05:06Z")
    assert format_entry(row) == (
        f'{day} {clock} -     one⏎two⏎three  logger="not shown as the source" '
        'note="say \\"hi\\"\\n"'
    )


def test_stream_labels_with_escapes() -> None:
    row = {
        "_stream": r'{app="a \"b\"",zone="x,y"}',
        "_msg": "m",
        "level": "INFO",
        "stream": "stdout",
    }
    assert format_entry(row).endswith('INFO  [a "b" x,y] stdout: m')


def test_colour_marks_the_level_and_dims_the_rest() -> None:
    row = {"_time": "2001-02-03T04:05:06Z", "_msg": "m", "level": "WARNING", "stream": "stderr",
           "k": "v"}  # fmt: skip
    line = format_entry(row, colour=True)
    assert "\x1b[33mWARNING\x1b[0m" in line and "\x1b[2mk=v\x1b[0m" in line
    assert "\x1b[" not in format_entry(row)
    assert "\x1b[2mverbose\x1b[0m" not in format_entry({**row, "level": "verbose"}, colour=True)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_for_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_colour(_Tty()) and not wants_colour(io.StringIO())
    with open(os.devnull) as closed:
        pass
    assert not wants_colour(closed) and not wants_colour(object())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(_Tty())
    monkeypatch.setenv("NO_COLOR", "")
    assert wants_colour(_Tty())
