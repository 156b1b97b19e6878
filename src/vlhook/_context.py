"""Context carried by every capture: fields bound by the program and the current invocation.

Both are read on the writer's thread at write time (an entry belongs to the invocation during
which it was written, even when the sender encodes it later) and are immutable once published,
so a capture holds a reference instead of a copy.
"""

from __future__ import annotations

from contextvars import ContextVar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    Fields = dict[str, Any]

#: Fields of the current serverless invocation (request id, trace ids), or None outside one.
invocation: Optional[Fields] = None

_bound: ContextVar[Optional[Fields]] = ContextVar("vlhook_bound", default=None)
bound_get = _bound.get


def bind(**fields: Any) -> None:
    """Add fields to every entry written from the current thread or task from now on."""
    current = _bound.get()
    merged = dict(current) if current else {}
    merged.update(fields)
    _bound.set(merged)


def unbind(*names: str) -> None:
    current = _bound.get()
    if current:
        _bound.set({k: v for k, v in current.items() if k not in names} or None)


def set_invocation(fields: Optional[Fields]) -> None:
    global invocation
    invocation = fields
