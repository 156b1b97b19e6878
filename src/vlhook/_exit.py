"""The exit: the sender's last run, and the report it ends with.

Within the budget, on the sender thread (which never waits on the network): every capture still
queued is made into entries (or, when the rate so far, or before there is one a rate no machine
beats, says there is no time for that, written raw to the spool as complete lines, to be made
into entries when replayed), a few batches
ahead of delivery while time is to spare (the captures wait in the buffer, whose memory they
hold already, not as batches too); batches go to idle workers until `work_deadline`; then
requests still under way are ended, batches that never left are spooled, and what is in a
request that got no answer is reported as such (the server may have stored it: spooling it
too could store it twice). Dropped only when the spool cannot take it, and the report says
why. After the report, writes by threads still running go straight to the spool, on the
writing thread; so do an object's `__del__` that prints at interpreter teardown, when no import
works: what those writes need is loaded before the report, in a process whose exit loaded the
spool (elsewhere such a write is counted as dropped: see _ready_for_late_writes).
"""

from __future__ import annotations

import sys  # loaded by the interpreter already
from time import monotonic

from vlhook import _capture_streams, _context, _diag
from vlhook._buffer import lines_in
from vlhook._captures import Text
from vlhook._stats import ExitReport, explain_drop
from vlhook._sync import FlushRequest, allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

    from vlhook._captures import Context, Line
    from vlhook._delivery.batch import Batch
    from vlhook._delivery.replay import CaptureFile
    from vlhook._sender import Sender
    from vlhook._sync import ShutdownRequest

STEP = 256  # captures taken between two looks at the clock
#: Batches made ahead of delivery while there is time to spare: the rest waits in the buffer,
#: where its memory already is (making all of it at once added ~24 MiB to a burst's peak).
AHEAD = 4
#: Making the rest waits only while the time left is this many times what making it would take,
#: and never past half the time for work: the rate is measured in short windows, which miss a
#: machine whose other processes take the CPU in turns (three busy loops on 2 cores made the
#: rest take 2-3x its estimate, and 1,920 of 19,000 lines were dropped at a frozen server's exit).
SPARE = 4
#: The making rate is the median of this many groups of STEP captures, the last ones: one
#: stall (another thread holding the interpreter, a busy moment of the machine) is not the
#: rate. Judged on one window, a stall of ~0.5 s sent 55,000 lines to the spool as raw lines
#: in a process that had 8 s to deliver them.
RATE_WINDOWS = 3
#: Less than making an entry of a capture takes on any machine (a plain line: ~2 us on a 2-core
#: virtual machine, JSON lines more). Before the rate is known, making the rest at this speed
#: would already not finish in time: the rest goes raw at once. Found when the exit's time was
#: mostly spent loading the pipeline: the drain began with ~40 ms left and 150,000 captures
#: queued, the time ran out before RATE_WINDOWS groups were timed, and all but 512 of them
#: were dropped rather than written raw.
MAKING_FLOOR_S = 0.5e-6
#: An exit given up on waits this long at most for what the sender is doing to end (a group of
#: captures being counted, batches handed over, a spool write: see Sender.halt, Spool.seal).
SEAL_WAIT_S = 0.25


