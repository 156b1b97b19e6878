"""Fields from logging records and exceptions (sender thread)."""

from __future__ import annotations

import logging
import traceback
from types import TracebackType
from typing import Any, Optional

from vlhook._codec import safe_str

# Every attribute a LogRecord has of itself; anything else was passed as `extra=`.
STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def describe_exception(
    exc_type: Optional[type[BaseException]],
    exc: Optional[BaseException],
    tb: Optional[TracebackType],
) -> dict[str, str]:
    try:
        text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")
    except Exception as error:
        text = f"<traceback unavailable: {safe_str(error)}>"
    name = getattr(exc_type, "__qualname__", safe_str(exc_type))
    module = getattr(exc_type, "__module__", "builtins")
    return {
        "exception.type": name if module in ("builtins", "__main__") else f"{module}.{name}",
        "exception.message": safe_str(exc),
        "exception.stacktrace": text,
    }


def exception_fields(record: logging.LogRecord) -> dict[str, str]:
    fields: dict[str, str] = {}
    if record.exc_info and record.exc_info[0] is not None:
        fields.update(describe_exception(*record.exc_info))
    elif record.exc_text:
        fields["exception.stacktrace"] = record.exc_text
    if record.stack_info:
        fields["stack_info"] = record.stack_info
    return fields


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD_ATTRS and k[:1] != "_"}


def message_of(record: logging.LogRecord) -> str:
    """record.getMessage(), or a readable form when the format and args do not match."""
    try:
        return record.getMessage()
    except Exception as error:
        return (
            f"{safe_str(record.msg)} (formatting failed: {safe_str(error)}; args: "
            f"{safe_str(record.args)})"
        )
