"""structlog: entries carry the context bound with `structlog.contextvars.bind_contextvars()`.

structlog keeps each bound key in a context variable of its own, created on first use and
listed in `structlog.contextvars._CONTEXT_VARS`. Once any exists, each capture keeps a snapshot
of the writing thread's context (`copy_context()`: constant time, it shares the data); the
keys are read from the snapshot on the sender thread. A key unbound or cleared holds `...`.
Snapshots are told apart on the sender by the values they hold for structlog's keys (see
snapshot_key), so the lines of one request share their fields' JSON as with `vlhook.bind()`.
"""

from __future__ import annotations

from contextvars import copy_context
from itertools import repeat

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
    _context.add_reader(_context.STRUCTLOG, read, expand, snapshot_key(variables))


def snapshot_reader(variables: dict[str, ContextVar[Any]]) -> Callable[[], Optional[Context]]:
    def snapshot() -> Optional[Context]:
        return copy_context() if variables else None

    return snapshot


#: What a snapshot holds for a key bound only after it was taken: no value of the program's.
MISSING = object()


def snapshot_key(variables: dict[str, ContextVar[Any]]) -> Callable[[Context], Any]:
    def key(snapshot: Context) -> Any:
        # structlog's variables (a dict that only grows, a variable per key) and the identities
        # of the values the snapshot holds for them: while two snapshots are alive, equal keys
        # mean the same objects under the same names, so the same fields (see _context).
        held = tuple(variables.values())
        return held, tuple(map(id, map(snapshot.get, held, repeat(MISSING))))

    return key


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
