"""Context carried by every capture: fields bound by the program and the current invocation.

Both are read on the writer's thread at write time (an entry belongs to the invocation during
which it was written, even when the sender encodes it later) and are immutable once published,
so a capture holds a reference instead of a copy.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from typing import Any, Optional

    Fields = dict[str, Any]

#: Fields of the current serverless invocation (request id, trace ids), or None outside one.
invocation: Optional[Fields] = None


def _nothing_bound() -> Optional[Fields]:
    return None


#: The bound fields of the calling thread or task. Until the first bind() nothing is bound
#: anywhere; the context variable (and `contextvars`, ~0.3 ms at start-up) comes with it.
bound_get = _nothing_bound
_bound: Optional[ContextVar[Optional[Fields]]] = None
_bound_lock = _thread.allocate_lock()


def _variable() -> ContextVar[Optional[Fields]]:
    global _bound, bound_get
    with _bound_lock:
        if _bound is None:
            from contextvars import ContextVar

            _bound = ContextVar("vlhook_bound", default=None)
            bound_get = _bound.get
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
    global invocation
    invocation = fields
