"""Context carried by every capture: the current invocation and the fields the program bound.

Read on the writer's thread at write time (an entry belongs to the invocation during which it
was written, even when the sender encodes it later). Each source is immutable once published,
so a capture holds references, not copies. `get()` is what every capture calls: while nothing
was ever bound and no invocation runs, it returns None at the cost of one call.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from typing import Any, Callable, Optional

    from vlhook._captures import Context, Fields

#: Fields of the current serverless invocation (request id, trace ids), or None outside one.
invocation: Optional[Fields] = None


def _nothing_bound() -> Optional[Fields]:
    return None


#: The bound fields of the calling thread or task. Until the first bind() nothing is bound
#: anywhere; the context variable (and `contextvars`, ~0.3 ms at start-up) comes with it.
bound_get: Callable[[], Optional[Fields]] = _nothing_bound
_bound: Optional[ContextVar[Optional[Fields]]] = None
_bound_lock = _thread.allocate_lock()


def _empty() -> Optional[Context]:
    return None


def _sources() -> Optional[Context]:
    inv, bound = invocation, bound_get()
    if inv is None and bound is None:
        return None
    return (inv, bound)


#: The context of the calling thread or task, for one capture (see the module docstring).
get: Callable[[], Optional[Context]] = _empty


def _variable() -> ContextVar[Optional[Fields]]:
    global _bound, bound_get, get
    with _bound_lock:
        if _bound is None:
            from contextvars import ContextVar

            _bound = ContextVar("vlhook_bound", default=None)
            bound_get = _bound.get
            get = _sources
    return _bound


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


def set_invocation(fields: Optional[Fields]) -> None:
    global invocation, get
    invocation = fields
    if fields is not None:
        get = _sources


def apply(entry: dict[str, Any], context: Optional[Context]) -> None:
    """Add a capture's context to its entry (sources in order: later ones win)."""
    if context:
        for fields in context:
            if fields:
                entry.update(fields)
