"""vlhook's own frames, taken out of the tracebacks a program shows.

A write through the stream tee that fails (stdout is a closed pipe: `... | head -1`) raises
inside the tee's `write`, so its traceback would show one frame more than without vlhook. A
Python function cannot call another without being a frame of its traceback, so the frame is
taken out where tracebacks are shown: Python's excepthooks, logging's and loguru's error
reports. Nothing is done on the write path; only an exception about to be shown is walked.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Optional

#: The modules whose functions run inside the program's own calls: the stream tee, the logging
#: wrapper, the import hook, and loguru's `add` and its sinks' `emit` once a sink is queued.
#: (Frames of the command line and the sender are not hidden: a traceback there is vlhook's
#: own, to be read as it is.)
WRAPPERS = frozenset({"vlhook._capture_streams", "vlhook._capture_logging", "vlhook._imports",
                      "vlhook._integrations.loguru"})  # fmt: skip
MAX_EXCEPTIONS = 100  # a chain or group walked at most this far


def _ours(tb: TracebackType) -> bool:
    return tb.tb_frame.f_globals.get("__name__") in WRAPPERS


def without_ours(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """The traceback without vlhook's frames (unlinked in place); its new head."""
    while tb is not None and _ours(tb):
        tb = tb.tb_next
    node = tb
    while node is not None:
        after = node.tb_next
        if after is not None and _ours(after):
            while after is not None and _ours(after):
                after = after.tb_next
            node.tb_next = after
        node = after
    return tb


def hide(exc: Optional[BaseException]) -> None:
    """Take vlhook's frames out of an exception's traceback, its causes, contexts and, for an
    exception group, its members."""
    pending = [exc]
    seen: set[int] = set()
    while pending and len(seen) < MAX_EXCEPTIONS:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        head = without_ours(tb)
        if head is not tb:
            current.__traceback__ = head
        pending += [current.__cause__, current.__context__]
        members = getattr(current, "exceptions", None)  # an exception group's
        if isinstance(members, tuple):
            pending += [m for m in members if isinstance(m, BaseException)]
