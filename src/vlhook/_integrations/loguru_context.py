"""loguru: entries carry the context bound with `logger.contextualize(...)`.

loguru keeps that context in one context variable (`loguru._logger.context`) holding a dict
that it replaces, never changes: each capture keeps a reference to the current one.
"""

from __future__ import annotations

from contextvars import ContextVar

from vlhook import _context, _diag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

    from vlhook._activation import Active


def install(module: ModuleType, active: Active) -> None:
    """Called when loguru._logger is imported."""
    variable = getattr(module, "context", None)
    if not isinstance(variable, ContextVar):
        _diag.debug("loguru has an unknown shape: its contextualize() context is not added")
        return
    _context.add_reader(_context.LOGURU, variable.get)
