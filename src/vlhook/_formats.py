"""What common logging libraries print, understood (sender thread).

A printed line is only text, but the libraries programs use print it in a few known forms:
colour codes on a terminal (structlog's and loguru's console output), a record's line with its
traceback written at once (structlog's console renderer, loguru's text), an `exception` key
holding the traceback (structlog's `format_exc_info`) or its frames (`dict_tracebacks`), and
loguru's `serialize=True` JSON, which nests the record under `record`. Each becomes what the
entry of a logging record has: `_msg`, `level`, `_time`, fields, and `exception.*`.
"""

from __future__ import annotations

from vlhook._patterns import lazy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# Escape sequences a terminal shows nothing of, which console renderers and progress displays
# write around words: CSI (colours, styles, cursor moves, erasing: ESC [ ...), OSC (a link's
# target, a window title: ESC ] ... ended by BEL or ESC \\, the link's text kept between its
# two sequences), a character set's choice (ESC ( B, as `tput sgr0` writes) and the
# two-character ones (ESC 7 and ESC 8 save and restore the cursor).
_ESCAPE = r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[()*+\-./][ -~]|[0-~])"
_CONTROL = lazy(_ESCAPE)
# A line of them and white space alone: matched from its start, it fails at the first character
# shown, where stripping them would go through the whole line.
_NOTHING_SHOWN = lazy(rf"(?:\s|{_ESCAPE})*")
# An exception's line in a printed traceback: `module.Name: message`, or the name alone.
_EXCEPTION_LINE = lazy(r"([A-Za-z_][\w.]*)(?::\s?(.*))?\Z")
# What most exception names end with: a line that ends a multi-line message is not taken for one.
_EXCEPTION_NAMES = ("Error", "Exception", "Warning", "Interrupt", "Exit", "Iteration", "Group")
CAUSE = "\n\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT = "\n\nDuring handling of the above exception, another exception occurred:\n\n"


def strip_colours(text: str) -> str:
    return _CONTROL.sub("", text)


def readable(message: str) -> str:
    """A record's message read without its escape sequences, as a line is; itself when they
    are all it holds: a record still makes its entry, and an empty message would be stored as
    the server's "missing _msg field"."""
    return strip_colours(message) or message


def shows_nothing(text: str) -> bool:
    """Whether a line shows nothing on a terminal: empty, white space, or escape sequences
    alone (a colour reset after each write, the cursor shown again at a spinner's end). Such a
    line makes no entry, as an empty one makes none (its message would be empty)."""
    return not text or text.isspace() or _NOTHING_SHOWN.fullmatch(text) is not None


def traceback_fields(text: str) -> dict[str, str]:
    """`exception.type` and `exception.message` from a printed traceback's last exception line
    (best effort: none when no line looks like one)."""
    fallback = None
    for line in reversed(text.splitlines()):
        if not line or line[0] in " \t":
            continue
        match = _EXCEPTION_LINE.match(line)
        if match is None:
            continue
        if match.group(1).endswith(_EXCEPTION_NAMES):
            fallback = match
            break
        fallback = fallback or match
    if fallback is None:
        return {}
    return {"exception.type": fallback.group(1), "exception.message": fallback.group(2) or ""}


#: How awslambdaric prints a handler's error in its text format: `[ERROR] Type: message`, then
#: Python's traceback header and the frames, indented with no-break spaces, its lines ended by
#: carriage returns (read as the lines of one line: see _lines._carriage_returns).
LAMBDA_ERROR = "[ERROR] "
_LAMBDA_TRACEBACK = "\nTraceback (most recent call last):"
_NO_BREAK_SPACE = "\u00a0"


def is_lambda_error(text: str) -> bool:
    return text.startswith(LAMBDA_ERROR) and _LAMBDA_TRACEBACK in text


