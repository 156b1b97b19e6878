"""An exit given up on or out of time: the spool's files hold what the report said, the lines
the sender held for their end are in one number, and the waits for what the sender is doing
count only the time the exiting thread could run."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from vlhook._captures import STDOUT, Line, text
from vlhook._config import load
from vlhook._delivery.spool import Spool
from vlhook._exit import STEP, ExitRun, unanswered_report
from vlhook._sender import Sender
from vlhook._stats import Stats
from vlhook._sync import ShutdownRequest, acquire_patiently


def test_a_sealed_spool_keeps_nothing_more(tmp_path: Path) -> None:
    stats = Stats()
    spool = Spool(str(tmp_path / "spool"), 1 << 20, stats)
    assert spool.put(b'{"_msg":"a"}\n', 1) == ""
    spool.seal(0.1)
    assert spool.put(b'{"_msg":"b"}\n', 1) == "exit_timeout"
    assert [f.lines for f in spool.files()] == [1]
    assert stats.spooled == 1


def test_the_seal_waits_for_a_write_under_way(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), 1 << 20, Stats())
    spool.lock.acquire()  # a write under way, on the sender thread
    sealing = threading.Thread(target=spool.seal, args=(10,))
    sealing.start()
    sealing.join(0.2)
    assert sealing.is_alive() and not spool.sealed
    spool.lock.release()
    sealing.join(10)
    assert spool.sealed


def test_a_patient_wait_does_not_count_time_nobody_could_run() -> None:
    """The exit given up on waits for what the sender is doing to end; while a C call holds
    the interpreter the sender cannot end it, and the wait does not run out meanwhile."""
    lock = threading.Lock()
    lock.acquire()

    def hold_the_interpreter_then_release() -> None:
        time.sleep(0.02)
        sum(range(30_000_000))  # one C call: ~0.3 s with nothing else running Python
        lock.release()

    holder = threading.Thread(target=hold_the_interpreter_then_release)
    holder.start()
    try:
        assert acquire_patiently(lock, 0.1)
    finally:
        holder.join(10)


def test_a_patient_wait_still_ends() -> None:
    lock = threading.Lock()
    lock.acquire()
    started = time.monotonic()
    assert not acquire_patiently(lock, 0.1)
    assert time.monotonic() - started < 1


def sender_holding_a_line(spool: Path) -> Sender:
    """A sender whose pipeline is loaded here, with no thread of its own (the test takes its
    steps), holding one line whose end has not come."""
    config = load({"VICTORIALOGS_URL": "http://127.0.0.1:9", "VICTORIALOGS_SPOOL_DIR": str(spool)})
    sender = Sender(config, Stats())
    sender.load_pipeline()
    assert sender.assembler is not None
    made: list[Line] = []
    sender.assembler.feed(text(STDOUT, "unfinished", time.time_ns(), 1, None), made)
    assert made == [] and sender.assembler.held() == 1
    return sender


def test_an_exit_given_up_on_counts_the_line_the_sender_held_unfinished(tmp_path: Path) -> None:
    """A line whose end never came waits in the sender until the exit's last drain ends it;
    an exit given up on before that counts it as dropped (it was in no number at all)."""
    sender = sender_holding_a_line(tmp_path)
    report = unanswered_report(sender, ShutdownRequest(time.monotonic()))
    assert report.dropped == {"exit_timeout": 1}
    assert (sender.stats.captured, sender.stats.dropped_total) == (1, 1)


def test_an_exit_out_of_time_keeps_the_line_the_sender_held_unfinished(tmp_path: Path) -> None:
    """The exit's drain runs out of time with captures still queued: the line the sender held
    for its end is kept with the entries made, as it is (it was neither kept nor counted)."""
    sender = sender_holding_a_line(tmp_path)
    # More than one group of another thread's lines: the drain stops after the first.
    queued = [text(STDOUT, f"line {i}\n", time.time_ns(), 2, None) for i in range(300)]
    sender.buffer.items.extend(queued)
    request = ShutdownRequest(time.monotonic())  # no time at all: what is left is dropped
    ExitRun(sender, request).step()
    report = request.report
    assert report is not None
    # The first group and the held line kept, the rest counted: every line in one number.
    assert (report.spooled, report.dropped) == (257, {"exit_timeout": 44})
    stats = sender.stats
    assert stats.captured == 301 == stats.spooled + stats.dropped_total


def test_an_exit_left_little_time_for_much_writes_raw_lines_from_the_first(tmp_path: Path) -> None:
    """The exit's drain begins with a few milliseconds left and 20,000 captures queued (its
    time spent loading the pipeline, say): making entries of them could not end in time at any
    rate, so they go raw from the first group on. Before, entries were made until the rate of
    three groups was known, and with less time than that the rest was dropped, none raw."""
    sender = sender_holding_a_line(tmp_path)
    queued = [text(STDOUT, f"line {i}\n", time.time_ns(), 2, None) for i in range(20_000)]
    sender.buffer.items.extend(queued)
    request = ShutdownRequest(time.monotonic() + 0.015)  # 5 ms of work, 10 ms kept back
    run = ExitRun(sender, request)
    for _ in range(100):  # a step per wake-up, as the sender takes them
        run.step()
        if request.report is not None:
            break
        time.sleep(run.wait_time(time.monotonic()))
    report = request.report
    assert report is not None
    assert [path.suffix for path in tmp_path.iterdir()] == [".captures"]  # no entries made
    assert report.spooled >= STEP  # the first group at least, whatever the machine
    stats = sender.stats
    assert stats.captured == 20_001 == stats.spooled + stats.dropped_total
