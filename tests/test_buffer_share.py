"""A burst that outgrows a sixteenth of the buffer: the writer lets the interpreter lock go
now and then, so that the sender runs while the program prints (a program printing in a
loop otherwise keeps it from running at all: CPython hands the lock back to the thread that
lets it go for each write(2), before the woken sender runs). The buffer's part with the sender's
played here; then a real program bursting into a real VictoriaLogs with the default policy."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from conftest import burst_program, run_python
from vlhook import _buffer
from vlhook._buffer import (
    ITEM_OVERHEAD,
    LET_IN_CHECK,
    LET_IN_EVERY,
    LET_IN_PERIOD_S,
    LET_IN_SHARE,
    Buffer,
)
from vlhook._captures import STDOUT, Text, text
from vlhook._stats import Stats

LINE = "x" * 99 + "\n"
SIZE = len(LINE) + ITEM_OVERHEAD
LIMIT = round(LET_IN_EVERY * SIZE / LET_IN_SHARE)  # its share: LET_IN_EVERY lines


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1


class Clock:
    """The buffer's monotonic clock, moved by hand: captures come as fast or as slowly as a
    test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(_buffer, "monotonic", made)
    return made


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> Calls:
    """The writer's pauses, counted (and not slept); the clock stands still unless a test
    moves it: captures as fast as a print() loop, which LET_IN_EVERY alone paces."""
    calls = Calls()
    monkeypatch.setattr(_buffer, "sleep", calls)
    return calls


def buffer(on_full: str = "drop") -> tuple[Buffer, Calls, Stats]:
    wakes, stats = Calls(), Stats()
    made = Buffer(stats, LIMIT, on_full, 1.0, wake=wakes, wake_every=1 << 30)
    made.intercept = None
    return made, wakes, stats


def capture() -> Text:
    return text(STDOUT, LINE, time.time_ns(), 1, None)


def test_the_share_is_a_sixteenth_of_the_limit() -> None:
    made, _, _ = buffer()
    assert LET_IN_SHARE == 1 / 16
    assert made.let_in_at == int(LIMIT * LET_IN_SHARE) == LET_IN_EVERY * SIZE


def test_a_writer_the_sender_keeps_up_with_never_lets_go(sleeps: Calls) -> None:
    """Up to its share of the limit the buffer takes a burst at the program's own pace."""
    made, wakes, _ = buffer()
    for _ in range(20):
        for _ in range(LET_IN_EVERY):  # exactly the share: not past it
            made.put(capture())
        made.pop_many(LET_IN_EVERY)  # the sender took them
    assert (sleeps.count, wakes.count) == (0, 0)


def test_past_the_share_the_writer_lets_go_once_every_so_many_captures(sleeps: Calls) -> None:
    made, wakes, _ = buffer()
    for _ in range(LET_IN_EVERY + 1):  # one past the share
        made.put(capture())
    assert sleeps.count == 0
    for _ in range(3 * LET_IN_EVERY):
        made.put(capture())
    # Counted from the capture that took it past the share: the LET_IN_EVERY-th from it,
    # itself included, lets the sender in.
    assert sleeps.count == 3
    assert wakes.count == 3  # and the sender is woken each time, in case it sleeps
    assert len(made.items) == 4 * LET_IN_EVERY + 1


def test_slow_captures_let_the_sender_in_once_the_period_has_passed(
    sleeps: Calls, clock: Clock
) -> None:
    """Captures that each keep the writer busy for long (a logging call costs ~10x a print())
    let the sender in every LET_IN_PERIOD_S, looked at every LET_IN_CHECK captures, not only
    every LET_IN_EVERY: counted alone, a tight logging loop shed 12-15 % of its records."""
    made, wakes, _ = buffer()
    step = LET_IN_PERIOD_S / 10  # ten captures to a period: its check comes well after it
    while made.used <= made.let_in_at:  # the last of them, past the share, starts the period
        made.put(capture())
    for _ in range(LET_IN_CHECK - 2):
        clock.now += step
        made.put(capture())
    assert sleeps.count == 0  # the period has passed, but it is looked at on the next one
    clock.now += step
    made.put(capture())
    assert (sleeps.count, wakes.count) == (1, 1)
    for _ in range(3 * LET_IN_CHECK):
        clock.now += step
        made.put(capture())
    assert sleeps.count == 4  # one each LET_IN_CHECK captures, each well past its period


def test_captures_within_the_period_are_paced_by_count_alone(sleeps: Calls, clock: Clock) -> None:
    """Fast captures (a print() loop) let the sender in every LET_IN_EVERY, as before: the
    clock is read each LET_IN_CHECK captures and finds the period not yet over."""
    made, _, _ = buffer()
    while made.used <= made.let_in_at:
        made.put(capture())
    step = LET_IN_PERIOD_S / (2 * LET_IN_EVERY)  # LET_IN_EVERY captures: half a period
    for _ in range(3 * LET_IN_EVERY):
        clock.now += step
        made.put(capture())
    assert sleeps.count == 3


def test_a_long_quiet_spell_does_not_make_the_next_capture_pause(
    sleeps: Calls, clock: Clock
) -> None:
    """A writer past the share that comes back after a long while (a program logging now and
    then while the server is down) pauses no sooner than at the next check: at most one pause
    per LET_IN_CHECK captures, however slowly they come."""
    made, _, _ = buffer()
    while made.used <= made.let_in_at:
        made.put(capture())
    for _ in range(LET_IN_CHECK * 4):
        clock.now += 60.0
        made.put(capture())
    assert sleeps.count == 4


