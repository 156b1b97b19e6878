"""Fields from logging records and exceptions (sender thread).

Does not import logging itself: an uncaught exception in a program that never imported logging
should not cost it that import.
"""

from __future__ import annotations

import traceback

from vlhook._codec import safe_str

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Optional

    from vlhook._captures import LogView


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


def exception_fields(record: LogView) -> dict[str, str]:
    fields: dict[str, str] = {}
    if record.exc_info and record.exc_info[0] is not None:
        fields.update(describe_exception(*record.exc_info))
    elif record.exc_text:
        fields["exception.stacktrace"] = record.exc_text
    if record.stack_info:
        fields["stack_info"] = record.stack_info
    return fields


def has_no_extras(record: LogView) -> bool:
    return record.extras is None


def extra_fields(record: LogView) -> dict[str, Any]:
    return record.extras or {}
