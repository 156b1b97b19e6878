"""The bounded buffer between the program's threads and the sender.

Writers append raw captures (a few words each: no parsing, no encoding); the sender pops them.
Memory is accounted in approximate bytes. When the buffer is full, `drop` sheds what arrives
unless it is a warning or worse, which may use a 25% reserve; `block` makes the writer wait,
bounded by the request timeout. Every shed capture is counted, and the count is shipped.
"""

from __future__ import annotations

import time

# The C type itself: `collections` costs ~2 ms at start-up.
from _collections import deque  # type: ignore[import-not-found]

from vlhook._kinds import DISCARD, FLUSH, TEXT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from vlhook._stats import Stats

ITEM_OVERHEAD = 128  # tuple, ints and references held per capture
RESERVE = 1.25  # warnings and errors may use this much of the limit before being shed
WARNING = 30


def item_size(item: tuple[Any, ...]) -> int:
    data = item[1]
    if isinstance(data, (str, bytes)):
        return len(data) + ITEM_OVERHEAD
    return 4 * ITEM_OVERHEAD  # a logging record, its message stored alongside


class Buffer:
    def __init__(
        self,
        stats: Stats,
        limit_bytes: int,
        on_full: str,
        block_timeout_s: float,
        wake: Callable[[], None],
        wake_every: int,
    ) -> None:
        self.items: deque[tuple[Any, ...]] = deque()
        self.stats = stats
        self.limit = limit_bytes
        self.block = on_full == "block"
        self.block_timeout_s = block_timeout_s
        self.wake = wake
        self.wake_every = max(1, wake_every)
        # Written by writers only / by the sender only: no shared read-modify-write.
        self.added = 0
        self.removed = 0
        self._since_wake = 0
        # Text streams whose current line lost a piece to shedding: (kind, thread) -> True while
        # the rest of that line must be shed too, so a line is kept or lost whole.
        self.cut: dict[tuple[int, int], bool] = {}
        #: Called before the next put, then cleared by whoever set it (the sender starts its
        #: thread this way on the first capture, without a call of its own on every put).
        self.on_first_put: Optional[Callable[[], None]] = None

    @property
    def used(self) -> int:
        return self.added - self.removed

    def put(self, item: tuple[Any, ...], level: int = 20) -> None:
        if self.on_first_put is not None:
            self.on_first_put()
        if self.cut and item[0] in TEXT:
            item = self._after_cut(item)
            if not item[1]:
                return
        data = item[1]
        # item_size, inlined for text: this runs on the program's thread for every line.
        size = len(data) + ITEM_OVERHEAD if data.__class__ is str else item_size(item)
        if self.added - self.removed + size > self.limit and not self._make_room(item, size, level):
            return
        self.added += size
        self.items.append(item)
        self._since_wake += 1
        if self._since_wake >= self.wake_every:
            self._since_wake = 0
            self.wake()

    def put_control(self, item: tuple[Any, ...]) -> None:
        """Flush markers and the like: never shed, never counted as data."""
        self.items.append(item)
        self.wake()

    def pop(self) -> tuple[Any, ...]:
        """Next item (IndexError when empty). Sender thread only."""
        item: tuple[Any, ...] = self.items.popleft()
        data = item[1]
        if data.__class__ is str:
            self.removed += len(data) + ITEM_OVERHEAD  # item_size, inlined: once per capture
        elif item[0] != FLUSH:
            self.removed += item_size(item)
        return item

    def _make_room(self, item: tuple[Any, ...], size: int, level: int) -> bool:
        if self.block:
            self.wake()
            deadline = time.monotonic() + self.block_timeout_s
            while time.monotonic() < deadline:
                time.sleep(0.001)
                if self.added - self.removed + size <= self.limit:
                    return True
        elif level >= WARNING and self.added - self.removed + size <= self.limit * RESERVE:
            return True
        if item[0] in TEXT:
            self._shed_text(item)
        else:
            self.stats.drop("buffer_full")
        return False

    def _shed_text(self, item: tuple[Any, ...]) -> None:
        """Shed a write: every line it ends is counted as lost; a line it starts or continues
        is lost whole (the sender discards its kept beginning, `_after_cut` its end)."""
        kind, data, _, ident = item[:4]
        newline = "\n" if isinstance(data, str) else b"\n"
        key = (kind, ident)
        if key not in self.cut:
            # Tell the assembler to throw away the beginning of the line it holds.
            discard = (DISCARD, None, 0, ident, kind)
            self.added += item_size(discard)
            self.items.append(discard)
        self.cut[key] = not data.endswith(newline)
        lines = data.count(newline)
        if lines:
            self.stats.drop("buffer_full", lines)

    def _after_cut(self, item: tuple[Any, ...]) -> tuple[Any, ...]:
        """The first write after shedding: drop the rest of the line that was cut."""
        key = (item[0], item[3])
        if key not in self.cut:
            return item
        if not self.cut[key]:
            del self.cut[key]
            return item
        data = item[1]
        end = data.find("\n" if isinstance(data, str) else b"\n")
        if end < 0:
            return (*item[:1], data[:0], *item[2:])  # still inside the lost line
        del self.cut[key]
        self.stats.drop("buffer_full")
        return (item[0], data[end + 1 :], *item[2:])

    def unfinished_cut_lines(self) -> int:
        """Lines cut by shedding whose end never came (counted at exit)."""
        lost = sum(1 for midline in self.cut.values() if midline)
        self.cut.clear()
        return lost

    def reset(self) -> None:
        """After fork: the parent owns what was queued."""
        self.items = deque()
        self.added = self.removed = self._since_wake = 0
        self.cut = {}
