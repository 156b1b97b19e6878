"""Fields from logging records and exceptions (sender thread).

Does not import logging itself: an uncaught exception in a program that never imported logging
should not cost it that import.
"""

from __future__ import annotations

import traceback

from vlhook._codec import safe_str

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from types import TracebackType
    from typing import Any, Optional

_standard_attrs: frozenset[str] = frozenset()


def _standard(record: logging.LogRecord) -> frozenset[str]:
    """Every attribute a LogRecord has of itself; anything else was passed as `extra=`."""
    global _standard_attrs
    if not _standard_attrs:
        blank = type(record)("", 0, "", 0, "", None, None)
        _standard_attrs = frozenset(blank.__dict__) | {"message", "asctime", "taskName"}
    return _standard_attrs


def describe_exception(
    exc_type: Optional[type[BaseException]],
    exc: Optional[BaseException],
    tb: Optional[TracebackType],
) -> dict[str, str]:
    try:
        text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")
    except Exception as error:  # a broken __str__ in the chain, say
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


def has_no_extras(record: logging.LogRecord) -> bool:
    """Whether the record has only a LogRecord's own attributes (one set comparison in C)."""
    return record.__dict__.keys() <= _standard(record)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    if has_no_extras(record):  # most records
        return {}
    standard = _standard(record)
    return {k: v for k, v in record.__dict__.items() if k not in standard and k[:1] != "_"}
