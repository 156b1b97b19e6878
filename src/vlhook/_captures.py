"""What the capture stage hands the sender: one named, typed item per write, record or exception.

The program's threads create these on every write, so they are plain tuples underneath (a
tuple subclass with named fields, like `collections.namedtuple`, whose import would cost
~2 ms at start-up). For the type checker they are `NamedTuple`s; each kind has one typed
constructor below, so mypy checks every place that makes one.
"""

from __future__ import annotations

from _collections import _tuplegetter  # type: ignore[import-not-found]
from _operator import itemgetter

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    import logging
    from typing import Any, Callable, NamedTuple, Optional, Union

    #: Fields added to an entry, by source, applied in order (see _context): each is read-only
    #: once published, so it is shared. A source's value that is not yet fields travels with
    #: the function that makes it fields on the sender thread (a span: its ids, as hex).
    Fields = dict[str, Any]
    Source = Union[Fields, tuple[Callable[[Any], Optional[Fields]], Any]]
    Context = tuple[Optional[Source], ...]

STDOUT, STDERR = 0, 1
STREAM_NAME = ("stdout", "stderr")

_new = tuple.__new__


def record_type(name: str, fields: str) -> Any:
    """A tuple subclass with named, read-only fields (what namedtuple builds, minus its cost)."""
    names = tuple(fields.split())
    namespace: dict[str, Any] = {"__slots__": (), "_fields": names, "__module__": __name__}
    for index, field in enumerate(names):
        namespace[field] = _tuplegetter(index, field)

    def __repr__(self: tuple[Any, ...]) -> str:
        return f"{name}({', '.join(f'{f}={v!r}' for f, v in zip(names, self))})"

    namespace["__repr__"] = __repr__
    return type(name, (tuple,), namespace)


if TYPE_CHECKING:

    class Text(NamedTuple):
        """A write to sys.stdout / sys.stderr (text, or bytes through `.buffer`)."""

        kind: int  # STDOUT or STDERR
        data: Union[str, bytes]
        t_ns: int
        thread: int
        context: Optional[Context]

    class LogView(NamedTuple):
        """What the sender reads of a logging record, read when its handlers are done: the
        record itself (its dict of ~25 attributes, its formatted strings) is freed at once, as
        without vlhook. Keeping it until the sender's turn cost logger.info() ~6 µs a call:
        memory never reused warm (measured on Python 3.11, the sender asleep)."""

        name: str
        pathname: str
        lineno: int
        funcName: str  # the record's own names: the sender reads either alike
        threadName: Optional[str]
        msg: Any
        args: Any
        exc_info: Any
        exc_text: Optional[str]
        stack_info: Optional[str]
        #: The attributes passed as `extra=` (None: none, as in most records).
        extras: Optional[dict[str, Any]]

    class Record(NamedTuple):
        """A logging record: its level and message, read before its handlers ran, and what
        the sender reads of the rest, read after."""

        record: LogView
        t_ns: int
        thread: int
        context: Optional[Context]
        levelno: int
        message: str
        #: Text the record's handlers printed meanwhile (a JSON formatter's keys are merged).
        printed: list[str]

    class Uncaught(NamedTuple):
        """An exception nobody caught (main thread or a threading.Thread), or one Python could
        not raise (sys.unraisablehook's: a `__del__`, a weak reference's callback)."""

        exc: BaseException
        t_ns: int
        thread: int
        context: Optional[Context]
        thread_name: str
        #: What Python prints before the traceback ("Exception ignored in: <...>"), or "".
        head: str

    class Event(NamedTuple):
        """A record of another logging library (loguru's), as that library made it."""

        #: Makes the entry's fields from `data`, on the sender thread.
        fields: Callable[[Any], Fields]
        data: Any
        t_ns: int
        thread: int
        context: Optional[Context]
        levelno: int

    class Discard(NamedTuple):
        """Control: the line being assembled for (kind, thread) lost a piece to shedding."""

        kind: int
        thread: int

    class Line(NamedTuple):
        """A complete line (or a printed traceback as one), made on the sender thread."""

        kind: int
        text: str
        t_ns: int
        context: Optional[Context]
        level: str  # "" = detect from the text

    Capture = Union[Text, Record, Uncaught, Event]
