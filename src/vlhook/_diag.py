"""The interceptor's own voice: diagnostics on the original stderr, and its internal errors.

Nothing here may raise or write through a captured stream (that would be captured and shipped).
Messages are rate-limited per key and credentials are redacted before they are shown.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Optional, TextIO

RATE_LIMIT_S = 30.0

_out: Optional[TextIO] = None
_debug = False
_last_shown: dict[str, float] = {}
#: Internal errors swallowed so far, as "where: Type: message" (the test suite asserts it is empty).
internal_errors: list[str] = []
_MAX_KEPT = 100


def configure(out: Optional[TextIO], debug: bool) -> None:
    global _out, _debug
    _out = out
    _debug = debug


def _write(text: str) -> None:
    from vlhook._redact import redact_text

    line = f"vlhook: {redact_text(text)}\n"
    try:
        if _out is not None:
            _out.write(line)
            _out.flush()
        else:
            os.write(2, line.encode("utf-8", "replace"))
    except Exception:
        pass


def warn(text: str, key: Optional[str] = None) -> None:
    """Something the user must know (bad config, data lost): shown, at most once per key/30 s."""
    now = time.monotonic()
    key = key or text
    last = _last_shown.get(key)
    if last is not None and now - last < RATE_LIMIT_S:
        return
    _last_shown[key] = now
    _write(text)


def debug(text: str) -> None:
    if _debug:
        _write(text)


def internal_error(where: str, exc: BaseException) -> None:
    """An error inside the interceptor, swallowed so the program never sees it."""
    try:
        record = f"{where}: {type(exc).__name__}: {exc}"
        if len(internal_errors) < _MAX_KEPT:
            internal_errors.append(record)
        warn(f"internal error in {record} (the program is not affected)", key=where)
    except Exception:
        pass


class guard:
    """The one guard around every hook body: an exception inside is reported as an internal
    error (once per place, rate-limited) and swallowed, so it never reaches the program."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: the program's, never swallowed
        internal_error(self.where, exc)
        return True
