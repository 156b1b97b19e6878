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
from typing import Any, Callable, Optional

from vlhook import _context
from vlhook._capture_streams import suppressed
from vlhook._diag import internal_error
from vlhook._kinds import LOGGING

_original: Optional[Callable[[logging.Logger, logging.LogRecord], None]] = None


def install(put: Callable[[tuple[Any, ...], int], None], level: int) -> None:
    global _original
    if _original is not None:
        return
    original = _original = logging.Logger.callHandlers
    from vlhook._records import message_of

    def callHandlers(self: logging.Logger, record: logging.LogRecord) -> None:
        ident = get_ident()
        nested = ident in suppressed  # a handler that logs: restore the outer state after
        outer = suppressed.get(ident)
        texts: list[str] = []
        try:
            # Snapshot before handlers run: some (awslambdaric's JSON one) rewrite the level.
            levelno = record.levelno
            message = message_of(record) if levelno >= level else ""
        except Exception as exc:
            internal_error("capture.logging", exc)
            levelno, message = 0, ""
        suppressed[ident] = texts
        try:
            original(self, record)
        finally:
            if nested:
                suppressed[ident] = outer
            else:
                suppressed.pop(ident, None)
            if levelno >= level:
                _put_record(put, record, levelno, message, texts)

    logging.Logger.callHandlers = callHandlers  # type: ignore[method-assign]


def _put_record(
    put: Callable[[tuple[Any, ...], int], None],
    record: logging.LogRecord,
    levelno: int,
    message: str,
    texts: list[str],
) -> None:
    try:
        t_ns = int(record.created * 1e9)
        item = (LOGGING, record, t_ns, get_ident(), _context.invocation, _context.bound_get(),
                levelno, message, texts)  # fmt: skip
        put(item, levelno)
    except Exception as exc:
        internal_error("capture.logging", exc)


def uninstall() -> None:
    global _original
    if _original is not None:
        logging.Logger.callHandlers = _original  # type: ignore[method-assign,assignment]
        _original = None
