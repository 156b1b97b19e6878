"""loguru: a record written to the console is shipped as one entry made from the record.

loguru formats each record once per sink and hands the sink a `Message`: the formatted text,
with the record attached. When a sink writes one to a captured stream (loguru's default sink is
sys.stderr), the tee hands it here instead of keeping the text: the entry gets the record's
level, message, time, code location, `extra` fields and exception, whatever the sink's format
(text, colours, `serialize=True` JSON, a multi-line traceback). A record written to several
console sinks is one entry. Records below VICTORIALOGS_LOG_LEVEL are not shipped, as logging's.
loguru's own report of a sink that failed ("--- Logging error in Loguru Handler ---") shows the
traceback as it is without vlhook.
"""

from __future__ import annotations

import _thread
import sys
from time import time_ns

from vlhook import _capture_streams, _context, _diag, _frames
from vlhook._captures import event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Optional

    from vlhook._activation import Active

#: Keys of the records captured lately, to know a record a second console sink writes.
GENERATION = 256


class _Records:
    def __init__(self, level: int) -> None:
        self.level = level
        # Two generations, swapped whole (one assignment), so that no lock is needed: a lock
        # held by another thread at a fork would stay held in the child.
        self.new: dict[tuple[Any, ...], object] = {}
        self.old: dict[tuple[Any, ...], object] = {}

    def capture(self, message: Any) -> Any:
        """On the writing thread: the capture of the record a Message carries (see
        `_capture_streams.richer`)."""
        record = getattr(message, "record", None)
        if not isinstance(record, dict):
            return None  # not a record's text: kept as text
        levelno = record["level"].no
        if levelno < self.level:
            return _capture_streams.NOTHING
        # A record written by two sinks is the same object, or (a sink with enqueue=True, on
        # loguru's own thread) an equal copy.
        if not self._first_sight(record):
            return _capture_streams.NOTHING
        printed = ""
        exception = record["exception"]
        if exception is not None and exception.type is not None and exception.traceback is None:
            # A sink with enqueue=True gets a copy of the record without its traceback (loguru
            # pickles it); the text loguru formatted before queuing it holds it (read on the
            # sender thread: see entry_fields).
            printed = str.__str__(message)
        return event(
            entry_fields,
            (record, printed),
            time_ns(),
            _thread.get_ident(),
            _context.get(),
            levelno,
        ), levelno

    def _first_sight(self, record: dict[str, Any]) -> bool:
        """Whether the record (or a copy of it) is seen here for the first time; noted."""
        key = _key(record)
        mine = object()
        if key in self.old or self.new.setdefault(key, mine) is not mine:
            return False
        if len(self.new) > GENERATION:
            self.old, self.new = self.new, {}
        return True

    def made_within(self, record: dict[str, Any]) -> None:
        """On the program's thread, for a sink with enqueue=True: a record made by a logging
        handler (loguru's InterceptHandler) while it handled a logging record, which is what
        is shipped. That sink writes it later on loguru's own thread, no longer known as the
        handler's output (written at once, it is: see _capture_streams.suppressed); taken
        there as written by a second sink."""
        self._first_sight(record)


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    """A record, and its copies (enqueue=True). Forked children's main threads share one id:
    without the process, their records of one message in one microsecond were one."""
    return (record["time"], record["process"].id, record["thread"].id, record["line"],
            record["message"])  # fmt: skip


def printed_traceback(text: str) -> str:
    """The traceback loguru printed at the end of a record's text ("" when there is none):
    from `Traceback (most recent call last` (`..., catch point marked):` with backtrace)."""
    start = text.find(TRACEBACK_HEAD)
    if start < 0:
        return ""
    trace = text[start:].rstrip("\n")
    if "\x1b" in trace:  # colorize=True
        from vlhook._formats import strip_colours

        trace = strip_colours(trace)
    return trace


TRACEBACK_HEAD = "Traceback (most recent call last"


