"""Capture of logging records, whatever the program's handlers and propagation.

`Logger.callHandlers` is where every emitted record of every logger passes exactly once
(propagating or not, with or without handlers, including Python's last-resort output). There
the record is captured, and while its handlers run, anything they print to a captured stream
is not captured again as text: a JSON line a handler prints is merged into the record's entry.
Logger levels are the program's: vlhook never changes them.
"""

from __future__ import annotations

import logging
from _thread import get_ident

from vlhook import _context
from vlhook._capture_streams import suppressed
from vlhook._captures import record as make_record
from vlhook._diag import internal_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from vlhook._captures import Record

    Put = Callable[[Record, int], None]

#: suppressed's value for a thread when no record of it was being handled.
OUTSIDE: Any = object()

_original: Optional[Callable[[logging.Logger, logging.LogRecord], None]] = None

# The wrapper is compiled under logging's own file name: when a handler fails, logging prints
# the call stack minus its own frames (it recognises them by directory), and a frame of ours in
# the middle would add lines to the program's stderr. Everything else happens in enter/leave.
_WRAPPER = """
def callHandlers(self, record):
    state = enter(record)
    try:
        original(self, record)
    finally:
        leave(record, state)
"""


def install(put: Put, level: int) -> None:
    global _original
    if _original is not None:
        return

    def enter(record: logging.LogRecord) -> tuple[Any, ...]:
        ident = get_ident()
        # A handler that logs: the outer state comes back after.
        outer = suppressed.get(ident, OUTSIDE)
        texts: list[str] = []
        levelno, message = 0, ""
        try:
            # Snapshot before handlers run: some (awslambdaric's JSON one) rewrite the level.
            levelno = record.levelno
            if levelno >= level:
                try:  # message_of only when this fails: one frame less on every record
                    message = record.getMessage()
                except Exception:
                    message = message_of(record)
        except Exception as exc:
            internal_error("capture.logging", exc)
        suppressed[ident] = texts
        return ident, outer, texts, levelno, message

    def leave(record: logging.LogRecord, state: tuple[Any, ...]) -> None:
        # The capture is made here rather than in a helper: one frame less on every record.
        ident, outer, texts, levelno, message = state
        if outer is OUTSIDE:
            suppressed.pop(ident, None)
        else:
            suppressed[ident] = outer
        if levelno < level:
            return
        try:
            t_ns = int(record.created * 1e9)
            put(make_record(record, t_ns, ident, _context.get(), levelno, message, texts),
                levelno)  # fmt: skip
        except Exception as exc:
            internal_error("capture.logging", exc)

    # Named as this module: a traceback through it shows the frame as without vlhook (_frames).
    namespace: dict[str, Any] = {"enter": enter, "leave": leave, "__name__": __name__,
                                 "original": logging.Logger.callHandlers}  # fmt: skip
    exec(compile(_WRAPPER, logging.__file__ or "logging", "exec"), namespace)  # noqa: S102
    _original = logging.Logger.callHandlers
    logging.Logger.callHandlers = namespace["callHandlers"]  # type: ignore[method-assign]


def message_of(record: logging.LogRecord) -> str:
    """record.getMessage(), or a readable form when the format and args do not match."""
    try:
        return record.getMessage()
    except Exception as error:  # the program's bug: shown in the entry, never raised
        from vlhook._codec import safe_str

        return (
            f"{safe_str(record.msg)} (formatting failed: {safe_str(error)}; "
            f"args: {safe_str(record.args)})"
        )


def uninstall() -> None:
    global _original
    if _original is not None:
        logging.Logger.callHandlers = _original  # type: ignore[method-assign,assignment]
        _original = None
