"""One line per entry, the same for `vlhook tail`, `vlhook query` and `vlhook listen`:

    15:30:48.043 ERROR [checkout app] shop.checkout: conversion failed  currency=usd

the local time (with the date when it is not today), the level, the values of the stream
fields, where the line came from (`stdout`, `stderr`, or a logging record's logger), the
message, then the other fields in name order. Fields every vlhook entry carries (host, pid,
thread, code location) and the stack trace are left to `--json`. A newline shows as ⏎: one
entry, one line.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any, Optional, TextIO

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", re.ASCII)
_LABEL = re.compile(r'([^{},="]+)="((?:[^"\\]|\\.)*)"')
_NEWLINES = re.compile(r"\r\n|\r|\n")
_PLAIN = re.compile(r'[^\s"=]+')
_OWN = frozenset({"_time", "_stream", "_stream_id", "_msg", "level", "stream"})
QUIET = frozenset(
    {"host", "pid", "thread", "code.file", "code.line", "code.function", "exception.stacktrace"}
)
_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "WARN": "33", "ERROR": "31",
            "CRITICAL": "1;31", "FATAL": "1;31"}  # fmt: skip
_DIM = "2"


def wants_colour(stream: Any) -> bool:
    """Colour for a terminal, unless NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def time_ns(stamp: str) -> Optional[int]:
    """Nanoseconds since the epoch of an RFC 3339 UTC time as VictoriaLogs writes it."""
    match = _TIME.fullmatch(stamp)
    if match is None:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in match.groups()[:6])
    secs = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
    return secs * 10**9 + int((match.group(7) or "").ljust(9, "0"))


def _clock(stamp: str) -> str:
    t_ns = time_ns(stamp)
    if t_ns is None:
        return stamp or "-"
    local = time.localtime(t_ns // 10**9)
    clock = time.strftime("%H:%M:%S", local) + f".{t_ns // 10**6 % 1000:03d}"
    day = time.strftime("%Y-%m-%d", local)
    return clock if day == time.strftime("%Y-%m-%d") else f"{day} {clock}"


def _labels(stream: str) -> dict[str, str]:
    """`{container_name="app",job="x"}` as a dict."""
    labels = {}
    for name, quoted in _LABEL.findall(stream):
        try:
            labels[name] = str(json.loads(f'"{quoted}"'))
        except ValueError:  # an escape JSON does not know: show it as the server wrote it
            labels[name] = quoted
    return labels


def _value(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else json.dumps(value, ensure_ascii=False)


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def format_entry(row: Mapping[str, Any], colour: bool = False) -> str:
    """The entry as one line (no newline at the end)."""
    level = str(row.get("level") or "-")
    labels = _labels(str(row.get("_stream", "")))
    stream, logger = str(row.get("stream", "")), str(row.get("logger", ""))
    source = logger if stream == "logging" and logger else stream
    hidden = _OWN | QUIET | labels.keys() | ({"logger"} if source == logger else set())
    fields = " ".join(f"{k}={_value(str(v))}" for k, v in sorted(row.items()) if k not in hidden)
    parts = [
        _paint(_clock(str(row.get("_time", ""))), _DIM, colour),
        _paint(f"{level:<5}", _COLOURS.get(level.upper(), ""), colour),
    ]
    if labels:
        parts.append(_paint(f"[{' '.join(labels.values())}]", _DIM, colour))
    if source:
        parts.append(f"{source}:")
    parts.append(str(row.get("_msg", "")))
    line = " ".join(parts)
    if fields:
        line += "  " + _paint(fields, _DIM, colour)
    return _NEWLINES.sub("\u23ce", line)


class Printer:
    """Writes entries to `out`: formatted (coloured on a terminal), or as the raw JSON lines."""

    def __init__(self, out: TextIO, raw: bool) -> None:
        self.out = out
        self.raw = raw
        self.colour = not raw and wants_colour(out)
        reconfigure = getattr(out, "reconfigure", None)
        if reconfigure is not None:  # a terminal that cannot show a character gets an escape
            reconfigure(errors="backslashreplace")

    def show(self, line: bytes, row: Mapping[str, Any]) -> None:
        text = line.decode("utf-8", "replace") if self.raw else format_entry(row, self.colour)
        self.out.write(text + "\n")


def parse_row(line: bytes) -> Optional[dict[str, Any]]:
    """A JSON object line of the server's answer; None for anything else (an error text)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def silence_stdout() -> None:
    """The reader of stdout went away (`| head`): drop what is still buffered for it, so
    that the exit does not print an error about it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
