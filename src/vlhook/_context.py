"""Context carried by every capture: trace ids, the current invocation, the fields the program
bound (through vlhook, structlog or loguru).

Read on the writer's thread at write time (an entry belongs to the span and the invocation
during which it was written, even when the sender encodes it later). `get()` is what every
capture calls: while no context-local source exists it is a C call that returns the same value
every time (None, or the process-wide fields), with no Python frame; it is swapped for a
function that reads the sources only when one appears.

Two kinds of sources, in order of precedence (a later one wins):
- process-wide, fixed between changes: the trace context of TRACEPARENT (set at start-up),
  then the current serverless invocation;
- context-local, read at every capture by a reader (the current OpenTelemetry span, structlog
  and loguru context, the fields bound with vlhook.bind()). A reader returns something false
  when its source holds nothing, else a value kept as is: a dict of fields, or a value that
  its `expand` function makes into fields later, on the sender thread.

Every value is immutable once published (a bind makes a new dict), so a capture holds
references, not copies.
"""

from __future__ import annotations

from itertools import repeat

from vlhook import _diag
from vlhook._sync import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from typing import Any, Callable, Optional

    from vlhook._captures import Context, Fields

    Read = Callable[[], Any]
    Expand = Callable[[Any], Optional[Fields]]

#: The fields that name a trace. A source that has `trace_id` replaces all of them, so that an
#: entry never pairs the trace of one source with the span of another.
TRACE_FIELDS = ("trace_id", "span_id", "trace_flags", "trace_state")

#: The fields vlhook fills itself, whatever the program writes: its message, time, level and
#: stream. A field of the program's own of one of these names (bound here, passed as `extra=`,
#: or printed as JSON and not mapped into vlhook's) is kept as `fields.<name>` instead of
#: replacing vlhook's: a bound `level` would otherwise relabel every entry, a bound `_time` the
#: server cannot read would have it drop every line. An empty name, which the server takes for
#: `_msg`, is kept as `fields.(empty)`.
OWN_NAMES = frozenset({"_msg", "_time", "level", "stream", ""})
KEPT_APART = "fields."

#: Readers' ranks: their order on an entry (later wins), whichever was installed first.
SPAN, STRUCTLOG, LOGURU, BOUND = range(4)

#: Fields from TRACEPARENT / TRACESTATE, read once at start-up.
environment: Optional[Fields] = None
#: Fields of the current serverless invocation (request id, trace ids), or None outside one.
invocation: Optional[Fields] = None

_process: Optional[Context] = None
#: For a reader whose value is new at every capture though its fields mostly are not
#: (structlog's snapshot), keyed by its `expand`: a function of the value whose result is equal
#: for two values alive at once exactly when they give the same fields (see _entry._sources).
#: Other values are told apart by their identity.
source_keys: dict[Expand, Callable[[Any], Any]] = {}
_ranked: list[tuple[int, Read, Optional[Expand]]] = []
_readers: tuple[tuple[Read, Optional[Expand]], ...] = ()
_lock = allocate_lock()


def _always(context: Optional[Context]) -> Callable[[], Optional[Context]]:
    """A C callable that returns `context` at every call: no Python frame on the path of every
    capture. A capture made after a pause (a program that logs now and then) finds little of
    the interpreter in the CPU's caches, and each frame then counts (see `_capture_text`)."""
    return repeat(context).__next__


def _read() -> Optional[Context]:
    context = _process
    for read, expand in _readers:
        value = read()
        if value:
            if expand is not None:
                value = (expand, value)
            context = (*context, value) if context else (value,)
    return context


#: The context of the calling thread or task, for one capture (see the module docstring).
get: Callable[[], Optional[Context]] = _always(None)


def _choose() -> None:
    """Swap `get` for the cheapest function that reads every source (under _lock)."""
    global get, _process
    _process = tuple(f for f in (environment, invocation) if f) or None
    get = _read if _readers else _always(_process)


def set_environment(fields: Optional[Fields]) -> None:
    global environment
    with _lock:
        environment = fields or None
        _choose()


def set_invocation(fields: Optional[Fields]) -> None:
    global invocation
    with _lock:
        invocation = fields
        _choose()


def after_fork_in_child() -> None:
    """The lock may have been held by a thread that does not exist in a forked child."""
    global _lock
    _lock = allocate_lock()


