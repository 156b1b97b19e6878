"""The sender: one daemon thread that turns captures into entries and delivers them in batches.

Writers only append to the buffer. The thread starts on the first capture (a process that
writes nothing never starts it), wakes every flush interval or when a batch's worth is waiting,
and restarts fresh in a forked child. `flush(timeout)` puts a marker in the buffer and waits
until everything before it is delivered, spooled, or counted as dropped.
"""

from __future__ import annotations

import _thread
import sys
import time

from vlhook import _diag, _kinds
from vlhook._buffer import Buffer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from vlhook._config import Config
    from vlhook._delivery import Delivery
    from vlhook._entry import EntryBuilder
    from vlhook._lines import Line, LineAssembler
    from vlhook._stats import Stats


#: Complete lines made into entries together: the entry builder's searches run once per group.
LINES_PER_STEP = 256


class Wakeup:
    """A flag one thread waits on, built on a bare lock: `threading` costs ~5 ms to import and
    this module is loaded at start-up. Held = not set; `wait` re-arms it."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass  # already set

    def wait(self, timeout: Optional[float]) -> bool:
        return self._lock.acquire(True, -1 if timeout is None else max(timeout, 0.0))


class FlushMarker:
    __slots__ = ("deadline", "done", "final", "ok")

    def __init__(self, deadline: float, final: bool) -> None:
        self.deadline = deadline
        self.final = final
        self.done = Wakeup()
        self.ok = False


class Sender:
    def __init__(self, config: Config, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.interval = config.flush_interval_ms / 1000
        self.buffer = Buffer(
            stats,
            config.buffer_bytes,
            config.on_full,
            config.timeout_ms / 1000,
            wake=self.wake,
            wake_every=config.batch_lines,
        )
        self._lock = _thread.allocate_lock()
        # Held while the thread imports the pipeline: a fork waits for it, else the child
        # would inherit half-initialised modules (see before_fork).
        self._setup_lock = _thread.allocate_lock()
        self._fork_held = False
        self._event = Wakeup()
        self._thread: Optional[int] = None  # ident of the sender thread once started
        threading = sys.modules.get("threading")  # before it, only the main thread runs Python
        self._main_ident = threading.main_thread().ident if threading else _thread.get_ident()
        #: Called on the flushing thread first (the capture stage hands over what it holds).
        self.before_flush: Optional[Callable[[], None]] = None
        self.busy = False  # inside a cycle (touching the batch, the assembler, the network)
        self.stopping = False  # the exiting thread is salvaging: take nothing more
        self.exiting = False  # the process is ending: its last flushes are under way
        self.buffer.on_first_put = self._start
        self._reset_state()

    def _reset_state(self) -> None:
        self.assembler: Optional[LineAssembler] = None
        self.builder: Optional[EntryBuilder] = None
        self.delivery: Optional[Delivery] = None
        self._reported_drops = 0

    # -- called from the program's threads ---------------------------------------------------

    def put(self, item: tuple[Any, ...], level: int = 20) -> None:
        """Hand a capture over (the thread starts with the first one). Writers that put on
        every line take `self.buffer.put` itself, which does the same."""
        self.buffer.put(item, level)

    def wake(self) -> None:
        self._event.set()

    def flush(self, timeout: Optional[float] = None, final: bool = True) -> bool:
        """Deliver everything captured so far; True when it all left the process in time."""
        if self.before_flush is not None:
            self.before_flush()
        if self._thread is None:
            return True
        if _thread.get_ident() == self._thread:
            return False  # a flush from inside the sender cannot wait for itself
        timeout = self.config.exit_timeout_ms / 1000 if timeout is None else timeout
        marker = FlushMarker(time.monotonic() + timeout, final)
        if self.delivery is not None:
            self.delivery.hurry(marker.deadline)
        self.buffer.put_control((_kinds.FLUSH, marker))
        return marker.done.wait(timeout) and marker.ok

    @property
    def thread_started(self) -> bool:
        return self._thread is not None

    def before_fork(self) -> None:
        self._fork_held = self._setup_lock.acquire(True, 2.0)

    def after_fork_in_parent(self) -> None:
        if self._fork_held:
            self._fork_held = False
            self._setup_lock.release()

    def after_fork(self) -> None:
        """In a forked child: the parent owns what was queued; start from nothing."""
        self._fork_held = False
        self._main_ident = _thread.get_ident()  # the forking thread is the child's only one
        self._setup_lock = _thread.allocate_lock()
        self._lock = _thread.allocate_lock()
        self._event = Wakeup()
        self._thread = None
        self.buffer.reset()
        self.buffer.on_first_put = self._start
        self._reset_state()

    def salvage(self, deadline: float) -> tuple[int, int]:
        """At exit, past the flush's share of the budget: stop the sender, then on this thread
        turn what it had not sent (its batch, its unfinished lines, the buffer) into entries and
        spool them. Returns (entries spooled, lines lost: no spool, or no time left)."""
        self.stopping = True
        delivery, builder, assembler = self.delivery, self.builder, self.assembler
        if delivery is None or builder is None or assembler is None:
            return 0, self._count_lost()
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.002)
        body, count = bytearray(), 0
        if self.busy:  # stuck in a request: its batch may or may not arrive
            self.stats.in_flight_at_exit += delivery.in_flight_lines
            assembler = type(assembler)()
        else:
            body, count = delivery.batch, delivery.pending_lines
            delivery.batch, delivery.pending_lines = bytearray(), 0
        lines: list[Line] = []
        while time.monotonic() < deadline:
            try:
                item = self.buffer.pop()
            except IndexError:
                break
            entries: list[Any] = []
            if item[0] in _kinds.TEXT:
                assembler.feed(item, lines)
            elif item[0] == _kinds.DISCARD:
                assembler.discard(item[4], item[3])
            else:
                entries = builder.from_item(item)
            if not self.buffer.items:
                assembler.flush(lines, final=True)
            if lines:
                entries.extend(builder.from_lines(lines))
                lines.clear()
            delivery.append(entries, body)
            count += len(entries)
        # Straight to the spool: not replayed by this exiting process, but by the next one.
        spool = delivery.spool
        kept = count if count and spool is not None and spool.put(bytes(body), count) else 0
        if count > kept:
            self.stats.drop("exit_timeout", count - kept)
        return kept, self._count_lost() + (count - kept)

    def _count_lost(self) -> int:
        """Count (as dropped at exit) what is left in the buffer, in lines: every line end, plus
        a line left unfinished by a thread's last write; returns the lines counted."""
        lost = 0
        unfinished: dict[tuple[int, int], bool] = {}
        while True:
            try:
                item = self.buffer.pop()
            except IndexError:
                break
            data = item[1]
            if item[0] in _kinds.TEXT:
                newline = "\n" if isinstance(data, str) else b"\n"
                lost += data.count(newline)
                unfinished[(item[0], item[3])] = not data.endswith(newline)
            elif item[0] == _kinds.DISCARD:  # that line's end was shed, and counted then
                unfinished[(item[4], item[3])] = False
            elif item[0] in (_kinds.LOGGING, _kinds.EXCEPTION):
                lost += 1
        lost += sum(unfinished.values())
        if lost:
            self.stats.drop("exit_timeout", lost)
        return lost

    def _start(self) -> None:
        # A bare thread, like a daemon one: never joined at exit, invisible to
        # threading.enumerate(); the exit flush is what waits for it, with a deadline.
        self._threading_first_here()
        with self._lock:
            if self._thread is None:
                self._thread = -1
                self.buffer.on_first_put = None
                _thread.start_new_thread(self._run, ())

    def _threading_first_here(self) -> None:
        """Before Python 3.13, `threading` takes the thread that first imports it for the main
        thread, and at exit waits for that thread to end. The sender's own imports can pull it
        in (orjson builds for 3.9 import uuid -> platform -> subprocess -> threading): the
        process would then hang at exit, waiting for the sender. So when the first capture is
        made on the main thread, that thread imports it first (~5 ms, once). A program whose
        first output comes from a bare `_thread` thread before it imports threading is not
        covered."""
        if (sys.version_info < (3, 13) and "threading" not in sys.modules
                and _thread.get_ident() == self._main_ident):  # fmt: skip
            import threading  # noqa: F401

    # -- the sender thread --------------------------------------------------------------------

    def _run(self) -> None:
        self._thread = _thread.get_ident()
        try:
            with self._setup_lock:
                self._setup()
        except Exception as exc:
            _diag.internal_error("sender start", exc)
            return
        assert self.delivery is not None
        self._guarded(self.delivery.replay_spool)
        while True:
            self._event.wait(self.interval)
            self._guarded(self._cycle)

    def _setup(self) -> None:
        # The pipeline's heavier modules load here, off the program's threads.
        from vlhook._delivery import Delivery
        from vlhook._entry import EntryBuilder
        from vlhook._lines import LineAssembler

        self.assembler = LineAssembler()
        self.builder = EntryBuilder(self.config, self.stats)
        self.delivery = Delivery(self.config, self.stats)
        self.delivery.is_exiting = lambda: self.exiting

    def _guarded(self, step: Any) -> None:
        try:
            step()
        except Exception as exc:
            _diag.internal_error("sender", exc)

    def _cycle(self) -> None:
        self.busy = True
        try:
            self._cycle_body()
        finally:
            self.busy = False

    def _cycle_body(self) -> None:
        assert self.delivery is not None and self.assembler is not None
        lines: list[Line] = []
        pop, feed, text_kinds = self.buffer.pop, self.assembler.feed, _kinds.TEXT
        while not self.stopping:
            try:
                item = pop()
            except IndexError:
                break
            kind = item[0]
            if kind in text_kinds:
                feed(item, lines)
                if len(lines) >= LINES_PER_STEP:
                    self._add_lines(lines)
            elif kind == _kinds.FLUSH:
                self._flush_marker(item, lines)
            elif kind == _kinds.DISCARD:
                self.assembler.discard(item[4], item[3])
            else:
                self._add_lines(lines)  # the lines before it go first: order is kept
                self._add_item(item)
        if self.stopping:
            self._add_lines(lines)  # into the batch, which the exiting thread salvages
            return
        self.assembler.flush(lines, final=False, now_ns=time.time_ns())
        self._add_lines(lines)
        self._report_drops()
        self.delivery.send_batch(deadline=None)

    def _flush_marker(self, item: tuple[Any, ...], lines: list[Line]) -> None:
        assert self.delivery is not None and self.assembler is not None
        marker: FlushMarker = item[1]
        if marker.final:
            lost = self.buffer.unfinished_cut_lines()
            if lost:
                self.stats.drop("buffer_full", lost)
        self.assembler.flush(lines, final=marker.final)
        self._add_lines(lines)
        self._report_drops()
        marker.ok = self.delivery.send_batch(deadline=marker.deadline)
        self.delivery.hurry(None)
        marker.done.set()

    def _add_lines(self, lines: list[Line]) -> None:
        assert self.builder is not None and self.delivery is not None
        if lines:
            self.delivery.add(self.builder.from_lines(lines))
            lines.clear()

    def _add_item(self, item: tuple[Any, ...]) -> None:
        assert self.builder is not None and self.delivery is not None
        self.delivery.add(self.builder.from_item(item))

    def _report_drops(self) -> None:
        """Data shed anywhere is itself shipped as an entry, and told on stderr."""
        total = sum(self.stats.dropped.values())
        if total <= self._reported_drops:
            return
        assert self.delivery is not None
        from vlhook._entry import rfc3339

        new = total - self._reported_drops
        self._reported_drops = total
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.stats.dropped.items()))
        text = f"{new} entries dropped ({reasons} since start)"
        _diag.warn(text, key="dropped")
        entry = {"_time": rfc3339(time.time_ns()), "_msg": f"vlhook: {text}",
                        "level": "WARNING", "stream": "vlhook", "vlhook.dropped": new}  # fmt: skip
        self.delivery.add([entry], count=False)
