"""The bounded buffer between the program's threads and the sender.

Writers append captures (a few words each: no parsing, no encoding); the sender pops them.
Memory is accounted in approximate bytes. When the buffer is full, `drop` sheds what arrives
unless it is a warning or worse, which may use a 25% reserve; `block` makes the writer wait
for room (woken by the sender, bounded by the request timeout). A line is kept or shed whole,
every shed line is counted, and the count is shipped.
"""

from __future__ import annotations

# The C type itself: `collections` costs ~2 ms at start-up.
from _collections import deque  # type: ignore[import-not-found]
from itertools import repeat
from time import monotonic, sleep

from vlhook._captures import TEXT_DATA, Discard, Record, Text, all_text, discard
from vlhook._captures import text as make_text
from vlhook._sync import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from vlhook._stats import Stats

#: Bytes a capture holds beyond its text's length: its tuple, its time and thread ints, the
#: str header, the queue's slot (measured with tracemalloc: 213 B, whatever the length). So
#: VICTORIALOGS_BUFFER_BYTES bounds the memory held, not only the characters.
ITEM_OVERHEAD = 224
#: A logging record's capture: its two tuples (what the sender reads of the record, and the
#: capture), the record's arguments and the list of what its handlers printed: with a short
#: message and its printed line, 607-623 B in all on Python 3.9-3.13 (tracemalloc,
#: test_buffer_memory.py); 1,100 B when the capture held the LogRecord itself. Its message is
#: counted twice more: in the capture, and in the line a handler printed.
RECORD_OVERHEAD = 640
OTHER_SIZE = 512  # an uncaught exception, another library's record, a control
RESERVE = 1.25  # warnings and errors may use this much of the limit before being shed
#: With `block`, writers waiting for room go on once the buffer has drained to this share of
#: its limit, not as soon as anything was popped: every hand-over wakes two threads, and
#: letting the writer go on for a line or two at a time made them hand over ~13,000 times
#: for 200,000 lines (measured: 0.8 µs of the writer's CPU a line, and a sender step each).
RESUME_AT = 0.875
#: Once captures hold this share of the limit, every LET_IN_EVERY captures (kept or shed) the
#: writer lets the interpreter lock go for LET_IN_S (see _share). A sixteenth, not a quarter:
#: figure 4's burst then adds ~13 MiB to the program's peak RSS, not ~21, at the same lines/s
#: (measured, interleaved); a burst's loop runs longer past ~6,500 lines, the whole program
#: no longer (its lines are sent meanwhile, not after it).
LET_IN_SHARE = 1 / 16
LET_IN_EVERY = 500
LET_IN_S = 0.001
#: ... or sooner when captures come slowly enough that LET_IN_EVERY of them keep the writer
#: busy for long: once LET_IN_PERIOD_S has passed since the capture that began the count,
#: looked at every LET_IN_CHECK captures (a clock read each time). A logging call costs the
#: writer ~10x a print(): counted alone, a tight loop of 200,000 logger.info() calls shed
#: 9-18 % of its records, and the sender's backlog added 38 MiB to the program's peak RSS;
#: now none, and 7 MiB. A print() burst paced this way holds less too: +8 against +29 MiB
#: (+18 with a 2 ms period), in the same total time (measured, interleaved, on 2 cores).
LET_IN_PERIOD_S = 0.001
LET_IN_CHECK = 50
WARNING = 30


def item_size(item: Any) -> int:
    cls = item.__class__
    if cls is Text:
        return len(item.data) + ITEM_OVERHEAD
    if cls is Record:
        return RECORD_OVERHEAD + 2 * len(item.message)
    return OTHER_SIZE


def lines_in(items: list[Any]) -> int:
    """How many entries these captures would have made (counted when they cannot be kept):
    every line end, a line left unfinished by a thread's last write, one per record."""
    return sum(map(LineCount().add, items))


