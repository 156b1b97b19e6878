"""vlhook: any Python program's stdout, stderr and logging, in VictoriaLogs, with no code change.

Activation happens at interpreter start (the drop-in `sitecustomize`, the installed `vlhook.pth`,
or `vlhook run`) when VICTORIALOGS_URL is set. This module stays import-light: the functions
below load the pipeline only when called.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

__version__ = "0.1.0"
__all__ = ["activate", "bind", "flush", "stats", "unbind"]


def activate() -> bool:
    """Activate from code (when neither the drop-in nor the .pth did). True when active."""
    from vlhook._activation import activate as _activate

    return _activate("api")


def flush(timeout: Optional[float] = None) -> bool:
    """Deliver everything written so far; True when it all left the process within `timeout`
    seconds (default VICTORIALOGS_EXIT_TIMEOUT_MS). True when inactive."""
    from vlhook._activation import current

    active = current()
    return True if active is None else active.sender.flush(timeout)


def stats() -> dict[str, Any]:
    """Counters: entries captured, shipped, dropped by reason, spooled, retries, bytes."""
    from vlhook._activation import current

    active = current()
    if active is None:  # the same keys, all nothing: code that reads them needs no test first
        from vlhook._stats import Stats

        return {"active": False, **Stats().as_dict(), "buffered_bytes": 0}
    return {"active": True, **active.stats.as_dict(), "buffered_bytes": active.sender.buffer.used}


def bind(**fields: Any) -> None:
    """Add fields to every entry written from the current thread or task from now on."""
    from vlhook._context import bind as _bind

    _bind(**fields)


def unbind(*names: str) -> None:
    from vlhook._context import unbind as _unbind

    _unbind(*names)