def test_shed_captures_count_too(sleeps: Calls) -> None:
    """A full buffer under `drop` sheds, and goes on letting the sender in: it is what
    empties the buffer."""
    made, _, stats = buffer("drop")
    while made.used + SIZE <= LIMIT:
        made.put(capture())
    before = sleeps.count
    for _ in range(2 * LET_IN_EVERY):
        made.put(capture())
    assert stats.as_dict()["dropped"] == {"buffer_full": 2 * LET_IN_EVERY}
    assert sleeps.count - before == 2


def test_an_exception_out_of_the_sleep_takes_no_line_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while the writer sleeps is the program's to have (it propagates), but the line
    the writer was putting is kept: the sleep comes after the capture is in the buffer."""

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_buffer, "sleep", interrupted)
    made, _, _ = buffer()
    put = 0
    with pytest.raises(KeyboardInterrupt):
        while put < 10 * LET_IN_EVERY:
            put += 1
            made.put(text(STDOUT, f"{put}\n", time.time_ns(), 1, None))
    assert put < 10 * LET_IN_EVERY  # it came, at the first let-in
    assert [item.data for item in made.items] == [f"{n}\n" for n in range(1, put + 1)]


BURST = burst_program(150_000, "shed {stats['dropped'].get('buffer_full', 0)}")


def test_a_burst_past_the_share_of_the_buffer_is_shipped_while_the_program_prints(
    script: Any, sink: Any
) -> None:
    """150,000 lines printed in a loop into a 16 MiB buffer, which holds about a third of
    them, with the default policy (`drop`). Without letting the sender in, it hardly ran
    until the buffer was full: 52,000-68,000 lines shed here, where the output goes to a
    pipe the test reads (99,160 in every run with the output read by another process, and
    46,000-49,000 of 100,000 lines on Python 3.9, 3.11 and 3.13); with it, none in every
    run measured (with 0.5 ms pauses instead of 1 ms, 7,000-53,000). Every line is stored or
    counted as shed, and the program's output is whole."""
    run = run_python(script(BURST), sink.env(VICTORIALOGS_BUFFER_BYTES=str(16 << 20),
                                             VICTORIALOGS_EXIT_TIMEOUT_MS="60000"))  # fmt: skip
    assert run.rc == 0, run.err
    assert run.out.count("\n") == 150_000
    assert stored_once_or_shed(run, sink, "stdout", 150_000) <= 20_000, run.err


def stored_once_or_shed(run: Any, sink: Any, stream: str, total: int) -> int:
    """The burst's entries of `stream` the server stored, each once, and those the program
    said were shed make `total`; returns how many were shed."""
    shed = re.search(r"shed (\d+)", run.err)
    assert shed, run.err
    sink.server.force_flush()
    burst = f'test_id:="{sink.test_id}" stream:={stream}'
    (counts,) = sink.server.query(f"{burst} | stats count() as rows, count_uniq(_msg) as lines")
    assert int(counts["rows"]) == int(counts["lines"])  # once each
    assert int(counts["rows"]) + int(shed.group(1)) == total
    return int(shed.group(1))


LOGGING_BURST = """import logging, os, sys, vlhook
# The program's output goes to /dev/null, as a service's often does: writes into a pipe the
# test reads, or into a file, would block or take long enough to let the sender in by
# themselves.
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(name)s %(message)s")
log = logging.getLogger("burst")
for i in range(60_000):
    log.info("record %06d", i)
sys.stdout.flush()
stats = vlhook.stats()
sys.stderr.write(f"shed {stats['dropped'].get('buffer_full', 0)}\\n")
"""


def test_a_logging_burst_is_shipped_while_the_program_logs(script: Any, sink: Any) -> None:
    """60,000 logger.info() calls in a loop into an 8 MiB buffer, which holds about a fifth of
    them, with the default policy. A logging call costs the program ~10x a print(): let in
    every 500 captures alone, the sender ran too seldom, and 11,000-20,000 records were shed
    here; let in after every millisecond of such captures, none in every run measured. Every
    record is stored once or counted as shed."""
    settings = {"VICTORIALOGS_BUFFER_BYTES": str(8 << 20), "VICTORIALOGS_EXIT_TIMEOUT_MS": "60000",
                # The default: the sink's shorter interval wakes the sender 5x as often.
                "VICTORIALOGS_FLUSH_INTERVAL_MS": "500"}  # fmt: skip
    run = run_python(script(LOGGING_BURST), sink.env(**settings))
    assert run.rc == 0, run.err
    assert stored_once_or_shed(run, sink, "logging", 60_000) <= 3_000, run.err


def test_a_capture_kept_when_waking_the_sender_fails_at_the_recursion_limit_is_kept_once() -> None:
    """A writer at its recursion limit defers a capture whose `put` raised RecursionError and
    puts it again with room (see _capture_streams._deferred): `put` raises it only before
    keeping anything. Here the sender's wake-up, called once the capture is kept, cannot be
    (a batch's worth is waiting)."""

    def too_deep() -> None:
        raise RecursionError("maximum recursion depth exceeded")

    made = Buffer(Stats(), LIMIT, "drop", 1.0, wake=too_deep, wake_every=1)
    made.intercept = None
    made.put(capture())
    assert len(made.items) == 1 and made.used == SIZE