else:
    Text = record_type("Text", "kind data t_ns thread context")
    LogView = record_type("LogView", "name pathname lineno funcName threadName msg args exc_info "
                                     "exc_text stack_info extras")  # fmt: skip
    Record = record_type("Record", "record t_ns thread context levelno message printed")
    Uncaught = record_type("Uncaught", "exc t_ns thread context thread_name head")
    Event = record_type("Event", "fields data t_ns thread context levelno")
    Discard = record_type("Discard", "kind thread")
    Line = record_type("Line", "kind text t_ns context level")


def text(
    kind: int, data: Union[str, bytes], t_ns: int, thread: int, context: Optional[Context]
) -> Text:
    return _new(Text, (kind, data, t_ns, thread, context))


#: A Text's kind, data, time and context as C getters, for map() over a group of captures (a
#: field's descriptor on the class is not callable).
TEXT_KIND, TEXT_DATA, TEXT_TIME, TEXT_CONTEXT = (itemgetter(index) for index in (0, 1, 2, 4))


def all_text(items: list[Any]) -> bool:
    """Whether every capture is a write (as a burst's are), told with C calls over them."""
    return set(map(type, items)) == _TEXT_ONLY


_TEXT_ONLY = {Text}


def record(
    rec: logging.LogRecord,
    t_ns: int,
    thread: int,
    context: Optional[Context],
    levelno: int,
    message: str,
    printed: list[str],
) -> Record:
    view = _new(LogView, (rec.name, rec.pathname, rec.lineno, rec.funcName, rec.threadName,
                          rec.msg, rec.args, rec.exc_info, rec.exc_text, rec.stack_info,
                          _extras(rec)))  # fmt: skip
    return _new(Record, (view, t_ns, thread, context, levelno, message, printed))


_standard_attrs: frozenset[str] = frozenset()


def _extras(rec: logging.LogRecord) -> Optional[dict[str, Any]]:
    """The record's attributes passed as `extra=` (None when there are none: one C call
    over its keys; `keys() <= set` looks each key up through the generic protocol, ~1.3x
    as long)."""
    global _standard_attrs
    attrs = rec.__dict__
    if not _standard_attrs:  # every attribute a record has of itself
        blank = type(rec)("", 0, "", 0, "", None, None)
        _standard_attrs = frozenset(blank.__dict__) | {"message", "asctime", "taskName"}
    if _standard_attrs.issuperset(attrs):
        return None
    return {k if k.__class__ is str else _field_name(k): v for k, v in attrs.items()
            if k not in _standard_attrs and (k.__class__ is not str or k[:1] != "_")}  # fmt: skip


def _field_name(key: Any) -> str:
    """A key of `extra=` that is no str (logging takes any: `extra={1: "one"}`), as the name
    of its field; never raises (this runs on the program's thread)."""
    try:
        return str(key)
    except Exception:
        return f"<{type(key).__name__}>"


def uncaught(
    exc: BaseException,
    t_ns: int,
    thread: int,
    context: Optional[Context],
    thread_name: str,
    head: str = "",
) -> Uncaught:
    return _new(Uncaught, (exc, t_ns, thread, context, thread_name, head))


def event(
    fields: Callable[[Any], Fields],
    data: Any,
    t_ns: int,
    thread: int,
    context: Optional[Context],
    levelno: int,
) -> Event:
    return _new(Event, (fields, data, t_ns, thread, context, levelno))


def discard(kind: int, thread: int) -> Discard:
    return _new(Discard, (kind, thread))


def line(kind: int, text_: str, t_ns: int, context: Optional[Context], level: str = "") -> Line:
    return _new(Line, (kind, text_, t_ns, context, level))