def add_reader(
    rank: int,
    read: Read,
    expand: Optional[Expand] = None,
    key: Optional[Callable[[Any], Any]] = None,
) -> None:
    """A context-local source from now on. `expand`, when given, runs on the sender thread;
    `key` with it, see source_keys."""
    with _lock:
        if expand is not None and key is not None:
            source_keys[expand] = key
        _add_reader(rank, read, expand)


def _add_reader(rank: int, read: Read, expand: Optional[Expand]) -> None:
    global _readers
    _ranked.append((rank, read, expand))
    _ranked.sort(key=lambda source: source[0])
    _readers = tuple((read, expand) for _, read, expand in _ranked)
    _choose()


def apply(entry: dict[str, Any], context: Optional[Context]) -> None:
    """Add a capture's context to its entry. Among the sources a later one wins; a field the
    entry has already wins over them all: the line's own (a record's, a printed JSON object's,
    `extra=`, a loguru record's bound fields), as a call's own field wins over a bound one of
    the same name in the logging libraries (structlog's `merge_contextvars`, loguru's `bind()`
    over `contextualize()`). A line that names any field of a trace keeps its own and takes
    none of the context's, so an entry never pairs one trace with another's span."""
    if not context:
        return
    fields = context[0]
    if len(context) > 1 or fields.__class__ is not dict or not OWN_NAMES.isdisjoint(fields):
        fields = fields_of(context)  # one source of plain fields, most often: no call
    names_trace = not entry.keys().isdisjoint(TRACE_FIELDS)  # one C call: mostly not
    if not names_trace and entry.keys().isdisjoint(fields):  # the common case
        entry.update(fields)
        return
    if names_trace:
        fields = {key: value for key, value in fields.items() if key not in TRACE_FIELDS}
    for key, value in fields.items():
        entry.setdefault(key, value)


def fields_of(context: Context) -> Fields:
    """A context's fields, a later source winning; a source that names a trace replaces the
    trace fields of those before it whole. Fields named as vlhook's own are kept apart. Not
    to be changed: a context with one source of fields gives that source's own dict."""
    merged: Optional[Fields] = None
    copied = False
    for source in context:
        fields = _expand(source) if isinstance(source, tuple) else source
        if not fields:
            continue
        if merged is None:
            merged = fields  # one source, most often: not copied
            continue
        if not copied:
            merged, copied = dict(merged), True  # never change a source's own dict
        if "trace_id" in fields:
            for name in TRACE_FIELDS:
                merged.pop(name, None)
        merged.update(fields)
    if merged is None:
        return {}
    return merged if OWN_NAMES.isdisjoint(merged) else kept_apart(merged)


def kept_apart(fields: Fields, own: frozenset[str] = OWN_NAMES) -> dict[str, Any]:
    """The fields, those named as vlhook's own (`own`) renamed `fields.<name>`."""
    return {(KEPT_APART + (key or "(empty)") if key in own else key): value
            for key, value in fields.items()}  # fmt: skip


def _expand(source: tuple[Expand, Any]) -> Optional[Fields]:
    with _diag.guard("context"):  # one bad value must not cost the rest of the batch
        return source[0](source[1])
    return None


# -- fields bound with vlhook.bind() ----------------------------------------------------------

#: Until the first bind() nothing is bound anywhere; the context variable (and `contextvars`,
#: ~0.3 ms at start-up) comes with it.
_bound: Optional[ContextVar[Optional[Fields]]] = None
_on_bound: list[Callable[[ContextVar[Optional[Fields]]], None]] = []


def _variable() -> ContextVar[Optional[Fields]]:
    global _bound
    with _lock:
        if _bound is not None:
            return _bound
        from contextvars import ContextVar

        variable = _bound = ContextVar("vlhook_bound", default=None)
        _add_reader(BOUND, variable.get, None)
    for hook in _on_bound:
        with _diag.guard("bind"):
            hook(variable)
    return variable


def when_bound(hook: Callable[[ContextVar[Optional[Fields]]], None]) -> None:
    """Call `hook(variable)` once fields are first bound (now, if they already are)."""
    if _bound is not None:
        with _diag.guard("bind"):
            hook(_bound)
    else:
        _on_bound.append(hook)


def bind(**fields: Any) -> None:
    """Add fields to every entry written from the current thread or task from now on."""
    variable = _variable()
    current = variable.get()
    merged = dict(current) if current else {}
    merged.update(fields)
    variable.set(merged)


def unbind(*names: str) -> None:
    variable = _variable()
    current = variable.get()
    if current:
        variable.set({k: v for k, v in current.items() if k not in names} or None)
