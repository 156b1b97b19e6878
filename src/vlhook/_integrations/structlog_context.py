"""structlog: entries carry the context bound with `structlog.contextvars.bind_contextvars()`.

structlog keeps each bound key in a context variable of its own, created on first use and
listed in `structlog.contextvars._CONTEXT_VARS`. Once any exists, each capture keeps a snapshot
of the writing thread's context (`copy_context()`: constant time, it shares the data); the
keys are read from the snapshot on the sender thread. A key unbound or cleared holds `...`.
"""

from __future__ import annotations

from contextvars import copy_context

from vlhook import _context, _diag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import Context, ContextVar
    from types import ModuleType
    from typing import Any, Callable, Optional

    from vlhook._activation import Active


def install(module: ModuleType, active: Active) -> None:
    """Called when structlog.contextvars is imported."""
    variables = getattr(module, "_CONTEXT_VARS", None)
    prefix = getattr(module, "STRUCTLOG_KEY_PREFIX", None)
    if not isinstance(variables, dict) or not isinstance(prefix, str):
        _diag.debug("structlog.contextvars has an unknown shape: its context is not added")
        return
    read, expand = snapshot_reader(variables), fields_of(variables, prefix)
    _context.add_reader(_context.STRUCTLOG, read, expand)


def snapshot_reader(variables: dict[str, ContextVar[Any]]) -> Callable[[], Optional[Context]]:
    def snapshot() -> Optional[Context]:
        return copy_context() if variables else None

    return snapshot


def fields_of(
    variables: dict[str, ContextVar[Any]], prefix: str
) -> Callable[[Context], dict[str, Any]]:
    def fields(snapshot: Context) -> dict[str, Any]:
        found = {}
        # A copy: the program may bind a new key (a new variable) meanwhile.
        for name, variable in list(variables.items()):
            value = snapshot.get(variable, ...)
            if value is not ...:
                found[name[len(prefix) :]] = value
        return found

    return fields