def entry_fields(data: tuple[dict[str, Any], str]) -> dict[str, Any]:
    """On the sender thread: the entry's fields from a loguru record, and the text it was
    printed as when the record's copy has no traceback ("" else: see _Records.capture)."""
    record, printed = data
    rfc3339, level_name, merge_fields, describe_exception = _helpers or _load_helpers()
    fields: dict[str, Any] = {
        "_time": rfc3339(round(record["time"].timestamp() * 1e6) * 1000),
        "_msg": record["message"].rstrip("\n"),  # opt(raw=True) messages end their own line
        "level": level_name(record["level"].no),
        "logger": record["name"],
        "code.file": record["file"].path,
        "code.line": record["line"],
        "code.function": record["function"],
        "thread": record["thread"].name,
    }
    exception = record["exception"]
    if exception is not None and exception.type is not None:
        fields.update(describe_exception(exception.type, exception.value, exception.traceback))
        trace = printed_traceback(printed) if printed else ""
        if trace:
            fields["exception.stacktrace"] = trace
    # As logging's `extra=`: a field of the record's `extra` (its `bind()`) wins over the
    # record's location fields; one named as vlhook's own (`bind(level=...)`) is kept as
    # `fields.<name>`.
    merge_fields(fields, record["extra"])
    return fields


#: What entry_fields calls, loaded at its first call (on the sender thread, not when the
#: program imports loguru); an import statement costs ~0.7 µs each time it runs.
_helpers: Optional[tuple[Any, ...]] = None


def _load_helpers() -> tuple[Any, ...]:
    global _helpers
    from vlhook._entry import rfc3339
    from vlhook._levels import level_name
    from vlhook._objects import merge_fields
    from vlhook._records import describe_exception

    _helpers = (rfc3339, level_name, merge_fields, describe_exception)
    return _helpers


def install(module: ModuleType, active: Active) -> None:
    """Called when loguru is imported."""
    from loguru import _error_interceptor, _handler, _logger

    records = _Records(active.config.level)
    _capture_streams.richer[_handler.Message] = records.capture
    _watch_for_enqueued_sinks(_logger.Logger, _handler.Handler, records)
    _show_reports_as_without(_error_interceptor.ErrorInterceptor)
    _diag.debug("loguru: records written to the console are shipped as records")


def _watch_for_enqueued_sinks(logger: Any, handler: Any, records: _Records) -> None:
    """Once the program adds a sink with enqueue=True, each sink's emit notes the records a
    logging handler makes (see _Records.made_within). Not before: it costs every loguru call
    ~0.4 µs (of ~9), which only such a sink needs."""
    add = logger.add

    def add_sink(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("enqueue"):
            logger.add = add  # once
            with _diag.guard("loguru enqueued sink"):
                _note_records_made_within(handler, records)
        return add(self, *args, **kwargs)

    # As the program's `help(logger.add)` and `inspect.signature` see it without vlhook.
    add_sink.__name__, add_sink.__qualname__ = add.__name__, add.__qualname__
    add_sink.__doc__, add_sink.__wrapped__ = add.__doc__, add  # type: ignore[attr-defined]
    logger.add = add_sink


def _note_records_made_within(handler: Any, records: _Records) -> None:
    """Each sink's emit, on the thread that logs: see _Records.made_within."""
    emit = handler.emit
    suppressed = _capture_streams.suppressed
    get_ident = _thread.get_ident

    def vlhook_emit(self: Any, record: Any, *args: Any) -> Any:
        if suppressed and get_ident() in suppressed and getattr(self, "_enqueue", False):
            with _diag.guard("loguru record of a logging handler"):
                records.made_within(record)
        return emit(self, record, *args)

    handler.emit = vlhook_emit


def _show_reports_as_without(interceptor: Any) -> None:
    original = interceptor.print

    def print_report(self: Any, record: Any = None, *, exception: Optional[Any] = None) -> Any:
        with _diag.guard("loguru error report"):
            _frames.hide(exception if exception is not None else sys.exc_info()[1])
        return original(self, record, exception=exception)

    interceptor.print = print_report
