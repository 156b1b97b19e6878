"""Encoding: entries become JSON lines, each safely below the server's line limit.

A line of 256 KiB or more would be skipped by the server and would take the lines after it in
the request with it, so every encoded line is checked. Encoding never raises: what cannot be
encoded is made text. The constant fields (container_name, job, host, pid, VICTORIALOGS_FIELDS)
are encoded once and spliced before each entry's own keys; a key of the program's own with the
same name replaces the constant one, so no line carries a key twice.
"""

from __future__ import annotations

import os

from vlhook import _codec
from vlhook._config import SERVER_LINE_LIMIT

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from collections.abc import Sequence
    from typing import Any, Union

    from vlhook._config import Config
    from vlhook._entry import Entry
    from vlhook._stats import Stats

#: Fields kept when an entry is too big for one line, in this order: a message's part number
#: too, by which its parts are put back in order.
ESSENTIAL = ("_time", "_msg", "level", "stream", "logger", "msg_part", "msg_parts")
#: Characters each of them but the message keeps then (a program's `logger` may be anything).
ESSENTIAL_CHARS = 1024
#: The beginning of the message that the last resort keeps: at most 6 bytes a character once
#: escaped (\u0001), 96 KiB in all, whatever the text: that line always fits.
LAST_RESORT_CHARS = 16 << 10
#: The most names of left-out fields that `vlhook.truncated` lists (characters).
NAMES_CHARS = 1000
#: Levels of nesting within which lone surrogates are replaced and the values kept as they are
#: (see _replaced): above the entry builder's bound (32), below orjson's (254).
REPLACED_DEPTH = 64


def constant_fields(config: Config, pid: int = 0) -> dict[str, Any]:
    """vlhook's own, then those of VICTORIALOGS_FIELDS: spliced before every entry's own
    (a program's field of one of these names replaces it)."""
    fields: dict[str, Any] = {
        "container_name": config.container_name,
        "job": config.job,
        "host": os.uname().nodename if hasattr(os, "uname") else "",
        "pid": pid or os.getpid(),
    }
    fields.update(config.fields)
    return fields


class Encoder:
    def __init__(self, constants: dict[str, Any], stats: Stats) -> None:
        self.constants = constants
        self.stats = stats
        # `{"container_name":...,"pid":...,` : the entry's own keys follow it.
        self.prefix = _constant_prefix(constants)
        self._head = self.prefix.decode("utf-8")

    def append(self, entries: Sequence[Union[Entry, str]], body: bytearray) -> None:
        """Encode the entries as JSON lines at the end of `body`. An entry the builder already
        wrote as JSON (a str) is joined with its neighbours and encoded with them at once."""
        written: list[str] = []
        for entry in entries:
            if entry.__class__ is str:
                written.append(entry)
                continue
            if written:
                self._append_written(written, body)
                written = []
            body += self.encode(entry)  # type: ignore[arg-type]
            body += b"\n"
        if written:
            self._append_written(written, body)

    def _append_written(self, written: list[str], body: bytearray) -> None:
        head = self._head
        text = head + ("\n" + head).join(written) + "\n"
        try:
            body += text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: as the general path writes them
            for one in written:
                body += clean(head + one).encode("utf-8")
                body += b"\n"

    def encode(self, entry: Entry) -> bytes:
        """One JSON line for the entry, always below the server's line limit. Never raises."""
        if not self.constants.keys().isdisjoint(entry):
            # The program's own value wins, once.
            body = _dumps({**self.constants, **entry})
        else:
            body = self.prefix + _dumps(entry)[1:]
        if len(body) >= SERVER_LINE_LIMIT:
            body = self._shrink(entry)
        return body

    def _shrink(self, entry: Entry) -> bytes:
        """A line too big for the server (which would skip it, and the lines after it): keep
        the message (within the line budget already when it is text) and the essential fields,
        each bounded, and name the fields left out. The size is checked again: what still does
        not fit (a message that is an object, many constant fields) gets the last resort."""
        self.stats.add("truncated")
        kept: dict[str, Any] = {key: _bounded(entry[key], key == "_msg")
                                for key in ESSENTIAL if key in entry}  # fmt: skip
        kept["vlhook.truncated"] = _left_out(entry, kept)
        body = self.prefix + _dumps(kept)[1:]
        return body if len(body) < SERVER_LINE_LIMIT else self._last_resort(entry)

    def _last_resort(self, entry: Entry) -> bytes:
        """A line that fits whatever the entry holds: the beginning of its message as text,
        its time, level and stream when they are vlhook's short ones, the names of the fields
        left out; without the constant fields if even they do not fit with it."""
        message = entry.get("_msg")
        text = message if isinstance(message, str) else _codec.safe_str(message)
        kept: dict[str, Any] = {key: entry[key] for key in ESSENTIAL if _short(entry.get(key))}
        kept["_msg"] = _cut_text(clean(text), LAST_RESORT_CHARS)
        kept["vlhook.truncated"] = _left_out(entry, kept)
        body = _dumps(kept)
        with_constants = self.prefix + body[1:]
        return with_constants if len(with_constants) < SERVER_LINE_LIMIT else body