class ExitRun:
    """The exit, step by step on the sender thread (see the module docstring)."""

    def __init__(self, sender: Sender, request: ShutdownRequest) -> None:
        self.sender = sender
        self.request = request
        now = monotonic()
        budget = max(0.0, request.deadline - now)
        # Kept back at the end for spooling what did not leave (a file write each).
        self.reserve = min(0.2, max(0.01, budget * 0.1))
        self.work_deadline = request.deadline - self.reserve
        #: Making entries ahead of delivery pauses at the latest until half the work time.
        self._halfway = now + max(0.0, self.work_deadline - now) / 2
        self.finished = False
        self._base = sender.stats.as_dict()
        # Spool files of this process before the exit.
        self._own_before = set(sender.spool.own) if sender.spool_used else set()
        self._raw: Optional[CaptureFile] = None
        self._raw_spooled = 0  # entries in it (a raw write may hold several lines)
        self._reported: set[int] = set()  # batches reported as in a request under way
        self._late_lock = LateLock()
        self.problem = ""
        #: When making entries paused ahead of delivery: the latest time to go on.
        self._resume_by: Optional[float] = None
        self._windows: list[float] = []  # the last RATE_WINDOWS groups' time per capture

    def cut_short(self, now: float) -> None:
        """Ctrl-C while the program waits for this exit (see Sender.cut_short): no more
        delivery; what is left is kept by the request's deadline, made shorter. Called on the
        waiting thread, which then wakes the sender: its next step finds the work deadline
        passed, and finishes (a pause ahead of delivery included: _drain begins each step
        anew)."""
        self.work_deadline = min(self.work_deadline, now)

    def wait_time(self, now: float) -> float:
        if self.finished:
            return self.sender.interval
        until = self.work_deadline if self._resume_by is None else self._resume_by
        return max(0.0, until - now)

    def settling(self, batch: Batch) -> None:
        """An answer came for a batch already reported as under way (after the report)."""
        if batch.seq in self._reported:
            self._reported.discard(batch.seq)
            self.sender.stats.add("in_flight", -batch.lines)

    def step(self) -> None:
        sender = self.sender
        if self.finished:
            with self._late_lock:  # a flush asked for since, or a write that just missed it:
                self._keep_rest(None)  # kept as a late write is, whatever the time
            return
        self._dispatch()  # what was made ahead first: making more may then wait for it
        self._drain()
        self._dispatch()
        busy = any(worker.batch is not None for worker in sender.workers)
        idle = not (sender.ready or busy or sender.buffer.items or sender.replay_pending)
        if idle or monotonic() >= self.work_deadline:
            sender.unless_halted(self._finish)  # all of it, or none once halted

    def _dispatch(self) -> None:
        sender = self.sender
        if self.work_deadline - monotonic() > 2 * sender.latency() + 0.01:
            sender.dispatch()  # else too late to start a request: what is left is spooled

    # -- making entries, or raw lines when time is short ---------------------------------------

    def _drain(self) -> None:
        sender = self.sender
        assert sender.assembler is not None
        self._resume_by = None
        lines: list[Line] = []
        window, taken = monotonic(), 0
        while True:
            now, making, queued = monotonic(), None, len(sender.buffer.items)
            if taken:
                if now >= self.work_deadline:
                    break
                making = self._making_time((now - window) / taken, queued)
                window = now
            if self._raw is None and self._no_time_to_make(making, queued, now):
                self._go_raw(lines)
                _diag.debug("exit: no time to make entries; writing raw lines to the spool")
            elif self._raw is None and making is not None and self._far_enough_ahead():
                # Go on after an answer, or in time to make the rest anyway.
                resume_by = min(self.work_deadline - SPARE * making, self._halfway)
                if now < resume_by:
                    self._resume_by = resume_by
                    break
            taken = self._take_group(lines)
            if not taken:
                break
        sender.unless_halted(self._end_lines)
        cut = sender.buffer.unfinished_cut_lines()
        if cut:
            sender.stats.drop("buffer_full", cut, captured=True)
        sender.close_batch()
        sender.report_drops(final=True)

    def _end_lines(self, now: bool = False) -> None:
        """Lines the sender held for their end are ended as they are: once nothing queued can
        continue them, or `now` (the exit's time is up)."""
        sender = self.sender
        assert sender.assembler is not None
        if now or not sender.buffer.items:
            lines: list[Line] = []
            sender.assembler.flush(lines, final=True)
            self._pass_on(lines)

    def _take_group(self, lines: list[Line]) -> int:
        """Up to STEP captures off the queue, made into entries or written raw before the next
        group: at any moment a capture is queued or counted (see Sender.halt). How many were
        taken: 0 when none (or the exit was given up on)."""
        sender = self.sender
        assert sender.assembler is not None
        with sender.moving:
            items = sender.pop_group(STEP)
            if self._raw is None:
                sender.take_many(items, lines, self._take)
            else:
                for item in items:
                    if item.__class__ is Text:
                        sender.assembler.feed(item, lines)
                    else:
                        self._take(item, lines)
            self._pass_on(lines)
            sender.group_counted()
        return len(items)

    def _pass_on(self, lines: list[Line]) -> None:
        if self._raw is not None:
            self._write_raw(lines)
        self.sender.add_lines(lines)

    def _take(self, item: Any, lines: list[Line]) -> None:
        if item.__class__ is FlushRequest:  # requested during the exit: it cannot wait
            self.sender.answer(item, ok=False)
        else:
            self.sender.take(item, lines)

    def _making_time(self, per_capture_s: float, remaining: int) -> Optional[float]:
        """Seconds making entries of the `remaining` captures would take, at the median rate
        of the last RATE_WINDOWS groups of up to STEP captures, the one just ended included;
        None before there are that many (~1,000 captures, a few ms)."""
        windows = self._windows
        windows.append(per_capture_s)
        if len(windows) > RATE_WINDOWS:
            del windows[0]
        if len(windows) < RATE_WINDOWS:
            return None
        return remaining * sorted(windows)[RATE_WINDOWS // 2]

    def _no_time_to_make(self, making: Optional[float], queued: int, now: float) -> bool:
        """Making entries of the `queued` captures would not end before the work deadline: by
        the rate measured (`making`), or, before there is one, even at MAKING_FLOOR_S each."""
        if making is None:
            making = queued * MAKING_FLOOR_S
        return queued > 0 and making > self.work_deadline - now

    def _far_enough_ahead(self) -> bool:
        """Enough batches wait for a delivery that is under way."""
        sender = self.sender
        return len(sender.ready) >= AHEAD and any(w.batch is not None for w in sender.workers)

    def _go_raw(self, lines: list[Line]) -> None:
        self.sender.add_lines(lines)
        self._raw = self._capture_file()

    def _capture_file(self) -> CaptureFile:
        from vlhook._delivery.encode import constant_fields
        from vlhook._delivery.replay import CaptureFile

        config = self.sender.config
        return CaptureFile(self.sender.spool, constant_fields(config), config)

    def _write_raw(self, lines: list[Line]) -> None:
        if lines:
            rows = [(ln.kind, ln.t_ns, ln.text, ln.level, _merged(ln.context)) for ln in lines]
            self._keep_raw(rows)
            lines.clear()

    def _keep_raw(self, rows: list[tuple[int, int, str, str, Any]], entries: int = 0) -> None:
        """Write raw lines; `entries`: how many entries they make (default: one each)."""
        raw = self._raw
        assert raw is not None
        entries = entries or len(rows)
        stats = self.sender.stats
        with raw.spool.lock:  # written and counted at once (see Spool.seal)
            reason = "exit_timeout" if raw.spool.sealed else raw.write(rows)
            stats.add("captured", entries)
            if reason:
                stats.drop(reason, entries)
            else:
                stats.add("spooled", entries)
                self._raw_spooled += entries
        if reason and not self.finished:  # after the report a message would cut into the
            _diag.warn(f"{entries} entries lost at exit: {explain_drop(reason)}",  # program's
                       key="raw-lost")  # fmt: skip

    # -- the end ---------------------------------------------------------------------------------

    def _finish(self) -> None:
        sender, stats = self.sender, self.sender.stats
        self._end_requests()
        for worker in sender.workers:
            batch = worker.batch
            if batch is None:
                continue
            if worker.client.take_back():  # nothing of it left: kept like any other
                worker.batch = None
                sender.taken_back.add(batch.seq)
                if batch.origin is None:
                    sender.keep_batch(batch, "the exit came first")
                else:
                    sender.replayer.stop()  # the piece stays in its file
            elif batch.origin is None and not batch.report:
                stats.add("in_flight", batch.lines)
                self._reported.add(batch.seq)
            else:  # not sent again: maybe stored, like any request
                sender.replayer.abandon(batch)
        # The drain may have run out of time with the next writes of those lines still queued.
        self._end_lines(now=True)
        sender.close_batch()
        batches = list(sender.ready)
        sender.ready.clear()
        sender.keep_batches(batches, "the exit came first")
        self._ready_for_late_writes()
        with self._late_lock:  # what is queued is kept before any write that comes after it
            # From here on a write goes straight to the spool (on the writer's thread): one
            # made while this exit ended would otherwise stay queued, and be lost untold.
            sender.buffer.intercept = self._late_put
            self._keep_rest(self.request.deadline)
        if sender.spool_used:
            sender.replayer.stop()
        self.request.report = self.report()
        self.finished = True
        self.request.done.set()

    def _end_requests(self) -> None:
        """Requests and waits still under way end now; their outcomes come back at once."""
        sender = self.sender
        for worker in sender.workers:
            if worker.batch is not None:
                worker.abort()
        end = min(self.request.deadline, monotonic() + self.reserve / 2)
        while any(w.batch is not None for w in sender.workers) and monotonic() < end:
            sender.wait(end - monotonic())
            sender.collect()

    def report(self) -> ExitReport:
        """What became of everything not yet delivered when the exit began, as of now."""
        sender = self.sender
        now, base = sender.stats.as_dict(), self._base
        report = ExitReport()
        report.delivered = _delta(now, base, "shipped")
        # What this exit wrote to the spool and is still there (the cap may evict some again).
        own = dict(sender.spool.own) if sender.spool_used else {}  # a copy: see unanswered_report
        report.spooled = sum(own[name] for name in own if name not in self._own_before)
        report.spooled += self._raw_spooled
        report.in_flight = _delta(now, base, "in_flight")
        dropped_now, dropped_base = now["dropped"], base["dropped"]
        assert isinstance(dropped_now, dict) and isinstance(dropped_base, dict)
        report.dropped = {k: v - dropped_base.get(k, 0) for k, v in dropped_now.items()
                          if v > dropped_base.get(k, 0)}  # fmt: skip
        report.dropped_before = {k: v for k, v in dropped_base.items() if v}
        report.untold = sender.untold_drops(sum(dropped_base.values()))
        report.problem = sender.last_problem
        if report.spooled:
            report.spool = sender.spool.directory
        return report

    # -- writes that come as the exit ends, and after its report ----------------------------------

    def _ready_for_late_writes(self) -> None:
        """Load what keeping a write after the report takes, while imports still work: at
        interpreter teardown (an object's `__del__` that prints as the modules are cleared)
        none does, not even of a module loaded already. Only where the spool is loaded already
        (this exit or an earlier moment kept or replayed something): elsewhere it would cost
        every exit the spool's modules, for a write that rarely comes (see _late_put)."""
        with _diag.guard("exit"):  # without it, such a write is only counted (see _late_put)
            if self._raw is None and self.sender.spool_used:
                self._raw = self._capture_file()  # the file itself is made at its first write
            if self._raw is not None:
                self._raw.ready()

    def _late_put(self, item: Any, level: int) -> bool:
        """On a thread still writing once the exit is ending: straight to the spool."""
        with self._late_lock, _diag.guard("late write"):
            try:
                self._keep_late([item])
            except Exception:
                if not sys.is_finalizing():
                    raise
                # At teardown, where the exit did not load the spool (or, before Python 3.12,
                # a built-in pattern's substitution imports `re`), or once the interpreter has
                # wiped a module the spool uses (its globals None: a TypeError): lost, and
                # counted (the report is out: no word of it either).
                self.sender.stats.drop("exit_timeout", lines_in([item]), captured=True)
        return True

    def _keep_late(self, items: list[Any]) -> None:
        """Captures kept as they came: lines raw (written together), records as entries."""
        rows, entries = [], 0
        for item in items:
            if item.__class__ is Text:
                data = item.data
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                count = sum(1 for part in text.split("\n") if part.strip())
                if count:
                    rows.append((item.kind, item.t_ns, text, "", _merged(item.context)))
                    entries += count
            elif hasattr(item, "t_ns"):
                self._keep_record(item)
        if rows:
            if self._raw is None:
                self._go_raw([])
            self._keep_raw(rows, entries)

    def _keep_record(self, item: Any) -> None:
        sender = self.sender
        if sender.builder is not None and sender.encoder is not None:
            made = sender.builder.from_item(item)
            body = bytearray()
            sender.encoder.append(made, body)
            sender.stats.add("captured", len(made))
            sender.keep(bytes(body), len(made), "written after the exit flush")

    def _keep_rest(self, deadline: Optional[float]) -> None:
        """Everything still queued: flushes asked for now cannot deliver anything more
        (answered, not kept waiting); captures are written raw to the spool like late writes,
        those left at `deadline` (if any) counted as dropped. Under _late_lock."""
        sender = self.sender
        captures = []
        for item in sender.buffer.take_all():
            if item.__class__ is FlushRequest:
                sender.answer(item, ok=False)
            else:
                captures.append(item)
        kept = 0
        while kept < len(captures) and (deadline is None or monotonic() < deadline):
            self._keep_late(captures[kept : kept + STEP])
            kept += STEP
        left = lines_in(captures[kept:])
        if left:
            sender.stats.drop("exit_timeout", left, captured=True)


def _merged(context: Optional[Context]) -> Optional[dict[str, Any]]:
    if not context:
        return None
    return dict(_context.fields_of(context)) or None


def _delta(now: dict[str, Any], base: dict[str, Any], name: str) -> int:
    return int(now[name]) - int(base[name])


def unanswered_report(sender: Sender, request: ShutdownRequest) -> ExitReport:
    """The sender thread did not finish the exit in time (the program's other threads kept the
    interpreter from it, a call held it, or it is gone), on the exiting thread: the sender is
    halted and the spool sealed first, so every number below is final. Dropped: the captures
    still queued, the lines the sender held waiting for their end, and the entries it made but
    neither delivered nor kept; those in a request under way may still be stored."""
    stats = sender.stats
    until = monotonic() + SEAL_WAIT_S
    halted_between_groups = sender.halt(SEAL_WAIT_S)
    if request.report is not None:
        return request.report  # it finished the exit while being halted
    sender.spool.seal(max(0.0, until - monotonic()))
    left = lines_in(sender.buffer.take_all())
    if not halted_between_groups:  # stuck in a group: its lines are in no counter yet
        left += sender.uncounted_in_hand()
    # Lines the sender held waiting for their end, or for the rest of their traceback.
    left += sender.assembler.held() if sender.assembler is not None else 0
    if left:
        stats.drop("exit_timeout", left, captured=True)
    now: dict[str, Any] = stats.as_dict()  # one snapshot (a halt that timed out: still moving)
    settled = sum(now[name] for name in ("shipped", "spooled", "dropped_total", "in_flight"))
    pending = max(0, now["captured"] - settled)
    under_way = min(pending, _in_requests(sender))
    if under_way:
        stats.add("in_flight", under_way)
    if pending > under_way:
        stats.drop("exit_timeout", pending - under_way)
    if sender.exit is not None:
        report = sender.exit.report()
    else:
        report = ExitReport()
        report.dropped = {"exit_timeout": left + pending - under_way} if left + pending else {}
        report.in_flight = under_way
    report.problem = "the sender did not finish in time"
    return report


def _in_requests(sender: Sender) -> int:
    """The program's entries in requests under way (read from another thread: a snapshot)."""
    batches = [worker.batch for worker in sender.workers]
    return sum(b.lines for b in batches if b is not None and b.origin is None and not b.report)


class LateLock:
    """Held by the one thread keeping late writes at a time. What that thread writes while it
    holds it is vlhook's own doing (an import's `python -v` message, a warning), and is not
    captured: it would come back to this lock on the same thread, and the process never ended
    (PYTHONVERBOSE=1, a write at teardown that loaded the spool)."""

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._quiet = _capture_streams.NotCaptured()  # used by the holder alone

    def __enter__(self) -> None:
        self._lock.acquire()
        self._quiet.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._quiet.__exit__()
        self._lock.release()
