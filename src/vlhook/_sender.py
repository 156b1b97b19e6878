"""The sender: one thread that turns captures into batches and hands them to delivery workers,
and the one owner of the process's last moments.

Writers only append to the buffer. The thread starts with the first capture (a process that
writes nothing never starts it) and loads its pipeline when there is work for it; it sleeps on
one event, woken by a batch's worth of captures, a flush or exit request, a finished delivery,
or the flush interval. It never waits on the network (the workers do), so whatever a server
does, it stays free to batch, flush and spool.

`flush(timeout)` and `shutdown(deadline) -> ExitReport` are requests queued behind the
captures made before them; the thread answers them in order (see _exit.py for the exit).
"""

from __future__ import annotations

import os
import stat  # loaded by os already
import sys

# The C type itself: `collections` costs ~2 ms at start-up.
from _collections import deque  # type: ignore[import-not-found]
from _thread import _count as _other_threads  # built in: threads besides the main one
from errno import EBADF  # loaded by os already
from time import monotonic, time_ns

from vlhook import _diag, _imports
from vlhook._buffer import Buffer, LineCount, lines_in
from vlhook._captures import Discard, Event, Record, Text, Uncaught, all_text
from vlhook._stats import ExitReport, explain_drop
from vlhook._sync import (
    LAST_STANDARD_FD,
    FlushRequest,
    RLock,
    ShutdownRequest,
    Wakeup,
    acquire_patiently,
    allocate_lock,
    close_nonblocking,
    get_ident,
    start_thread,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable, Optional, Union

    from vlhook._captures import Line
    from vlhook._config import Config
    from vlhook._delivery.batch import Batch, Batcher
    from vlhook._delivery.client import Outcome
    from vlhook._delivery.encode import Encoder
    from vlhook._delivery.replay import Replayer
    from vlhook._delivery.spool import Spool
    from vlhook._delivery.workers import Worker
    from vlhook._entry import Entry, EntryBuilder
    from vlhook._exit import ExitRun
    from vlhook._lines import LineAssembler
    from vlhook._stats import Stats

#: Complete lines made into entries together: the entry builder's searches run once per group.
#: 1,024 rather than 256: 3-4 % less CPU per line end to end (6.78 against 6.99 µs, 12
#: interleaved rounds of 200,000 lines), the sender holding the interpreter ~2 ms a step.
LINES_PER_STEP = 1024
#: Closed batches waiting for a free worker; past that the sender stops taking captures and the
#: bounded buffer holds them (its policy sheds or blocks).
MAX_READY = 2
EXIT_GRACE_S = 0.25  # past the exit deadline, how long shutdown() still waits for the thread
#: After a Ctrl-C during the exit's wait: the time left to keep what did not leave in the spool.
INTERRUPTED_S = 0.25
#: While the exit waits for the sender thread: how long a thread that holds the interpreter
#: keeps it when another waits (Python's default: 5 ms). The sender waits for a turn after each
#: file write: while three of the program's threads computed, it waited ~15 ms a write and
#: spooled 2,000 of 19,000 lines in 2 s; with 0.5 ms turns and the batches in a few files
#: (KEEP_FILE_BYTES), all of them in 4 runs of 4 (the turns alone: 1 run of 4).
EXIT_SWITCH_S = 0.0005
NOTHING_IN_HAND: tuple[list[Any], int] = ([], 0)
#: How long a thread other than the sender waits for it to let go of `moving` before making
#: the spool itself (see spool).
SPOOL_LOCK_WAIT_S = 0.25
REPORT_EVERY_S = 5.0  # at most one entry reporting drops this often (and one at exit)
#: Batches kept in the spool together go in files of at most this size (what a replay reads at
#: once: replay.PIECE_BYTES).
KEEP_FILE_BYTES = 1 << 20


class Sender:
    def __init__(self, config: Config, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.interval = config.flush_interval_ms / 1000
        self._wake = Wakeup()
        self.buffer = Buffer(stats, config.buffer_bytes, config.on_full, config.timeout_ms / 1000,
                             wake=self._wake.set, wake_every=config.batch_lines)  # fmt: skip
        self._lock = allocate_lock()
        # Held while the thread imports the pipeline: a fork waits for it, else the child
        # would inherit half-initialised modules (see before_fork).
        self._setup_lock = allocate_lock()
        self._fork_held = False
        threading = sys.modules.get("threading")  # before it, only the main thread runs Python
        self._main_ident = threading.main_thread().ident if threading else get_ident()
        #: Called on the flushing thread first (the capture stage hands over what it holds).
        self.before_flush: Optional[Callable[[], None]] = None
        #: Called at each step (the capture stage tees a stream the program put in place).
        self.each_step: Optional[Callable[[], None]] = None
        #: Held from activation or the first delivery on, let go when the exit begins (see
        #: hold_spare_at_start, _hold_spare). Not reset in a forked child: the child holds its
        #: own copy of it.
        self._spare: Optional[Spare] = None
        self._reset()

    def _reset(self) -> None:
        self._thread: Optional[int] = None  # ident of the thread once started
        #: No thread could be started (interpreter shutdown; a container's pids limit, no memory
        #: for a stack): the exit does the sender's work on the exiting thread (see shutdown).
        self._inline = False
        #: Set by fd capture's helper once the program it serves has ended: every flush after
        #: is followed by a report of what became of the lines (as the exit's is), which is
        #: then the one message about them.
        self.report_follows = False
        #: The captures being made into entries, and `captured` when they were taken: see
        #: uncounted_in_hand. Set and cleared under `moving`.
        self.in_hand: tuple[list[Any], int] = NOTHING_IN_HAND
        self._starting = False  # a capture is in _first_put: a second call is its retry
        self._completions: deque[tuple[Worker, Batch, Outcome]] = deque()
        self.ready: deque[Batch] = deque()
        self.flushes: list[FlushRequest] = []
        self.exit: Optional[ExitRun] = None
        self._shutdown: Optional[ShutdownRequest] = None
        self._flush_asked = False  # a thread of the program has waited in flush()
        #: Held while a group of captures is taken off the queue and counted, and while batches
        #: are handed to workers; see halt(). Reentrant: no path of the sender's can hang on it.
        self.moving = RLock()
        self.halted = False
        self._unsettled: set[int] = set()  # seqs of batches closed and not settled
        self.taken_back: set[int] = set()  # batches the exit took back from a worker
        self._replaying = True  # the spool is replayed when the pipeline loads
        self._replay_turn = True
        self._spooled_here = False  # this process spooled: replay once delivery works again
        self.outage = False  # the last batch could not be delivered: see _keep_while_down
        self._reported_drops = 0
        self._told_drops = 0  # dropped entries a message on stderr has told of
        self._next_report = 0.0
        self.last_problem = ""  # why the last batch not delivered was not
        #: Why the pipeline could not load ("": it did, or has not tried yet); see _give_up.
        self.failed = ""
        self._refused = LineCount()  # what was captured since, counted as dropped
        self.assembler: Optional[LineAssembler] = None
        self.builder: Optional[EntryBuilder] = None
        self.encoder: Optional[Encoder] = None
        self.batcher: Optional[Batcher] = None
        self._spool: Optional[Spool] = None
        self._replayer: Optional[Replayer] = None
        self.workers: list[Worker] = []
        self.buffer.intercept = self._first_put

    # -- called from the program's threads ---------------------------------------------------

    def put(self, item: Any, level: int = 20) -> None:
        """Hand a capture over. Writers that put on every line take `buffer.put` itself."""
        self.buffer.put(item, level)

    def wake(self) -> None:
        self._wake.set()

    def wait(self, timeout: float) -> None:
        """Sender thread: sleep until woken (a delivery came back, a capture, a request)."""
        self._wake.wait(timeout)

    @property
    def thread_started(self) -> bool:
        return self._thread is not None

    def flush(self, timeout: Optional[float] = None, disconnect: bool = False,
              python_buffers: bool = True) -> bool:  # fmt: skip
        """Deliver everything captured so far; True when it all was stored in time. With
        `disconnect`, the connections of the delivery workers left idle are closed once it is
        answered (before a Lambda SnapStart snapshot: every environment restored from it
        would send on the same socket). `python_buffers`: what the streams' buffers hold is
        written out first where that is how it is captured (fd capture: see LinkedSender);
        not before an exec, whose new image would never write it out."""
        if self.before_flush is not None:
            self.before_flush()
        if self._thread is None or self._shutdown is not None:
            return self._thread is None and not self.buffer.items
        if get_ident() == self._thread:
            return False  # a flush from inside the sender cannot wait for itself
        timeout = self.config.exit_timeout_ms / 1000 if timeout is None else timeout
        request = FlushRequest(monotonic() + timeout, disconnect)
        self._flush_asked = True
        self.buffer.put_control(request)
        if self.failed:  # checked after queuing: else _give_up, later, answers it
            self._drop_queued()  # and what a writer woken by it queued after it looked
            return False
        return request.done.wait(timeout) and request.ok

    def shutdown(self, deadline: float, python_buffers: bool = True) -> ExitReport:
        """The process is ending: deliver what can be by `deadline` (monotonic), keep the rest
        in the spool, and say exactly what became of everything. Idempotent. `python_buffers`:
        as for flush; False where the process ends without Python's finalization (os._exit, a
        signal's death), which would not write them out either.

        An exit that loads the pipeline (a short script's: nothing was delivered before) does
        so with the collector paused, and leaves it settled (see _imports.CollectorPaused):
        the program's cyclic garbage is then finalized where it would be without vlhook."""
        if self.before_flush is not None:
            self.before_flush()
        loads = self._shutdown is None and self.builder is None and not self._nothing_captured()
        with _imports.CollectorPaused(loads, settle=True):
            return self._shut_down(deadline)

    def _nothing_captured(self) -> bool:
        return self._thread is None and not self._inline and not self.buffer.items

    def _shut_down(self, deadline: float) -> ExitReport:
        """Every call makes sure of each step, not only the first: one may come in the middle
        of another on the same thread (SIGTERM's handler, in the middle of the exit that
        atexit or a pool worker's finalizers began). Such a call found the request made, did
        nothing more, and waited for a sender that nobody had woken yet: it slept its whole
        flush interval, and the exit gave up on it at its deadline, the lines dropped (1 in 10
        to 30 `with Pool()` exits). SIGTERM's handler no longer begins such a call (see
        _lifecycle.on_signal); an exit from another thread may."""
        request = self._shutdown
        if request is None:
            request = self._shutdown = ShutdownRequest(deadline)
        self._let_spare_go()  # after the request: the sender makes no new one from now
        if self._nothing_captured():
            return ExitReport()  # nothing to say
        if self._claim():  # no sender thread runs: the work is done here, now
            self._run_exit_inline(request)
        else:
            self._wake.set()  # not queued: the exit takes everything queued, in order
        if self.failed:  # checked after asking: else _give_up, later, answers the request
            return self._failed_report()
        if get_ident() != self._thread:
            _wait_for_exit(self, request)
        if request.report is not None:
            return request.report
        from vlhook._exit import unanswered_report

        return unanswered_report(self, request)

    # -- fork --------------------------------------------------------------------------------

    def before_fork(self) -> None:
        self._fork_held = self._setup_lock.acquire(True, 2.0)

    def after_fork_in_parent(self) -> None:
        if self._fork_held:
            self._fork_held = False
            self._setup_lock.release()

    def after_fork(self) -> None:
        """In a forked child: the parent owns what was queued; start from nothing."""
        self._fork_held = False
        self._main_ident = get_ident()  # the forking thread is the child's only one
        self._setup_lock = allocate_lock()
        self._lock = allocate_lock()
        self._wake = Wakeup()
        self.stats.after_fork()
        self.buffer.wake = self._wake.set
        self.buffer.reset()
        self._reset()

    # -- starting ----------------------------------------------------------------------------

    def _first_put(self, item: Any, level: int) -> bool:
        """The first capture starts the sender, then goes on into the buffer.

        A signal handler of the program's runs on the thread the signal finds the program on,
        which may be this one, in the middle of the start (the start unblocks signals, and
        Python runs the handlers of those that came meanwhile right there). What it prints
        goes into the buffer (the intercept is undone before the thread is started: it would
        come back here, to a lock held). Should the handler raise (Ctrl-C, or a handler's
        `sys.exit()`), the capture is kept all the same, and the program's exception goes on,
        as it would have from the program's own next line."""
        again = self._starting  # this is the capture's second try, from the queuing below
        self._starting = True
        try:
            self._start()
        except RecursionError:
            # A first capture written at the program's recursion limit: kept by the writer
            # for a capture with room (see _capture_streams._deferred), which starts the
            # sender if this could not. Attribute reads and writes alone: no frame fits here.
            if self._thread is None and not self._inline:
                self.buffer.intercept = self._first_put
            raise
        except BaseException as exc:
            self._queue_after_failed_start(item, level, again)
            if isinstance(exc, ImportError) and sys.is_finalizing():
                return True  # the first capture at teardown: no thread can start, no word
            if shortage(exc):
                # `threading` (3.9, 3.10) could not be imported for want of a descriptor:
                # the capture is kept, and the next one starts the sender.
                return True
            raise
        finally:
            if not again:
                self._starting = False
        return False  # and the capture goes on into the buffer

    def _queue_after_failed_start(self, item: Any, level: int, again: bool) -> None:
        """The start was cut short, perhaps before the thread was started: the capture is
        queued through the start once more (a second thread started that way stands aside, see
        _run). When that fails too, it is queued past the intercept and the next capture tries:
        a start that fails every time (at interpreter teardown no import works) would otherwise
        call itself until the recursion limit."""
        if not again:
            self.buffer.intercept = self._first_put
            self.buffer.put(item, level)
            return
        self.buffer.intercept = None
        try:
            self.buffer.put(item, level)
        finally:
            self.buffer.intercept = self._first_put

    def _start(self) -> None:
        # A bare thread, like a daemon one: never joined at exit, invisible to
        # threading.enumerate(); the exit waits for it with a deadline. The thread also
        # registers itself (_run): an exception out of a signal handler may cut this short
        # between the thread's start and the assignment.
        self._threading_first_here()
        with self._lock:
            self.buffer.intercept = None  # also when a thread registered itself meanwhile
            if self._thread is None and not self._inline:
                try:
                    self._thread = start_thread(self._run)
                except RuntimeError as exc:
                    self._inline = True
                    self.buffer.block = False  # no thread makes room: a writer would wait in vain
                    if not sys.is_finalizing():  # Python 3.12 refuses new threads then: no news
                        _diag.warn(f"the sender thread cannot be started ({exc}): what is "
                                   "captured waits in memory, and is sent at exit")  # fmt: skip

    def _threading_first_here(self) -> None:
        """Before Python 3.13, `threading` takes the thread that first imports it for the main
        thread, and at exit waits for that thread to end. The sender's own imports must not be
        the first: on 3.9 and 3.10 orjson imports it (through uuid -> platform -> subprocess),
        so when the first capture is made on the main thread, that thread imports it first
        (~4 ms, once). On 3.11 and 3.12 none of the sender's imports needs it, and vlhook's
        threads are kept from importing it (an import that tries fails; orjson's would fall
        back to the json module), which spares a process that never imports threading those
        4 ms. On 3.9 and 3.10, a program whose first output comes from a bare `_thread`
        thread before it imports threading is not covered."""
        if sys.version_info >= (3, 13) or "threading" in sys.modules:
            return
        if sys.version_info >= (3, 11):
            _imports.keep_from_own_threads("threading")
        elif get_ident() == self._main_ident:
            import threading  # noqa: F401

    def load_pipeline(self, pause_collector: bool = False) -> None:
        """The pipeline's heavier modules load here, on the sender thread (and in `vlhook
        check`, which says so when they cannot); with the garbage collector paused when a
        thread of the program waits for them (see `_imports.CollectorPaused`)."""
        with _imports.CollectorPaused(pause_collector):
            from vlhook._delivery.batch import Batcher
            from vlhook._delivery.encode import Encoder, constant_fields
            from vlhook._delivery.workers import make_workers
            from vlhook._entry import EntryBuilder
            from vlhook._lines import LineAssembler

        config = self.config
        self.assembler = LineAssembler()
        self.builder = EntryBuilder(config, self.stats)
        self.encoder = Encoder(self.builder.constants(constant_fields(config)), self.stats)
        self.batcher = Batcher(config.batch_lines, config.batch_bytes, self.interval)
        self.workers = make_workers(config, self.stats, self._delivered)
        self._replaying = _may_hold_files(config.spool_dir)

    def _may_pass(self, exc: Exception) -> bool:
        """Whether the pipeline failed to load for a moment (see shortage), and loads at the
        next try. Then what is captured waits in the buffer, under its policy, until a try
        succeeds; a flush asked meanwhile waits out its timeout. The try the exit wakes is
        the last: failing, it gives up, and the exit's report says why."""
        if self._shutdown is not None or not shortage(exc):
            return False
        _diag.debug(f"the sender's modules cannot load now ({exc}): tried again in "
                    f"{self.interval:g} s")  # fmt: skip
        return True

    def _give_up(self, exc: Exception) -> None:
        """The pipeline cannot load (a broken install, a bug): nothing will be sent from this
        process. From now on a capture is only counted as dropped, at once — queued, it would
        make a writer wait for room under `block`, and the exit wait for a thread that is
        gone — and flushes and the exit are answered at once, saying why.

        No lock with the program's threads (one held here could be wanted by a signal
        handler interrupting its holder): each side sets its own attribute, then reads the
        other's, so at least one of them sees both."""
        _diag.internal_error("sender start", exc)
        self.buffer.intercept = self._refuse
        self.failed = f"the sender could not start ({type(exc).__name__}: {exc})"
        self._drop_queued()
        request = self._shutdown
        if request is not None:
            request.report = self._failed_report()
            request.done.set()

    def _refuse(self, item: Any, level: int) -> bool:
        lost = self._refused.add(item)
        if lost:
            self.stats.drop("sender_failed", lost, captured=True)
        return True

    def _drop_queued(self) -> None:
        """Count what is queued as dropped, answer the flushes among it, free the writers
        waiting for room."""
        lost = 0
        for item in self.buffer.take_all():
            if item.__class__ is FlushRequest:
                item.done.set()  # not ok
            else:
                lost += self._refused.add(item)
        if lost:
            self.stats.drop("sender_failed", lost, captured=True)
        self.buffer.made_room()

    def _failed_report(self) -> ExitReport:
        self._drop_queued()  # what writers were queuing meanwhile
        dropped = self.stats.dropped
        report = ExitReport()
        lost = dropped.pop("sender_failed", 0)
        report.dropped = {"sender_failed": lost} if lost else {}
        report.dropped_before = {reason: count for reason, count in dropped.items() if count}
        report.problem = self.failed
        return report

    @property
    def spool(self) -> Spool:
        """The spool, set up when first needed (most processes never need it)."""
        if self._spool is None:
            from vlhook._delivery.spool import Spool

            # An exit given up on makes it too, to seal it (see halt): not after the sender
            # only, for a while. The sender may hold `moving` for good (a program's object
            # whose __str__ never returns): the exit is then not to wait for it.
            held = acquire_patiently(self.moving, SPOOL_LOCK_WAIT_S)
            try:
                if self._spool is None:
                    self._spool = Spool(self.config.spool_dir, self.config.spool_max_bytes,
                                        self.stats)  # fmt: skip
            finally:
                if held:
                    self.moving.release()
        return self._spool

    @property
    def spool_used(self) -> bool:
        return self._spool is not None

    @property
    def replayer(self) -> Replayer:
        if self._replayer is None:
            from vlhook._delivery.replay import Replayer

            assert self.builder is not None
            self._replayer = Replayer(self.spool, self.stats, self.builder)
        return self._replayer

    # -- the sender thread ---------------------------------------------------------------------

    def _claim(self) -> bool:
        """Whether the calling thread is to do the sender's work: no sender thread has
        registered itself. Then it is the sender from now on, and a thread started but not yet
        running (its start cut short by a signal handler's exception, see _first_put) finds the
        work taken when it does run, and ends."""
        with self._lock:
            if self._thread is None:
                self._thread = get_ident()
                return True
            return False

    def _run(self) -> None:
        with self._lock:
            if self._thread not in (None, get_ident()):
                return  # the exit does the work on its own thread (see _claim)
            self._thread = get_ident()
        _imports.own_thread()
        # The pipeline loads when there is work for it — a batch's worth, a flush, the exit, or
        # the flush interval — not with the first capture: a program still starting (a Lambda
        # function's init phase) would share the interpreter lock with these imports.
        while True:
            self._wake.wait(self.interval)
            try:
                with self._setup_lock:
                    # The collector pauses only while a thread of the program waits: a flush
                    # here, the exit in shutdown().
                    self.load_pipeline(self._flush_asked)
                break
            except Exception as exc:
                if not self._may_pass(exc):
                    self._give_up(exc)
                    return
        while True:
            with _diag.guard("sender"):
                self._step()
            self._hold_spare()  # after a step: a flush that waits for it is not kept waiting
            self._wake.wait(self._wait_time())

    def hold_spare_at_start(self) -> None:
        """At activation, before the program's first line: the spare descriptor (see
        _hold_spare) at SPARE_FD, above the numbers the program's files get, so that they
        are the numbers they would be without vlhook. A short script that dies at its limit
        of open files before its first delivery has its lines sent at the exit too. Only
        while no other thread runs: the first descriptor at or past SPARE_FD grows the
        kernel's table of them, ~20 µs in a process of one thread, but with threads the
        thread that grows it waits 4-14 ms (an RCU grace period). Grown now, it is not grown
        again when the spool's files are moved up there (private.HIGH_FD): a short script
        that replays the spool at its exit no longer waits that long on its sender."""
        if self._spare is not None or _other_threads():
            return
        try:
            self._spare = Spare.high(SPARE_FD)
        except OSError:
            pass  # none left: the sender tries after its steps

    def _hold_spare(self) -> None:
        """One descriptor held for the exit. A program that leaks descriptors dies at its
        limit of open files, and its last lines (the traceback that says why) go out at an
        exit that can open nothing: the exit's own code is a file, as a new connection or the
        spool is. Let go when the exit begins, this one descriptor loads that code one file
        at a time, and the lines go out on the open connection. After the sender's first step
        (its connection takes a low number by then) one held from the start is swapped for
        one at the number it gets: a program that lowers its own limit of open files below
        SPARE_FD would otherwise find that one of no use (the kernel gives out numbers under
        the limit only). Made again after a step that finds it closed by the program (a
        daemon's `os.closerange(3, ...)`), and tried after each step while none is held."""
        held = self._spare
        if self._shutdown is not None or (held is not None and not held.at_start and held.held):
            return
        try:
            self._spare = Spare.low()
        except OSError:
            return  # at the limit already: the exit does with the one it has, if any
        if held is not None:
            held.close()
        if self._shutdown is not None:  # the exit began meanwhile, and may have let go of
            self._let_spare_go()  # `held` only: the new one is let go too (see shutdown)

    def _let_spare_go(self) -> None:
        """The exit begins: the spare descriptor is closed (while it is still vlhook's: a
        program that closed every descriptor may hold that number now)."""
        held, self._spare = self._spare, None
        if held is not None:
            held.close()

    def _wait_time(self) -> float:
        now = monotonic()
        wait = self.interval
        assert self.batcher is not None
        if self.batcher.open is not None:
            wait = min(wait, self.batcher.open.started + self.interval - now)
        for request in self.flushes:
            wait = min(wait, request.deadline - now)
        if self.exit is not None:
            wait = min(wait, self.exit.wait_time(now))
        return max(wait, 0.0)

    def _step(self) -> None:
        if self.each_step is not None:
            self.each_step()
        self.collect()
        if self.exit is None and self._shutdown is not None:
            self._begin_exit(self._shutdown)
        if self.exit is not None:
            self.exit.step()
            return
        self._drain()
        assert self.batcher is not None
        if self.batcher.open is not None and monotonic() >= self.batcher.open.started + \
                self.interval:  # fmt: skip
            self.close_batch()
        self.dispatch()
        self._check_flushes()
        self.report_drops()
        self.buffer.made_room()

    def _drain(self) -> None:
        assert self.assembler is not None
        lines: list[Line] = []
        while len(self.ready) < MAX_READY:
            with self.moving:  # a group is counted before the next (see halt)
                items = self.pop_group(LINES_PER_STEP)
                self.take_many(items, lines, self.take)
                self.add_lines(lines)
                self.group_counted()
            if not items:
                break
        with self.moving:
            self.assembler.flush(lines, final=False, now_ns=time_ns())
            self.add_lines(lines)

    def pop_group(self, limit: int) -> list[Any]:
        """Up to `limit` captures off the queue, none once halted. Under `moving`: the caller
        counts them before a halt can look (see halt)."""
        if self.halted:
            return []
        items: list[Any] = self.buffer.pop_many(limit)
        if items:  # until the caller has counted them (see uncounted_in_hand)
            self.in_hand = (items, self.stats.captured)
        return items

    def group_counted(self) -> None:
        """The group taken by pop_group is made into entries (or written raw): counted."""
        self.in_hand = NOTHING_IN_HAND

    def uncounted_in_hand(self) -> int:
        """For an exit that gave up on the sender while it held `moving` (halt could not take
        it: a program's object whose __str__ does not return, met while making entries): the
        lines of the group it took off the queue and has not counted as captured. Without
        them such lines were in no counter, and the exit waited for that call as long as it
        took. Entries of the group made before it are counted already (captured since)."""
        items, captured_then = self.in_hand
        if not items:
            return 0
        return max(0, lines_in(items) - (self.stats.captured - captured_then))

    def unless_halted(self, step: Callable[[], None]) -> None:
        """One step of the sender's that a halt waits for, or none once halted (see halt)."""
        with self.moving:
            if not self.halted:
                step()

    def halt(self, timeout: float) -> bool:
        """On the exiting thread, when the sender did not finish the exit in time: once what it
        is doing ends (a group of captures counted, batches handed over; within `timeout`), it
        takes nothing more off the queue and starts no request. Every capture is then queued,
        counted, or in a request under way, and stays so: the sender settles no request and
        does not end the exit either (the exiting thread reports it)."""
        held = acquire_patiently(self.moving, timeout)
        self.halted = True
        if held:
            self.moving.release()
        return held

    def take_many(
        self, items: list[Any], lines: list[Line], take: Callable[[Any, list[Line]], None]
    ) -> None:
        """Items off the buffer, in order: runs of writes go to the assembler together, runs
        of records to the entry builder together, anything else to `take`."""
        if all_text(items):  # writes only (a burst's): none looked at by itself
            self._feed_many(items, lines)
            return
        texts: list[Text] = []
        records: list[Any] = []
        for item in items:
            cls = item.__class__
            if cls is Text:
                if records:
                    self.take_records(records, lines)
                    records = []
                texts.append(item)
                continue
            if texts:
                self._feed_many(texts, lines)
                texts = []
            if cls is Record or cls is Uncaught or cls is Event:
                records.append(item)
                continue
            if records:
                self.take_records(records, lines)
                records = []
            take(item, lines)
        if records:
            self.take_records(records, lines)
        if texts:
            self._feed_many(texts, lines)

    def _feed_many(self, texts: list[Text], lines: list[Line]) -> None:
        """A run of writes into lines: a run of whole plain lines straight into the batch, with
        a few C calls for the whole run (see LineAssembler.whole_lines); anything else into
        `lines`, one write at a time."""
        assert self.assembler is not None and self.builder is not None
        run = self.assembler.whole_lines(texts)
        written = self.builder.written_run(run) if run is not None else None
        if written is None:
            self.assembler.feed_many(texts, lines)
            return
        self.add_lines(lines)  # the lines before the run first
        self.add_entries(written, texts[0].t_ns)

    def take(self, item: Any, lines: list[Line]) -> None:
        """One item off the buffer, in order."""
        assert self.assembler is not None and self.builder is not None
        cls = item.__class__
        if cls is Text:
            self.assembler.feed(item, lines)
            if len(lines) >= LINES_PER_STEP:
                self.add_lines(lines)
        elif cls is Discard:
            self.assembler.discard(item.kind, item.thread)
        elif cls is FlushRequest:
            self._begin_flush(item, lines)
        else:  # a logging record or an uncaught exception: after the lines written before it
            self.add_lines(lines)
            self.add_entries(self.builder.from_item(item), item.t_ns)

    def take_records(self, records: list[Any], lines: list[Line]) -> None:
        """Records and uncaught exceptions in a row, after the lines written before them: into
        the batch at once (not one by one: ~1 µs each)."""
        assert self.builder is not None
        self.add_lines(lines)
        self.add_entries(self.builder.written_records(records), records[0].t_ns)

    def add_lines(self, lines: list[Line]) -> None:
        if lines:
            assert self.builder is not None
            self.add_entries(self.builder.written_lines(lines), lines[0].t_ns)
            lines.clear()

    def add_entries(self, entries: Sequence[Union[Entry, str]], t_ns: int) -> None:
        if not entries:
            return
        batcher, encoder = self.batcher, self.encoder
        assert batcher is not None and encoder is not None
        count = len(entries)
        # The batch's clock starts when its first line was written, not when it got here.
        started = monotonic() - max(0, time_ns() - t_ns) / 1e9
        while entries:
            batch = batcher.body(started)
            # A group of captures fills a batch up to VICTORIALOGS_BATCH_LINES, not past it.
            room = max(1, batcher.max_lines - batch.lines)
            part = entries if len(entries) <= room else entries[:room]
            encoder.append(part, batch.body)
            batch.lines += len(part)
            entries = entries[len(part) :]
            if batcher.full():
                self.close_batch()
        self.stats.add("captured", count)

    def close_batch(self) -> None:
        assert self.batcher is not None
        batch = self.batcher.close()
        if batch is not None:
            self.ready.append(batch)
            self._unsettled.add(batch.seq)

    # -- delivery ------------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand waiting batches to idle workers: replayed spool first when its turn comes."""
        self.unless_halted(self._dispatch)

    def _dispatch(self) -> None:
        for worker in self.workers:
            if worker.batch is not None:
                continue
            batch = self._next_batch()
            if batch is None:
                return
            worker.cancel.deadline = self.worker_deadline()
            try:
                worker.submit(batch)
            except RuntimeError:  # no thread at interpreter shutdown: deliver right here
                self._delivered(worker, batch, worker.client.deliver(
                    bytes(batch.body), batch.lines, worker.cancel))  # fmt: skip
                self.collect()
        if self.ready and (self.outage or self._filling_while_down()) and self._can_spool():
            self._keep_while_down()

    def _can_spool(self) -> bool:
        """A spool is set and usable (else batches wait in memory, under the buffer's policy)."""
        if not self.config.spool_dir:
            return False
        try:
            return self.spool.usable
        except OSError:  # its module cannot load now (no descriptor to read it): later
            return False

    def _filling_while_down(self) -> bool:
        """No server answers, and the buffer is half full behind the batch trying again."""
        half_full = self.buffer.used * 2 > self.buffer.limit
        return half_full and self.workers[0].client.health.unreachable()

    def _keep_while_down(self) -> None:
        """The server took none of the last batch (down, unreachable, frozen, throttling past
        the retry budget), or answers no request while the buffer fills: while one batch tries
        again, the others go to the spool at once, to be replayed when a batch gets through.
        Waiting behind that one, each in turn, would fill the buffer in a long outage and shed
        lines the spool could keep. A short one (a restart) costs no disk while memory holds."""
        why = self.last_problem or "the server did not take the last batch"
        batches = list(self.ready)
        self.ready.clear()
        for batch in batches:
            self._fail_flushes(batch)
        self.keep_batches(batches, why)
        self._wake.set()  # the buffer may hold more: take it now, not at the next interval

    def _next_batch(self) -> Optional[Batch]:
        """The spool's oldest data and new batches take turns; while a flush or the exit is
        waiting, new batches go first."""
        replay = self.replay_pending
        waiting = bool(self.flushes) or self.exit is not None
        if replay and not (self.ready and (waiting or not self._replay_turn)):
            assert self.batcher is not None
            replayed = self.replayer.next_batch(self.batcher.next_seq())
            if replayed is not None:
                self._replay_turn = False
                return replayed
            self._replaying = False
        if self.ready:
            self._replay_turn = True
            live: Batch = self.ready.popleft()
            return live
        return None

    def latency(self) -> float:
        """Seconds a request takes, as seen lately."""
        return self.workers[0].client.health.latency if self.workers else 0.0

    @property
    def replay_pending(self) -> bool:
        """Spooled batches to send now. Not while the server took none of the last batch: they
        wait for one that gets through (fd capture's helper, its program's final flush over,
        began a replay against a server that was down, and its own exit waited for it: the
        console's stderr stayed open a second exit budget after the program ended)."""
        return self._replaying and not self.outage and self.replayer.under_way is None

    def worker_deadline(self) -> Optional[float]:
        """What requests and retry waits must end by: the nearest flush's deadline, or the
        exit's; None when nobody is waiting."""
        if self.exit is not None:
            return self.exit.work_deadline
        return min((request.deadline for request in self.flushes), default=None)

    def _delivered(self, worker: Worker, batch: Batch, outcome: Outcome) -> None:
        """On a worker's thread: hand the outcome over and wake the sender."""
        self._completions.append((worker, batch, outcome))
        self._wake.set()

    def collect(self) -> None:
        """What the workers' requests came to, settled (nothing once halted: see halt)."""
        self.unless_halted(self._collect)

    def _collect(self) -> None:
        while True:
            try:
                worker, batch, outcome = self._completions.popleft()
            except IndexError:
                return
            if batch.seq in self.taken_back:  # the exit took it back: settled there
                self.taken_back.discard(batch.seq)
                continue
            worker.batch = None
            if batch.origin is not None:
                # The server cannot take it: replay later, and keep new batches meanwhile.
                self.outage = not self.replayer.settle(batch, outcome)
                if self.outage:
                    self._replaying = False
            else:
                self.settle(batch, outcome)

    def settle(self, batch: Batch, outcome: Outcome) -> None:
        stats = self.stats
        self._unsettled.discard(batch.seq)
        if batch.report:  # vlhook's own: kept if it can be, never counted as the program's
            for body, count in outcome.kept:
                self.spool.put(body, count, own=False)
            return
        if self.exit is not None:
            self.exit.settling(batch)
        if outcome.delivered:
            stats.add("shipped", outcome.delivered)
            stats.add("batches")
            stats.add("bytes_sent", len(batch.body))
            if self._spooled_here:  # the server answers again: send what was kept meanwhile
                self._spooled_here, self._replaying = False, True
        # A server that answers (even with a rejection) is up; one that took nothing is not.
        self.outage = not outcome.delivered and not outcome.rejected and \
            bool(outcome.kept or outcome.maybe)  # fmt: skip
        for reason, count in outcome.rejected.items():
            stats.drop(reason, count)
            stats.last_rejection = outcome.reason
            _diag.warn(f"{count} entries rejected by the server: {outcome.reason}", key=reason)
        if outcome.maybe:
            stats.add("in_flight", outcome.maybe)
        if outcome.kept or outcome.maybe:
            self.last_problem = outcome.reason
        for body, count in outcome.kept:
            self.keep(body, count, outcome.reason)
        if outcome.delivered < batch.lines:
            self._fail_flushes(batch)

    def _fail_flushes(self, batch: Batch) -> None:
        """Not all of `batch` was delivered: the flushes that cover it have failed."""
        for request in self.flushes:
            request.failed = request.failed or request.upto >= batch.seq

    def untold_drops(self, dropped: int) -> int:
        """How many of `dropped` no message has told of yet."""
        return max(0, dropped - self._told_drops)

    def keep_batches(self, batches: list[Batch], why: str) -> None:
        """Batches that will not be sent now, together in files of up to KEEP_FILE_BYTES: each
        file costs the sender several calls that give up the interpreter, and a turn to get it
        back after each (see EXIT_SWITCH_S). At most an eighth of the spool's cap each, so
        that the cap still evicts the oldest piecemeal (a file over the cap is not kept)."""
        if not batches:
            return  # nothing to keep: the spool is not even loaded (most processes' exit)
        limit = min(KEEP_FILE_BYTES, self.spool.max_bytes // 8)
        body, lines = bytearray(), 0
        for batch in batches:
            if batch.report:
                self.keep_batch(batch, why)
                continue
            self._unsettled.discard(batch.seq)
            if body and len(body) + len(batch.body) > limit:
                self.keep(bytes(body), lines, why)
                body, lines = bytearray(), 0
            body += batch.body
            lines += batch.lines
        if body:
            self.keep(bytes(body), lines, why)

    def keep_batch(self, batch: Batch, why: str) -> None:
        """A batch that will not be sent now (a flush or the exit could not wait for it)."""
        self._unsettled.discard(batch.seq)
        if batch.report:
            self.spool.put(bytes(batch.body), batch.lines, own=False)
        else:
            self.keep(bytes(batch.body), batch.lines, why)

    def keep(self, body: bytes, lines: int, why: str) -> None:
        """Lines not delivered: to the spool, or dropped with the reason it could not take them."""
        try:
            reason = self.spool.put(body, lines)
        except OSError as exc:  # the spool's module could not load (no descriptor to read it)
            _diag.warn(f"cannot write to the spool: {exc}", key="spool-write")
            reason = "spool_unwritable"
        if not reason:
            self._spooled_here = True
            _diag.debug(f"{lines} entries spooled ({why})")
            return
        self.stats.drop(reason, lines)
        if self.exit is None and not self.report_follows:  # that report says it, once
            _diag.warn(f"{lines} entries lost: not delivered ({why}) and {explain_drop(reason)}",
                       key=f"lost {reason}")  # fmt: skip

    # -- flushes -------------------------------------------------------------------------------

    def _begin_flush(self, request: FlushRequest, lines: list[Line]) -> None:
        assert self.assembler is not None and self.batcher is not None
        self.assembler.flush(lines, final=True)
        self.add_lines(lines)
        self.close_batch()
        request.upto = self.batcher.last_seq
        self.flushes.append(request)
        self.tell_workers()

    def tell_workers(self) -> None:
        deadline = self.worker_deadline()
        for worker in self.workers:
            worker.cancel.deadline = deadline
            worker.cancel.final = self.exit is not None
            worker.cancel.poke()

    def _check_flushes(self) -> None:
        if not self.flushes:
            return
        now = monotonic()
        oldest = min(self._unsettled, default=None)
        for request in list(self.flushes):
            if oldest is None or oldest > request.upto:
                self.answer(request, ok=not request.failed)
            elif now >= request.deadline:
                self._expire(request)
        self.tell_workers()

    def _expire(self, request: FlushRequest) -> None:
        """A flush's deadline came first: batches it covers that are not in a request are
        spooled now (requests under way go on); the flush has failed."""
        covered = [b for b in self.ready if b.seq <= request.upto]
        for batch in covered:
            self.ready.remove(batch)
        self.keep_batches(covered, "a flush could not wait for it")
        self.answer(request, ok=False)

    def answer(self, request: FlushRequest, ok: bool) -> None:
        request.ok = ok
        self.flushes.remove(request)
        if request.disconnect:
            for worker in self.workers:
                if worker.batch is None:  # its thread is not using the client: waiting
                    worker.client.close()
        request.done.set()

    # -- the exit --------------------------------------------------------------------------------

    def _begin_exit(self, request: ShutdownRequest) -> None:
        for flush in list(self.flushes):
            self.answer(flush, ok=False)  # their callers are gone or going
        from vlhook._exit import ExitRun  # the exit's own code: loaded when it comes

        self.exit = ExitRun(self, request)
        self.tell_workers()

    def cut_short(self, request: ShutdownRequest) -> None:
        """Ctrl-C while the exit waits for the sender: whoever pressed it wants the process to
        end now. Requests under way end, and what did not leave is kept in the spool within
        INTERRUPTED_S (said in the exit's report, as at any exit)."""
        now = monotonic()
        request.deadline = min(request.deadline, now + INTERRUPTED_S)
        run = self.exit
        if run is not None:  # else the exit begins with the shorter deadline
            run.cut_short(now)
            self.tell_workers()
        self._wake.set()

    def _run_exit_inline(self, request: ShutdownRequest) -> None:
        """No sender thread runs (none could be started: Python 3.12 at interpreter shutdown;
        or the one started had not yet registered itself, see _claim): the exiting thread does
        the sender's work itself, with the same deadline."""
        with _diag.guard("exit"):
            try:
                self.load_pipeline()  # on the exiting thread, the collector paused by shutdown
            except Exception as exc:
                self._give_up(exc)
                return
            for _ in range(100_000):  # bounded: the exit ends by its deadline
                self._step()
                if request.report is not None:
                    return
                self._wake.wait(self._wait_time())

    # -- reporting -------------------------------------------------------------------------------

    def report_drops(self, final: bool = False) -> None:
        """Data shed anywhere is itself shipped as an entry (at most every REPORT_EVERY_S, and
        once more at exit: every drop reaches the server), and told on stderr. A report travels
        in a batch of its own: its fate is not the program's entries' (a report the server
        refuses makes no new report)."""
        total = self.stats.dropped_total
        now = monotonic()
        if total <= self._reported_drops or (now < self._next_report and not final):
            return
        from vlhook._delivery.batch import Batch
        from vlhook._entry import rfc3339

        assert self.encoder is not None and self.batcher is not None
        new = total - self._reported_drops
        self._reported_drops, self._next_report = total, now + REPORT_EVERY_S
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.stats.dropped.items()))
        text = f"{new} entries dropped ({reasons} since start)"
        # At exit, or when a report of the end follows (see report_follows), that says it.
        if not (final or self.report_follows) and _diag.warn(text, key="dropped"):
            self._told_drops = total
        entry = {"_time": rfc3339(time_ns()), "_msg": f"vlhook: {text}", "level": "WARNING",
                 "stream": "vlhook", "vlhook.dropped": new}  # fmt: skip
        batch = Batch(self.batcher.next_seq(), now, report=True)
        self.encoder.append([entry], batch.body)
        batch.lines = 1
        self.stats.add("reports")
        self.ready.append(batch)
        self._unsettled.add(batch.seq)


#: Where the spare descriptor is held from the start: the number the spool's files are moved
#: up from (private.HIGH_FD), above those a program's files get.
SPARE_FD = 256


class Spare:
    """A descriptor of vlhook's own, for a process that will have none left (see
    Sender._hold_spare): the read end of a pipe nothing writes to, whose identity no other
    file has, not inherited by programs the process starts, non-blocking as all of vlhook's
    descriptors are (see _sync.close_nonblocking). Made and closed with `os` alone: the exit
    closes it before it can load anything (private.Opened is the pipeline's)."""

    __slots__ = ("_unclosed", "at_start", "fd", "opened")

    def __init__(self, fd: int, at_start: bool) -> None:
        self.fd = fd
        self.at_start = at_start
        self.opened = os.fstat(fd)  # what it is: its number may become the program's file
        #: Taken (list.pop, one C call: no thread switch or signal handler in its middle) by
        #: the one close() that closes it: see close.
        self._unclosed = [fd]

    @classmethod
    def low(cls) -> Spare:
        """One at the number it gets. Raises OSError (none left, or that number is a standard
        stream's the program closed: the program's next file gets it, as without vlhook)."""
        read, write = _pipe()
        try:
            close_nonblocking(write)  # made in another thread's turn: the program's by now?
        except OSError:
            pass  # closed by the program already
        if read <= LAST_STANDARD_FD:
            try:
                close_nonblocking(read)
            except OSError:
                pass  # closed by the program already
            raise OSError(EBADF, "a standard stream's number")
        return cls(read, at_start=False)

    @classmethod
    def high(cls, number: int) -> Optional[Spare]:
        """One at `number`, or None when that is taken (the program's: left to it) or past
        the limit of open files. The pipe's own numbers are closed: the program's next files
        get the numbers they would have. Raises OSError (none left). Made before the
        program has a thread of its own: nothing can take the pipe's numbers meanwhile."""
        read, write = _pipe()
        try:
            if _is_open(number):
                return None
            return cls(os.dup2(read, number, inheritable=False), at_start=True)
        except OSError:  # the limit is at or below it
            return None
        finally:
            os.close(read)
            os.close(write)

    @property
    def held(self) -> bool:
        """Its number is still this pipe: the program has not closed it (one fstat)."""
        try:
            return os.path.samestat(os.fstat(self.fd), self.opened)
        except OSError:
            return False

    def close(self) -> None:
        """Closed while it is still this pipe: a program that closes every descriptor it did
        not open may hold the number now. By one caller only: the exit and the sender's step
        may let go of the same spare at once, and a second close after the first one's check
        would fail (EBADF), or close a file that took the number in between."""
        try:
            fd = self._unclosed.pop()
        except IndexError:
            return  # closed, or being closed, by another caller
        if self.held:
            try:
                close_nonblocking(fd)  # the look above may be stale by now
            except OSError:
                pass  # the program closed it since the check: nothing is left to let go


def _pipe() -> tuple[int, int]:
    """A pipe, its ends non-blocking and not inherited; from the call that makes it, where
    the system has pipe2."""
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    read, write = os.pipe()
    if os.name == "posix":  # see close_nonblocking
        os.set_blocking(read, False)
        os.set_blocking(write, False)
    return read, write


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _wait_for_exit(sender: Sender, request: ShutdownRequest) -> None:
    """Wait for the sender's exit, the interpreter's turns made shorter meanwhile (see
    EXIT_SWITCH_S), as they were after it (unless the program changed them meanwhile).

    A Ctrl-C meanwhile cuts the exit short (see Sender.cut_short), and the wait goes on for
    what that leaves; a second one ends the wait (the report then says what was unanswered).
    Before, its KeyboardInterrupt ended the exit there: Python printed vlhook's traceback
    ("Exception ignored in atexit callback"), and the lines waiting for the server were lost,
    neither spooled nor said."""
    if request.report is not None:  # over: a call after the one that waited for it
        return
    interval = sys.getswitchinterval()
    shorter = min(interval, EXIT_SWITCH_S)
    sys.setswitchinterval(shorter)
    try:
        for interrupted in (False, True):  # the first Ctrl-C cuts the exit short, the second
            try:  # ends the wait
                if request.done.wait(max(0.0, request.deadline - monotonic()) + EXIT_GRACE_S):
                    request.done.set()  # for any other waiter: a wait takes the flag (Wakeup)
                break
            except KeyboardInterrupt:
                if interrupted:
                    break
                sender.cut_short(request)
    finally:
        if sys.getswitchinterval() == shorter:
            sys.setswitchinterval(interval)


def shortage(exc: BaseException) -> bool:
    """Whether `exc` is a shortage that may pass: a module's file could not be opened for want
    of descriptors (a program at its limit of open files) or of memory."""
    if not isinstance(exc, OSError):
        return False
    import errno  # built in: opens no file

    return exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM)


def _may_hold_files(directory: str) -> bool:
    """Whether the spool must be looked at now: it exists and either holds something to
    replay, or is not a private directory of ours (then setting it up says so, at once). A
    missing one is made when first needed: most processes never need it."""
    if not directory:
        return False
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return False
    except OSError:  # below a file, say: setting it up says what is wrong
        return True
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        return True
    try:
        return bool(os.listdir(directory))
    except OSError:
        return True