def _bounded(value: Any, message: bool) -> Any:
    """A kept field's value, of bounded size: numbers as they are, the message's text as it is
    (the builder split it already), anything else as text of at most ESSENTIAL_CHARS."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str) and (message or len(value) <= ESSENTIAL_CHARS):
        return value
    text = value if isinstance(value, str) else _codec.safe_str(value)
    return _cut_text(text, LAST_RESORT_CHARS if message else ESSENTIAL_CHARS)


def _short(value: Any) -> bool:
    """Whether a value is short text or a 64-bit integer (as vlhook's own fields are)."""
    if isinstance(value, str):
        return len(value) <= 64
    return isinstance(value, int) and _codec.MIN_INT <= value <= _codec.MAX_INT


def _left_out(entry: Entry, kept: dict[str, Any]) -> str:
    """The names of the entry's fields not kept, and of those kept but cut."""
    names = [key for key in entry if key not in kept or kept[key] is not entry[key]]
    return ",".join(map(str, names))[:NAMES_CHARS]


def _cut_text(text: str, limit: int) -> str:
    """The text's first `limit` characters, marked as cut (the marker _entry's _cut writes)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"…[truncated {len(text)} chars]"


def _constant_prefix(constants: dict[str, Any]) -> bytes:
    try:
        return _codec.simple(constants)[:-1] + b","
    except (UnicodeEncodeError, TypeError, ValueError):  # odd text in VICTORIALOGS_FIELDS
        return _dumps(constants)[:-1] + b","


def _dumps(entry: Entry) -> bytes:
    try:
        return _codec.dumps_carried(entry)  # an integer past 64 bits as text
    except Exception:  # too deep, self-referencing, lone surrogates...
        pass
    try:
        # Lone surrogates (bytes a surrogateescape stream let through, in a line, a file name)
        # are the common cause: replaced at any depth, the values keep their shape.
        return _codec.dumps(writable(entry))
    except Exception:
        pass
    try:
        return _codec.dumps(_plain(entry))
    except Exception:
        message = clean(_codec.safe_str(entry.get("_msg")))
        return _codec.dumps({"_msg": message, "vlhook.encode_error": "not encodable"})


def writable(value: Any) -> Any:
    """`value` as orjson can write it: lone surrogates replaced in its text and names, the
    numbers JSON has no form for made text, its shape kept (see _replaced). ValueError when
    that would merge two names or go past REPLACED_DEPTH levels."""
    return _replaced(value, REPLACED_DEPTH)


def _replaced(value: Any, depth: int) -> Any:
    """`value` with its text (keys too) made valid UTF-8 at any depth (see clean), and the
    numbers JSON has no form for made text (as dumps_carried does); other values as they
    are. Raises ValueError past `depth` levels (a value inside itself, or nesting the
    entry builder never lets through) and when two names become one: _plain makes the values
    text instead."""
    if isinstance(value, str):
        return clean(value)
    if depth <= 0:
        raise ValueError("too deep")
    if isinstance(value, dict):
        out = {(clean(key) if isinstance(key, str) else key): _replaced(item, depth - 1)
               for key, item in value.items()}  # fmt: skip
        if len(out) < len(value):  # names alike once replaced: one value would be lost
            raise ValueError("names merged")
        return out
    if isinstance(value, (list, tuple)):
        return [_replaced(item, depth - 1) for item in value]
    return value if _codec.carried(value) else _codec.number_text(value)


def _plain(entry: Entry) -> dict[str, Any]:
    """Fallback when a value cannot be encoded: strings without lone surrogates, numbers
    JSON carries (the others as text, as the entry builder makes them), and everything else
    (containers included) as text."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, (int, float)) or value is None:
            plain: Any = value if _codec.carried(value) else _codec.number_text(value)
        else:
            plain = clean(value if isinstance(value, str) else _codec.safe_str(value))
        name = clean(str(key))
        if name in out:  # two names alike once replaced: this one keeps its escapes instead
            name = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
        out[name] = plain
    return out


def clean(text: str) -> str:
    """Text as valid UTF-8: bytes a surrogateescape stream smuggled in become U+FFFD, as the
    server would show them; any other lone surrogate too."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")