def lambda_error(text: str) -> dict[str, str]:
    """The `_msg` and `exception.*` of a Lambda runtime's error report (see is_lambda_error):
    its frames indented with spaces, as Python prints them, and the exception its first line
    names."""
    head, *rest = text.split("\n")
    for index, line in enumerate(rest):
        indent = len(line) - len(line.lstrip(_NO_BREAK_SPACE))
        if indent:
            rest[index] = " " * indent + line[indent:]
    fields = {"_msg": "\n".join([head, *rest])}
    match = _EXCEPTION_LINE.match(head, len(LAMBDA_ERROR))
    if match is not None:
        fields["exception.type"] = match.group(1)
        fields["exception.message"] = match.group(2) or ""
    return fields


def exception_key(obj: dict[str, Any]) -> dict[str, Any]:
    """`exception.*` from a JSON object's `exception` key, when it holds a traceback (taken out
    of the object); else nothing."""
    value = obj.get("exception")
    if isinstance(value, str) and value.startswith("Traceback"):
        del obj["exception"]
        return {**traceback_fields(value), "exception.stacktrace": value}
    if isinstance(value, list) and value and all(isinstance(e, dict) for e in value):
        if not isinstance(value[0].get("exc_type"), str):
            return {}
        del obj["exception"]
        first = value[0]
        return {
            "exception.type": first["exc_type"],
            "exception.message": str(first.get("exc_value", "")),
            "exception.stacktrace": _render_frames(value),
        }
    return {}


def _render_frames(chain: list[dict[str, Any]]) -> str:
    """structlog's `dict_tracebacks` (the exception first, then its causes) as Python prints a
    traceback (the first cause first); the frames' locals are left out."""
    text = ""
    for position in range(len(chain) - 1, -1, -1):
        exception = chain[position]
        lines = ["Traceback (most recent call last):"]
        for frame in exception.get("frames") or ():
            if isinstance(frame, dict):
                lines.append(
                    f'  File "{frame.get("filename")}", line {frame.get("lineno")}, '
                    f"in {frame.get('name')}"
                )
        value = exception.get("exc_value")
        lines.append(f"{exception.get('exc_type')}: {value}" if value else
                     str(exception.get("exc_type")))  # fmt: skip
        if text:
            text += CAUSE if chain[position + 1].get("is_cause") else CONTEXT
        text += "\n".join(lines)
    return text


def loguru_json(obj: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The entry's fields from loguru's `serialize=True` line (`{"text": ..., "record": {...}}`),
    or None when the object is not one."""
    record = obj.get("record")
    if len(obj) != 2 or not isinstance(obj.get("text"), str) or not isinstance(record, dict):
        return None
    number, message = _inner(record, "level", "no"), record.get("message")
    if not isinstance(number, int) or not isinstance(message, str):
        return None
    from vlhook._entry import rfc3339
    from vlhook._levels import level_name

    fields: dict[str, Any] = {"_msg": message, "level": level_name(number)}
    stamp = _inner(record, "time", "timestamp")
    if isinstance(stamp, (int, float)) and 0 <= stamp < 1e10:
        fields["_time"] = rfc3339(round(stamp * 1e6) * 1000)  # seconds, to the microsecond
    for field, value in (
        ("logger", record.get("name")),
        ("code.file", _inner(record, "file", "path")),
        ("code.line", record.get("line")),
        ("code.function", record.get("function")),
        ("thread", _inner(record, "thread", "name")),
    ):
        if value is not None:
            fields[field] = value
    exception_type = _inner(record, "exception", "type")
    if exception_type:
        fields["exception.type"] = exception_type
        fields["exception.message"] = str(_inner(record, "exception", "value") or "")
        _, found, trace = obj["text"].partition("\nTraceback (most recent call last):")
        if found:
            fields["exception.stacktrace"] = (found[1:] + trace).rstrip("\n")
    extra = record.get("extra")
    if isinstance(extra, dict):
        fields.update((k, v) for k, v in extra.items() if k not in fields)
    return fields


def _inner(record: dict[str, Any], key: str, inner: str) -> Any:
    value = record.get(key)
    return value.get(inner) if isinstance(value, dict) else None


def head_and_traceback(text: str) -> tuple[str, str]:
    """A record's line and the traceback written with it (see _lines: one write)."""
    head, _, trace = text.partition("\n")
    return head.rstrip(), trace