class LineCount:
    """lines_in, for captures counted as they come: a line left unfinished is counted once,
    when it begins (and not again when its end comes)."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: set[tuple[int, int]] = set()  # (kind, thread): an unfinished line counted

    def add(self, item: Any) -> int:
        cls = item.__class__
        if cls is Discard:  # that line's end was shed, and counted then: not by us
            key = (item.kind, item.thread)
            if key in self._open:
                self._open.discard(key)
                return -1
            return 0
        if cls is not Text:
            return 1 if hasattr(item, "t_ns") else 0  # a record or an uncaught exception
        data = item.data
        newline = "\n" if isinstance(data, str) else b"\n"
        key = (item.kind, item.thread)
        count: int = data.count(newline)
        if count and key in self._open:  # its first newline ends a line counted already
            count -= 1
            self._open.discard(key)
        if data and not data.endswith(newline) and key not in self._open:
            self._open.add(key)
            count += 1
        return count


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
        self.items: deque[Any] = deque()
        self.stats = stats
        self.limit = limit_bytes
        self.block = on_full == "block"
        self.block_timeout_s = block_timeout_s
        self.wake = wake
        self.wake_every = max(1, wake_every)
        # Bytes appended / popped. Writers and the sender each write their own; a race between
        # two writers can only make the accounting drift slightly, never lose data.
        self.added = 0
        self.removed = 0
        # Text streams whose current line lost a piece to shedding: (kind, thread) -> True while
        # the rest of that line must be shed too, so a line is kept or lost whole.
        self.cut: dict[tuple[int, int], bool] = {}
        self._room_waiters: list[Any] = []  # locks of writers blocked for room
        self._room_wanted = 0  # the largest write among them
        self._room_lock = allocate_lock()
        self.let_in_at = int(limit_bytes * LET_IN_SHARE)
        self._behind = 0  # captures put past let_in_at since the writer last let go (_share)
        self._let_in_due = 0.0  # monotonic time: a let-in is due by then (_share)
        #: Sees every capture first while set; returns True when it took the capture itself
        #: (the sender starts its thread this way on the first capture, and takes late writes
        #: after the exit flush straight to the spool) — one test on the fast path.
        self.intercept: Optional[Callable[[Any, int], bool]] = None

    @property
    def used(self) -> int:
        return self.added - self.removed

    def put(self, item: Any, level: int = 20) -> None:
        if self.intercept is not None and self.intercept(item, level):
            return
        if self.cut and item.__class__ is Text:
            item = self._after_cut(item)
            if not item.data:
                return
        # item_size, inlined for text: this runs on the program's thread for every line.
        size = len(item.data) + ITEM_OVERHEAD if item.__class__ is Text else item_size(item)
        if self.added - self.removed + size > self.limit:
            if size > self.limit and self.block and item.__class__ is Text:
                self._put_pieces(item, level)
                return
            if not self._make_room(item, size, level):
                self._share()  # shed and counted: the sender is what empties the buffer
                return
        self.added += size
        items = self.items
        items.append(item)
        try:
            if len(items) == self.wake_every:  # a batch's worth is waiting: the sender takes it
                self.wake()
            if self.added - self.removed > self.let_in_at:  # a burst outgrows it
                self._share()
        except RecursionError:
            # Kept: a writer at its recursion limit would defer it and keep it again (see
            # _capture_streams._deferred). The sender wakes at its interval all the same.
            pass

    def _share(self) -> None:
        """Past LET_IN_SHARE of the limit, every LET_IN_EVERY captures or LET_IN_PERIOD_S of
        them, whichever comes first: the sender is behind, and most likely not even running.
        The writer lets the interpreter lock go for a moment, so that the sender (or a
        delivery thread) waiting for it can take it.

        CPython hands the lock back to a thread that lets it go for a moment, again and again:
        a program printing in a loop does so at every write(2) of its stream's buffer and
        retakes the lock before the woken sender runs, and the waiting thread's request for
        the lock is made only when no thread took it for a whole switch interval, which then
        never happens. Measured: a program printing 200,000 lines kept the sender from
        running until the loop ended or the buffer was full; with the default `drop`, half
        the lines were shed. Costs the writer LET_IN_S per LET_IN_EVERY captures or per
        LET_IN_PERIOD_S of them (at most one per LET_IN_CHECK captures, however slowly they
        come), and only while they pile up; a shorter sleep let too few in (measured).
        Called after the capture is kept (or counted as shed): an exception out of the sleep
        (Ctrl-C) is the program's, and takes no line with it."""
        self._behind += 1
        behind = self._behind
        if behind == 1:
            self._let_in_due = monotonic() + LET_IN_PERIOD_S
        elif behind >= LET_IN_EVERY or (
            behind % LET_IN_CHECK == 0 and monotonic() >= self._let_in_due
        ):
            self._behind = 0
            self.wake()
            sleep(LET_IN_S)

    def _put_pieces(self, item: Text, level: int) -> None:
        """A write larger than the whole buffer, under `block`: as one capture it could never
        fit, however long the writer waited, so it goes in as pieces of a quarter of the
        buffer, each waiting for room as any write does. The sender joins them into the line
        they make, split into entries as any long line."""
        data, step = item.data, max(1, self.limit // 4 - ITEM_OVERHEAD)
        for start in range(0, len(data), step):
            self.put(make_text(item.kind, data[start : start + step], item.t_ns, item.thread,
                               item.context), level)  # fmt: skip

    def put_control(self, item: Any) -> None:
        """Flush and exit requests: never shed, ordered after every capture made before."""
        self.added += OTHER_SIZE
        self.items.append(item)
        self.wake()

    def pop(self) -> Any:
        """Next item (IndexError when empty). Sender thread only."""
        item = self.items.popleft()
        self.removed += len(item.data) + ITEM_OVERHEAD if item.__class__ is Text else \
            item_size(item)  # fmt: skip
        return item

    def pop_many(self, limit: int) -> list[Any]:
        """Up to `limit` items, oldest first. Sender thread only (so the length only grows
        while it counts)."""
        items = self.items
        out = list(map(deque.popleft, repeat(items, min(limit, len(items)))))
        # Told with C calls when they are all text, as a burst's are (item_size otherwise).
        if all_text(out):
            self.removed += sum(map(len, map(TEXT_DATA, out))) + ITEM_OVERHEAD * len(out)
        else:
            self.removed += sum(map(item_size, out))
        return out

    def take_all(self) -> list[Any]:
        """Everything queued (at exit, when nothing more can be made of it)."""
        out = []
        while True:
            try:
                out.append(self.pop())
            except IndexError:
                return out

    def made_room(self) -> None:
        """The sender popped captures: writers waiting for room go on once the buffer has
        drained to its low-water mark, with room for the largest write among them."""
        if self._room_waiters and self.used <= min(self.limit * RESUME_AT,
                                                   self.limit - self._room_wanted):  # fmt: skip
            with self._room_lock:
                waiters, self._room_waiters = self._room_waiters, []
                self._room_wanted = 0
            for lock in waiters:
                lock.release()

    def _make_room(self, item: Any, size: int, level: int) -> bool:
        # A record larger than the whole buffer (a text that large comes in pieces) waits for
        # the buffer to be empty, then goes in: it could never fit, and its memory is the
        # program's already.
        if self.block and self._wait_for_room(min(size, self.limit)):
            return True
        if not self.block and level >= WARNING and self.used + size <= self.limit * RESERVE:
            return True
        if item.__class__ is Text:
            self._shed_text(item)
        elif item.__class__ is not Discard:
            self.stats.drop("buffer_full", captured=True)
        return False

    def _wait_for_room(self, size: int) -> bool:
        """Block the writer until the sender has popped enough (bounded by the timeout).
        Counted (`room_waits`, `room_wait_ms`): what `block` cost the program."""
        started = monotonic()
        deadline = started + self.block_timeout_s
        try:
            while self.used + size > self.limit:  # again only if another writer took the room
                left = deadline - monotonic()
                if left <= 0:
                    return False
                lock = allocate_lock()
                lock.acquire()
                with self._room_lock:  # not between the sender's taking the list and releasing
                    self._room_wanted = max(self._room_wanted, size)
                    self._room_waiters.append(lock)
                self.wake()
                lock.acquire(True, left)
            return True
        finally:
            self.stats.add("room_waits")
            self.stats.add("room_wait_ms", round((monotonic() - started) * 1000))

    def _shed_text(self, item: Text) -> None:
        """Shed a write: every line it ends is counted as lost; a line it starts or continues
        is lost whole (the sender discards its kept beginning, `_after_cut` its end)."""
        data = item.data
        newline = "\n" if isinstance(data, str) else b"\n"
        key = (item.kind, item.thread)
        if key not in self.cut:
            # Tell the assembler to throw away the beginning of the line it holds.
            self.items.append(discard(item.kind, item.thread))
            self.added += OTHER_SIZE
        self.cut[key] = not data.endswith(newline)  # type: ignore[arg-type]
        lines = data.count(newline)  # type: ignore[arg-type]
        if lines:
            self.stats.drop("buffer_full", lines, captured=True)

    def _after_cut(self, item: Text) -> Text:
        """The first write after shedding: drop the rest of the line that was cut."""
        key = (item.kind, item.thread)
        if key not in self.cut:
            return item
        if not self.cut[key]:
            del self.cut[key]
            return item
        data = item.data
        end = data.find("\n" if isinstance(data, str) else b"\n")  # type: ignore[arg-type]
        if end < 0:
            return make_text(item.kind, data[:0], item.t_ns, item.thread, item.context)
        del self.cut[key]
        self.stats.drop("buffer_full", captured=True)
        return make_text(item.kind, data[end + 1 :], item.t_ns, item.thread, item.context)

    def unfinished_cut_lines(self) -> int:
        """Lines cut by shedding whose end never came (counted at exit)."""
        lost = sum(1 for midline in self.cut.values() if midline)
        self.cut.clear()
        return lost

    def reset(self) -> None:
        """After fork: the parent owns what was queued."""
        self.items = deque()
        self.added = self.removed = 0
        self.cut = {}
        self._room_waiters = []
        self._room_wanted = 0
        self._room_lock = allocate_lock()
