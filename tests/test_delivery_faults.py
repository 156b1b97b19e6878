"""When the server misbehaves, every line a program wrote is delivered, spooled, or counted as
dropped with a true reason — exactly. Real programs, a real VictoriaLogs, real faults: a frozen
server (SIGSTOP), a node of two frozen, 503 with Retry-After for the program's whole life, a
proxy refusing bodies over 8 KiB, redirects, an answer that drips byte by byte, a full disk.

Each test ends the same way: the spool is replayed into the healthy server and what it stored
is counted: stored + dropped = written, nothing twice (a request that was under way at exit
may or may not have been stored: the exit message says how many).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import DROPIN, SRC, Run, Sink, base_env, held_at_exit, refused_port, run_python
from fault_proxy import FaultProxy
from victorialogs import Cluster, VictoriaLogs
from vlhook._sender import KEEP_FILE_BYTES

# Numbered lines in steps; between steps the program waits for a line on stdin (the test
# changes the world meanwhile), then exits.
STEPPED = """
import sys, time, vlhook
total, steps = {total}, {steps}
per = total // steps
for step in range(steps):
    for i in range(step * per, (step + 1) * per):
        print('seq', i)
        if i % 500 == 499:
            time.sleep(0.05)
    if step == 0:
        vlhook.flush(10)
        sys.stderr.write('READY\\n'); sys.stderr.flush()
        sys.stdin.readline()
"""


def seqs(rows: list[dict[str, str]]) -> list[int]:
    return [int(m.group(1)) for r in rows if (m := re.fullmatch(r"seq (\d+)", r["_msg"]))]


class ExitMessage:
    """The numbers of vlhook's exit message ("at exit, of the entries not yet delivered...")."""

    def __init__(self, err: str) -> None:
        self.text = next((x for x in err.splitlines() if "at exit" in x), "")
        self.kept = _number(r"(\d+) kept in the spool", self.text)
        self.maybe = _number(r"(\d+) in a request still under way", self.text)
        self.dropped = {why: int(n) for n, why in re.findall(r"(\d+) dropped: ([^;.]+)", self.text)}
        earlier = re.search(r"\(dropped earlier: ([^)]+)\)", self.text)
        self.dropped_before = {k: int(v) for k, v in (x.split(": ") for x in
                               earlier.group(1).split(", "))} if earlier else {}  # fmt: skip

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else 0


def replay(sink: Sink, url: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    """`vlhook spool replay` into the healthy server."""
    env = {**base_env(), **sink.env(), "PYTHONPATH": str(SRC)}
    if url:
        env["VICTORIALOGS_URL"] = url
    return subprocess.run([sys.executable, "-m", "vlhook", "spool", "replay"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def stored_exactly(sink: Sink, written: int, message: ExitMessage) -> list[int]:
    """What the server holds once the spool is replayed: nothing twice, nothing missing but
    what was reported dropped (or under way, which the server may or may not have)."""
    result = replay(sink)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = written - message.dropped_total
    got = seqs(sink.settle(expected - message.maybe, timeout=30))
    assert len(got) == len(set(got)), "a line was stored twice"
    assert expected - message.maybe <= len(got) <= expected, (len(got), message.text)
    return got


def start_stepped(script: Any, env: dict[str, str], total: int, steps: int = 2) -> Any:
    return start_program(script, env, STEPPED.format(total=total, steps=steps))


def start_program(script: Any, env: dict[str, str], code: str) -> Any:
    full = base_env()
    full.update(env, PYTHONPATH=str(DROPIN))
    path = script(code)
    return subprocess.Popen([sys.executable, str(path)], env=full, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def wait_ready(proc: Any) -> None:
    line = proc.stderr.readline()
    assert line == b"READY\n", line


def finish(proc: Any, timeout: float = 60) -> Run:
    started = time.monotonic()
    out, err = proc.communicate(b"go\n", timeout=timeout)
    return Run(proc.returncode, out, err, time.monotonic() - started)


def finish_frozen(proc: Any, node: VictoriaLogs) -> Run:
    """Once the program is READY, the server stops answering until the program has ended."""
    wait_ready(proc)
    node.freeze()
    try:
        return finish(proc)
    finally:
        node.thaw()


# -- a frozen server ----------------------------------------------------------------------------


def test_frozen_server_mid_run_everything_is_spooled_nothing_lost(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    """The server stops answering (SIGSTOP: it accepts, never answers) after the first 1,000
    of 20,000 lines. Capture goes on into the buffer; at exit everything not delivered is
    spooled, but for the one request that went out unanswered (reported as under way). Once
    the server is back, the next replay stores every line exactly once."""
    sink = Sink(vl_node, tmp_path / "spool")
    proc = start_stepped(script, sink.env(), total=20_000, steps=20)
    run = finish_frozen(proc, vl_node)
    assert run.rc == 0 and run.out.count("\n") == 20_000
    message = ExitMessage(run.err)
    assert message.dropped == {}, run.err
    assert message.kept >= 15_000, run.err
    assert run.elapsed < 12  # the program's own time plus the 2 s exit budget
    # Batches kept together (each file costs the exit several turns of the interpreter), in
    # files of at most KEEP_FILE_BYTES: far fewer files than batches of up to ~1,250 lines.
    sizes = [path.stat().st_size for path in sink.spool.glob("*.jsonl")]
    assert max(sizes) <= KEEP_FILE_BYTES
    assert len(sizes) < message.kept // 1_250
    got = stored_exactly(sink, 20_000, message)
    assert len(got) == 20_000  # the request under way was stored when the server woke up


@contextmanager
def throttled(pid: int, run_ms: int, period_ms: int) -> Iterator[None]:
    """Process `pid` runs `run_ms` in every `period_ms`, as a container under a CPU quota is
    throttled, while the block lasts (a minute at most)."""
    done = threading.Event()

    def cycle() -> None:
        for _ in range(60_000 // period_ms):
            if done.wait(run_ms / 1000):
                break
            try:
                os.kill(pid, signal.SIGSTOP)
                done.wait((period_ms - run_ms) / 1000)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # it has ended
                break

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)


# 1,000 lines stored, then 19,000 printed at once and the exit (the server frozen meanwhile).
QUICK_EXIT = """
import sys, vlhook
for i in range(1000):
    print('seq', i)
vlhook.flush(10)
sys.stderr.write('READY\\n'); sys.stderr.flush()
sys.stdin.readline()
for i in range(1000, 20000):
    print('seq', i)
"""


def test_frozen_server_on_a_busy_machine_nothing_dropped(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    """The exit makes entries only a few batches ahead of a delivery under way, but never
    waits past half its time to make the rest: its rate, measured in windows of a fraction of
    a ms, misses the time the process waits for the CPU. Waiting until four times that
    estimate was left, it ran out of time on a busy machine (here a tenth of a CPU, in turns
    of 10 ms: ~9,000 of 19,000 lines dropped in every run; 5,504 once on 2 busy cores)."""
    sink = Sink(vl_node, tmp_path / "spool")
    proc = start_program(script, sink.env(), QUICK_EXIT)
    with throttled(proc.pid, run_ms=10, period_ms=100):
        run = finish_frozen(proc, vl_node)
    assert run.rc == 0 and run.out.count("\n") == 20_000
    message = ExitMessage(run.err)
    assert message.dropped == {}, run.err
    assert message.kept + message.maybe == 19_001, run.err  # all but the first step; READY
    stored_exactly(sink, 20_000, message)


# The program's last act: three threads left computing as it exits.
SPINNING = """
import threading
def spin():
    while True:
        pass
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
"""


def test_frozen_server_and_threads_computing_at_exit_every_line_accounted_for(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    """Three of the program's threads compute while it exits: the sender gets the interpreter
    in turns, and waited a turn (5 ms and more) after each of its file writes. It spooled 2,000
    of 19,000 lines in the exit's time, and the exit gave up on it with no word of the rest (the
    queue was empty: "nothing left"). Now the turns are shorter while the exit waits, the
    batches go to the spool in a few files, and an exit given up on counts everything the
    sender held, its spool sealed: whatever the machine, every line is stored once, or counted."""
    sink = Sink(vl_node, tmp_path / "spool")
    proc = start_program(script, sink.env(), QUICK_EXIT + SPINNING)
    run = finish_frozen(proc, vl_node)
    assert run.rc == 0 and run.out.count("\n") == 20_000
    message = ExitMessage(run.err)
    assert message.kept + message.maybe + message.dropped_total == 19_001, run.err
    assert len(list(sink.spool.glob("*.jsonl"))) <= 4  # ~3 MB of entries
    stored_exactly(sink, 20_000, message)


# 60,000 lines, then a thread holds the interpreter in one C call (~1.5 s) while the exit makes
# entries of them: the exit is given up on in the middle of a group.
HELD_MID_EXIT = held_at_exit("for i in range(60_000):\n    print('seq', i)\n", 150_000_000)


def test_an_exit_given_up_on_mid_drain_counts_every_line(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    """The sender is given up on while it makes entries of the queue: once what it is doing
    is counted it takes no group more, starts and settles no request and does not end the
    exit, so every line is stored once, or counted (before: the group it had taken off the
    queue was in neither, or batches counted as dropped were sent and stored; 1 run in 5)."""
    sink = Sink(vl_node, tmp_path / "spool")
    run = run_python(script(HELD_MID_EXIT), sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="300"))
    assert run.rc == 0
    message = ExitMessage(run.err)  # the sender's own report, if it ended the exit meanwhile
    try:
        stored_exactly(sink, 60_000, message)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the exit said: {message.text}") from exc


# The same, stopped by SIGTERM (`docker stop`) while the threads compute.
STOPPED_WHILE_COMPUTING = (
    QUICK_EXIT
    + SPINNING.replace("daemon=True", "daemon=False")
    + """
import os, signal, time
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(60)
"""
)


def test_sigterm_while_threads_compute_every_line_accounted_for(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    """vlhook's SIGTERM handler runs the exit on the main thread while the program's threads
    hold the interpreter in turns: the process still dies of the signal, at once after the
    exit's budget, and every line is stored once or counted."""
    sink = Sink(vl_node, tmp_path / "spool")
    proc = start_program(script, sink.env(), STOPPED_WHILE_COMPUTING)
    run = finish_frozen(proc, vl_node)
    # (What Python's stdout buffer still held is lost to the signal, as without vlhook.)
    assert run.rc == -signal.SIGTERM and run.elapsed < 10
    message = ExitMessage(run.err)
    assert message.kept + message.maybe + message.dropped_total == 19_001, run.err
    stored_exactly(sink, 20_000, message)


def test_one_of_two_nodes_frozen_the_other_takes_the_batches(
    script: Any, vl_cluster: Cluster, tmp_path: Path
) -> None:
    sink = Sink(vl_cluster, tmp_path / "spool", lag=1.0)
    env = sink.env(VICTORIALOGS_URL=",".join(vl_cluster.urls))
    proc = start_stepped(script, env, total=20_000, steps=20)
    wait_ready(proc)
    frozen = vl_cluster.front[0]
    frozen.freeze()
    try:
        run = finish(proc)
    finally:
        frozen.thaw()
    assert run.rc == 0
    message = ExitMessage(run.err)
    assert message.dropped == {}, run.err
    # At most the batch stuck in the frozen node is not delivered by the healthy one.
    assert message.kept + message.maybe <= 1_100, run.err
    stored_exactly(sink, 20_000, message)
    # The request under way reaches the storage nodes once the frozen node wakes up (counted
    # by the program's lines alone: the exit's report would stand in for a line still to come).
    got = seqs(sink.entries(20_000, timeout=20, where="seq"))
    assert len(got) == len(set(got)) == 20_000


def test_a_long_outage_spools_batches_at_once_and_sheds_nothing(script: Any, sink: Sink) -> None:
    """The server is down for the whole run, which lasts several retry budgets (1 s here),
    and the buffer holds about 1,000 lines: while one batch tries again, the others go to the
    spool at once. Were they to wait their turn, the buffer would fill and shed lines the
    spool could keep. Every line is replayed later, once."""
    code = (
        "import time\n"
        "for i in range(40_000):\n"
        "    print('seq', i)\n"
        "    if i % 500 == 499:\n"
        "        time.sleep(0.05)\n"
    )
    env = sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{refused_port()}",
                   VICTORIALOGS_TIMEOUT_MS="300", VICTORIALOGS_BUFFER_BYTES="262144")  # fmt: skip
    run = run_python(script(code), env)
    assert run.rc == 0 and run.out.count("\n") == 40_000
    assert "dropped" not in run.err and "lost" not in run.err, run.err
    message = ExitMessage(run.err)
    assert message.maybe == 0 and message.dropped == {}, run.err
    assert run.elapsed < 15  # the program's ~4 s, not a retry budget per batch
    got = stored_exactly(sink, 40_000, message)
    assert len(got) == 40_000


# -- answers that say "not now", "too large", "elsewhere" ----------------------------------------


PLAIN = "for i in range({total}):\n    print('seq', i)\n"


def test_a_request_holds_at_most_batch_lines_entries(script: Any, sink: Sink) -> None:
    """Captures are made into entries in groups of up to 256; a group fills a batch up to
    VICTORIALOGS_BATCH_LINES and the next batch takes the rest (it made batches of 256)."""
    with FaultProxy(sink.url, []) as proxy:
        run = run_python(
            script(PLAIN.format(total=2_000)),
            sink.env(VICTORIALOGS_URL=proxy.url, VICTORIALOGS_BATCH_LINES="50"),
        )
    assert run.rc == 0
    sizes = [len(request.lines()) for request in proxy.requests]
    assert max(sizes) == 50 and sum(sizes) == 2_000
    assert len(set(seqs(sink.settle(2_000)))) == 2_000


def test_503_with_retry_after_30_for_the_whole_run_is_spooled_without_waiting(
    script: Any, sink: Sink
) -> None:
    with FaultProxy(sink.url, ["status:503:30"] * 10_000) as proxy:
        run = run_python(script(PLAIN.format(total=2_000)), sink.env(VICTORIALOGS_URL=proxy.url))
    assert run.rc == 0
    message = ExitMessage(run.err)
    assert (message.kept, message.maybe, message.dropped) == (2_000, 0, {}), run.err
    assert run.elapsed < 5  # a 30 s Retry-After is longer than the exit budget: spooled now
    assert len(stored_exactly(sink, 2_000, message)) == 2_000


def test_a_proxy_refusing_bodies_over_8_kib_gets_smaller_ones(script: Any, sink: Sink) -> None:
    with FaultProxy(sink.url, [], max_body=8192) as proxy:
        run = run_python(script(PLAIN.format(total=5_000)), sink.env(VICTORIALOGS_URL=proxy.url))
        refused = proxy.faults().count("status:413")
    assert run.rc == 0 and "at exit" not in run.err, run.err
    assert refused >= 1
    got = seqs(sink.settle(5_000))
    assert sorted(got) == list(range(5_000))


def test_a_replayed_piece_split_by_413_and_then_cut_short_is_never_stored_twice(
    script: Any, sink: Sink
) -> None:
    """A replay through a proxy that refuses large bodies: the piece is halved, some halves
    are stored, then the server answers 503 until the retries give up. What was stored must
    not be replayed again, and the replay must say how much it stored."""
    from victorialogs import free_port

    total = 3_000
    run = run_python(script(PLAIN.format(total=total)),
                     sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{free_port()}"))  # fmt: skip
    assert ExitMessage(run.err).kept == total, run.err
    plan = ["pass"] * 3 + ["status:503"] * 1_000  # a few halves pass, then the outage
    with FaultProxy(sink.url, plan, max_body=4_000) as proxy:
        env = {**base_env(), **sink.env(), "PYTHONPATH": str(SRC),
               "VICTORIALOGS_URL": proxy.url, "VICTORIALOGS_TIMEOUT_MS": "300"}  # fmt: skip
        cut = subprocess.run([sys.executable, "-m", "vlhook", "spool", "replay"], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        passed = proxy.faults().count("pass")
    assert passed == 3 and cut.returncode != 0, cut.stdout + cut.stderr
    stored_first = len(seqs(sink.settle(1, timeout=30)))
    assert f"replayed {stored_first} entries" in cut.stdout + cut.stderr, (stored_first, cut)
    result = replay(sink)
    assert result.returncode == 0, result.stdout + result.stderr
    got = seqs(sink.settle(total, timeout=30))
    assert len(got) == len(set(got)), "a line was stored twice"
    assert sorted(got) == list(range(total))


@pytest.mark.parametrize("code", ["307", "308"])
def test_temporary_and_permanent_307_308_redirects_are_followed(
    script: Any, sink: Sink, code: str
) -> None:
    base = sink.url.rstrip("/")
    with FaultProxy(sink.url, [f"redirect:{code}:{base}"] * 10_000) as proxy:
        run = run_python(script(PLAIN.format(total=3_000)), sink.env(VICTORIALOGS_URL=proxy.url))
    assert run.rc == 0 and "at exit" not in run.err, run.err
    assert sorted(seqs(sink.settle(3_000))) == list(range(3_000))


def test_301_is_a_configuration_error_the_batches_are_kept_and_the_location_named(
    script: Any, sink: Sink
) -> None:
    base = sink.url.rstrip("/")
    with FaultProxy(sink.url, [f"redirect:301:{base}"] * 10_000) as proxy:
        run = run_python(script(PLAIN.format(total=1_000)), sink.env(VICTORIALOGS_URL=proxy.url))
    assert run.rc == 0
    assert f"redirects (HTTP 301) to {base}/insert/jsonline" in run.err, run.err
    assert "set VICTORIALOGS_URL" in run.err
    message = ExitMessage(run.err)
    assert (message.kept, message.dropped) == (1_000, {}), run.err
    assert len(stored_exactly(sink, 1_000, message)) == 1_000


def test_an_answer_dripping_byte_by_byte_is_bounded_by_the_request_timeout(
    script: Any, sink: Sink
) -> None:
    """The whole answer would take ~4 s; VICTORIALOGS_TIMEOUT_MS=1000 bounds the request as a
    whole. The batch went out whole, so the server had it: the retry stores it a second time
    (at-least-once, as documented), and every other line once."""
    program = "import vlhook\nfor i in range(100):\n    print('seq', i)\nvlhook.flush(30)\n"
    with FaultProxy(sink.url, ["drip:0.06"]) as proxy:
        run = run_python(script(program), sink.env(VICTORIALOGS_URL=proxy.url,
                                                   VICTORIALOGS_TIMEOUT_MS="1000"))  # fmt: skip
        times = [t for t, _ in proxy.log]
    assert run.rc == 0 and "at exit" not in run.err, run.err
    assert len(times) >= 2 and 0.9 < times[1] - times[0] < 2.0  # ended at 1 s, then retried
    got = seqs(sink.settle(200))
    assert sorted(set(got)) == list(range(100)) and len(got) == 200


def test_a_4xx_at_exit_is_said_to_be_a_rejection_not_a_timeout(script: Any, sink: Sink) -> None:
    with FaultProxy(sink.url, ["status:400"] * 100) as proxy:
        run = run_python(script(PLAIN.format(total=50)), sink.env(VICTORIALOGS_URL=proxy.url))
    message = ExitMessage(run.err)
    assert message.dropped == {"rejected by the server (HTTP 400)": 50}, run.err
    assert "EXIT_TIMEOUT" not in run.err and "dropped earlier" not in run.err


def test_connection_refused_at_exit_is_kept_not_reported_as_under_way(
    script: Any, sink: Sink
) -> None:
    from victorialogs import free_port

    run = run_python(script(PLAIN.format(total=50)),
                     sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{free_port()}"))  # fmt: skip
    message = ExitMessage(run.err)
    assert (message.kept, message.maybe, message.dropped) == (50, 0, {}), run.err
    assert "under way" not in run.err and "Connection refused" in run.err


# -- the spool itself failing -------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A 64 KiB file system for the spool (tmpfs; needs root)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_while_spooling_drops_with_its_own_reason_and_leaves_no_half_files(
    script: Any, sink: Sink, tiny_disk: Path
) -> None:
    from victorialogs import free_port

    sink.spool = tiny_disk
    total = 8_000  # ~1 MB of entries: far more than 64 KiB
    env = sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{free_port()}",
                   VICTORIALOGS_COMPRESSION="none")  # fmt: skip
    run = run_python(script(PLAIN.format(total=total)), env)
    assert run.rc == 0
    message = ExitMessage(run.err)
    assert set(message.dropped) == {"the disk of the spool is full"}, run.err
    assert message.kept + message.dropped_total == total, run.err
    assert not [p for p in tiny_disk.iterdir() if p.name.startswith(".tmp-")]
    spooled = replay(sink)
    assert spooled.returncode == 0, spooled.stdout
    got = seqs(sink.settle(message.kept, timeout=30))
    assert len(got) == len(set(got)) == message.kept


def test_the_spool_cap_evicts_the_oldest_and_the_message_counts_what_is_left(
    script: Any, sink: Sink
) -> None:
    from victorialogs import free_port

    total = 5_000
    env = sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{free_port()}",
                   VICTORIALOGS_SPOOL_MAX_BYTES="200000",
                   VICTORIALOGS_BATCH_LINES="500")  # fmt: skip
    run = run_python(script(PLAIN.format(total=total)), env)
    message = ExitMessage(run.err)
    in_files = sum(p.read_bytes().count(b"\n") for p in sink.spool.glob("*.jsonl"))
    # vlhook's own reports of what the cap dropped are spooled too, apart from the program's.
    reports = sum(p.read_bytes().count(b'"stream":"vlhook"') for p in sink.spool.glob("*.jsonl"))
    assert message.kept == in_files - reports > 0, run.err
    evicted = sum(message.dropped.values()) + message.dropped_before.get("spool_full", 0)
    assert message.kept + evicted == total, run.err


def test_batches_kept_together_fill_files_of_at_most_an_eighth_of_the_cap(
    script: Any, sink: Sink
) -> None:
    """Batches that cannot be sent are kept several to a file, each file at most an eighth of
    the spool's cap: the cap then evicts the oldest piecemeal (a file over the cap would not
    be kept at all)."""
    from victorialogs import free_port

    total, cap = 5_000, 200_000
    env = sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{free_port()}",
                   VICTORIALOGS_SPOOL_MAX_BYTES=str(cap),
                   VICTORIALOGS_BATCH_LINES="50")  # fmt: skip
    run = run_python(script(PLAIN.format(total=total)), env)
    message = ExitMessage(run.err)
    files = list(sink.spool.glob("*.jsonl"))
    assert files, run.err
    assert max(path.stat().st_size for path in files) <= cap // 8
    assert max(path.read_bytes().count(b"\n") for path in files) > 50  # batches were joined
    reports = sum(p.read_bytes().count(b'"stream":"vlhook"') for p in files)
    assert message.kept == sum(p.read_bytes().count(b"\n") for p in files) - reports > 0
    evicted = sum(message.dropped.values()) + message.dropped_before.get("spool_full", 0)
    assert message.kept + evicted == total, run.err


# -- replay ---------------------------------------------------------------------------------------


def _spool_file(folder: Path, lines: int, tag: str, name: str = "") -> Path:
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / (name or f"{time.time_ns():020d}-1-0-{lines}.jsonl")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with open(path, "w") as out:
        for i in range(lines):
            out.write(
                f'{{"_time":"{now}","_msg":"seq {i}","test_id":"{tag}","pad":"{"x" * 60}"}}\n'
            )
    os.chmod(path, 0o600)
    return path


def test_a_large_spool_file_is_replayed_in_bounded_memory(sink: Sink) -> None:
    lines = 300_000  # ~33 MB
    _spool_file(sink.spool, lines, sink.test_id)
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'vlhook', 'spool', 'replay'],"
        " capture_output=True, text=True)\n"
        "print(r.stdout.strip())\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = {**base_env(), **sink.env(), "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=180)  # fmt: skip
    assert f"replayed {lines} entries" in result.stdout, result.stdout + result.stderr
    rss_kib = int(result.stdout.rsplit("RSS ", 1)[1])
    assert rss_kib < 80_000, f"peak RSS {rss_kib} KiB: the file was read whole"
    assert len(set(seqs(sink.entries(lines, timeout=60)))) == lines


def test_a_claim_held_by_a_live_process_is_respected_and_a_dead_ones_is_not(
    script: Any, sink: Sink
) -> None:
    """Claims are flock locks held by the claiming process: another process skips the file;
    when that process dies (even by SIGKILL, even if its pid is reused) the lock is gone."""
    _spool_file(sink.spool, 10, sink.test_id)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, glob, os, sys, time\n"
        f"fd = os.open(glob.glob({str(sink.spool)!r} + '/*.jsonl')[0], os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        run_python(script("print('while held')\n"), sink.env())
        assert seqs(sink.settle(1)) == []  # not replayed: claimed by a live process
    finally:
        holder.kill()
        holder.wait()
    run_python(script("print('after')\n"), sink.env())
    assert sorted(seqs(sink.settle(10 + 2))) == list(range(10))
    # A claim left by an earlier version (a pid in the name: pid 1 is always alive in a
    # container) is replayed too.
    _spool_file(sink.spool, 5, sink.test_id, name=f"{time.time_ns():020d}-9-0.jsonl.sending-1")
    run_python(script("print('old claim')\n"), sink.env())
    assert len(seqs(sink.settle(10 + 5 + 3))) == 15
    assert not list(sink.spool.iterdir())


def test_exit_during_a_replay_to_a_frozen_server_leaves_the_rest_and_sends_nothing_twice(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    sink = Sink(vl_node, tmp_path / "spool")
    lines = 40_000  # ~4 MB: several pieces
    _spool_file(sink.spool, lines, sink.test_id)
    vl_node.freeze()
    try:
        # The replay starts with the sender; the line waits its turn, then the exit comes.
        program = "import time\nprint('during')\ntime.sleep(0.5)\n"
        run = run_python(script(program), sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="800"))
    finally:
        vl_node.thaw()
    assert run.rc == 0
    assert "replayed entries were in a request with no answer at exit" in run.err, run.err
    left = list(sink.spool.glob("*.jsonl"))
    assert left and list(sink.spool.glob("*.sent"))  # the rest, and how far it got
    result = replay(sink)
    assert result.returncode == 0, result.stdout
    got = seqs(sink.settle(lines, timeout=60))
    assert len(got) == len(set(got)) == lines
    assert not list(sink.spool.iterdir())


def test_a_corrupt_spool_file_is_counted_not_sent(sink: Sink) -> None:
    path = _spool_file(sink.spool, 3, sink.test_id)
    with open(path, "a") as out:
        out.write('not json\n[1, 2]\n{"broken": \n')
    result = replay(sink)
    assert "replayed 3 entries, 3 rejected" in result.stdout, result.stdout
    assert "are not JSON objects" in result.stderr + result.stdout
    assert sorted(seqs(sink.settle(3))) == [0, 1, 2]


# -- threads still writing at exit -----------------------------------------------------------------


def test_a_daemon_threads_last_lines_are_kept_not_lost(script: Any, sink: Sink) -> None:
    program = (
        "import threading, time\n"
        "def spin():\n"
        "    i = 0\n"
        "    while True:\n"
        "        print('seq', i)\n"
        "        i += 1\n"
        "        time.sleep(0.0005)\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "time.sleep(0.3)\n"
    )
    run = run_python(script(program), sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="500"))
    assert run.rc == 0
    printed = seqs([{"_msg": x} for x in run.out.splitlines()])
    result = replay(sink)
    assert result.returncode == 0, result.stdout
    got = seqs(sink.settle(len(printed) - 1, timeout=30))
    assert len(got) == len(set(got))
    # Every line the thread printed is stored; at most the one cut mid-write by the end of
    # the interpreter (printed but never handed over) is missing.
    assert len(printed) - 1 <= len(got) <= len(printed)
    assert set(got) <= set(printed)


def test_the_counters_add_up(script: Any, sink: Sink) -> None:
    """Rejections, retries, 413 splits, a spooled batch: after a flush, every captured entry is
    shipped, spooled or dropped, and the counters say so."""
    program = (
        "import json, sys, vlhook\n"
        "for step in range(4):\n"
        "    for i in range(step * 500, (step + 1) * 500):\n"
        "        print('seq', i)\n"
        "    vlhook.flush(1.5)\n"
        "sys.stderr.write('STATS ' + json.dumps(vlhook.stats()) + '\\n')\n"
    )
    plan = ["status:400", "status:503:0", "pass", "status:503:30"]
    with FaultProxy(sink.url, plan, max_body=2048) as proxy:
        run = run_python(script(program), sink.env(VICTORIALOGS_URL=proxy.url))
    assert run.rc == 0
    stats = json.loads(run.err.split("STATS ", 1)[1].splitlines()[0])
    assert stats["captured"] == 2_000
    assert stats["in_flight"] == 0
    assert stats["captured"] == stats["shipped"] + stats["spooled"] + stats["dropped_total"]
    assert stats["dropped"].get("rejected_http_400", 0) > 0
    assert stats["batches_split"] > 0 and stats["retries"] > 0


def test_no_thread_can_be_started_for_delivery_the_sender_delivers_itself(
    script: Any, sink: Sink
) -> None:
    """At interpreter shutdown Python 3.12 refuses new threads: a delivery worker first needed
    at exit cannot start. Here every thread after the sender's is refused: each batch is then
    delivered by the sender itself, and none is reported as under way when it never left."""
    program = (
        "import sys\n"
        "threads = sys.modules['vlhook._sync']  # vlhook's own binding: a patch of _thread is not\n"
        "start, calls = threads.start_new_thread, []\n"
        "def refuse(*args, **kwargs):\n"
        "    calls.append(1)\n"
        "    if len(calls) > 1:\n"
        "        if len(calls) == 2:\n"
        "            sys.__stderr__.write('refused\\n')\n"
        '        raise RuntimeError("can\'t create new thread at interpreter shutdown")\n'
        "    return start(*args, **kwargs)\n"
        "threads.start_new_thread = refuse\n"
        "for i in range(3000):\n"
        "    print('seq', i)\n"
    )
    run = run_python(script(program), sink.env())
    assert run.rc == 0 and "at exit" not in run.err, run.err
    assert run.err == "refused\n"  # a worker was refused: the path is taken
    got = seqs(sink.settle(3000))
    assert sorted(got) == list(range(3000))


def test_a_file_url_in_the_spool_folder_is_not_taken_for_a_spool_file(
    script: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    out = spool / "out.jsonl"
    env = {"VICTORIALOGS_URL": f"file://{out}", "VICTORIALOGS_SPOOL_DIR": str(spool)}
    for n in range(2):  # the second run would replay (and remove) it if it took it for its own
        run_python(script(f"print('run {n}')\n"), env, allow_internal_errors=False)
    assert [json.loads(x)["_msg"] for x in out.read_text().splitlines()] == ["run 0", "run 1"]


#: The start of a program that looks at its own descriptors.
OPEN_PATHS = """\
import os, sys, time
def open_paths():  # what this process's descriptors refer to
    for n in os.listdir("/proc/self/fd"):
        try:
            yield os.readlink(f"/proc/self/fd/{n}")
        except OSError:  # closed since it was listed (the listing's own descriptor)
            pass
"""

CLOSES_THE_SPOOL = (
    OPEN_PATHS
    + """\
spool, mine = sys.argv[1], sys.argv[2]
def spool_open():
    return os.path.realpath(spool) in open_paths()
for i in range(100):
    print("seq", i)
for _ in range(200):  # bounded: the batch is kept once the answer says "not for 30 s"
    if spool_open():
        break
    time.sleep(0.05)
print("spool open:", spool_open(), file=sys.stderr)
os.closerange(3, 1024)  # as a daemon does: the spool's directory is closed
dirs = [os.open(mine, os.O_RDONLY | os.O_DIRECTORY) for _ in range(20)]  # its number
for i in range(100, 200):
    print("seq", i)
"""
)


def test_a_program_that_closes_every_descriptor_keeps_its_directories(
    script: Any, sink: Sink, tmp_path: Path
) -> None:
    """The spool's directory is held open once something is spooled. A daemon's
    `os.closerange(3, ...)` closes it and the program's next directory takes its number:
    before, vlhook's next spool files were written into the program's directory. Now the
    descriptor is checked before each use and the spool opened again."""
    mine = tmp_path / "mine"
    mine.mkdir()
    with FaultProxy(sink.url, ["status:503:30"] * 10_000) as proxy:
        run = run_python(script(CLOSES_THE_SPOOL), sink.env(VICTORIALOGS_URL=proxy.url),
                         args=(str(sink.spool), str(mine)))  # fmt: skip
    assert run.rc == 0 and run.out.count("\n") == 200
    assert "spool open: True" in run.err, run.err
    assert list(mine.iterdir()) == []
    message = ExitMessage(run.err)
    assert (message.maybe, message.dropped) == (0, {}), run.err  # the first half spooled before
    assert sorted(stored_exactly(sink, 200, message)) == list(range(200))


CLOSES_A_REPLAYED_FILE = (
    OPEN_PATHS
    + """\
spool, mine = sys.argv[1], sys.argv[2]
print("start")  # the sender starts with the first line, and replays the spool
def claimed():  # a spool file open in this process: being replayed
    return any(path.startswith(os.path.realpath(spool) + "/") for path in open_paths())
def under_way():  # a piece delivered (its progress recorded): the sender's imports are done
    return claimed() and any(name.endswith(".sent") for name in os.listdir(spool))
for _ in range(500):
    if under_way():
        break
    time.sleep(0.01)
print("claimed:", under_way(), file=sys.stderr)
# As a daemon does: the file being replayed is closed. (Not while a thread loads a C
# extension: the dynamic loader's own descriptor closed under it crashes any program.)
os.closerange(3, 1024)
files = [open(os.path.join(mine, f"{i}.txt"), "w+") for i in range(20)]  # its number
for i, out in enumerate(files):
    out.write(f"the program's file {i}\\n")
    out.flush()
    out.truncate(8 << 20)  # larger than the spool file (sparse: no room taken)
time.sleep(1.5)  # replay goes on meanwhile
for i, out in enumerate(files):
    out.seek(0)
    assert out.readline() == f"the program's file {i}\\n", i
    out.seek(0)
    out.truncate()
    out.write("still open\\n")
    out.close()
print("done")
"""
)


def test_a_program_that_closes_every_descriptor_while_the_spool_is_replayed(
    script: Any, sink: Sink, tmp_path: Path
) -> None:
    """A spool file being replayed is held open. A daemon's `os.closerange(3, ...)` closes
    it, and the program's next file takes its number: vlhook must neither read that file as
    spool data nor close it. The replay takes the spool file again from its recorded
    progress; every spooled line is stored, none lost."""
    lines = 60_000  # several pieces, each request held 0.3 s on its way
    _spool_file(sink.spool, lines, sink.test_id)
    mine = tmp_path / "mine"
    mine.mkdir()
    with FaultProxy(sink.url, ["delay:0.3"] * 1_000) as proxy:
        run = run_python(script(CLOSES_A_REPLAYED_FILE), sink.env(VICTORIALOGS_URL=proxy.url),
                         args=(str(sink.spool), str(mine)))  # fmt: skip
    assert (run.rc, run.out) == (0, "start\ndone\n"), run.err
    assert "claimed: True" in run.err, run.err
    assert "not JSON" not in run.err  # the program's file was never read as spool data
    for i in range(20):
        assert (mine / f"{i}.txt").read_text() == "still open\n"
    result = replay(sink)
    assert result.returncode == 0, result.stdout + result.stderr
    got = seqs(sink.settle(lines, timeout=60))
    assert sorted(got) == list(range(lines)), run.err


CLOSES_AGAIN_AND_AGAIN = (
    OPEN_PATHS
    + """\
spool, mine, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("start")
def replaying():  # a spool file claimed, a piece of it delivered, and more left
    return any(name.endswith(".sent") for name in os.listdir(spool))
def under_way():  # and one of its files open
    return replaying() and \\
        any(path.startswith(os.path.realpath(spool) + "/") for path in open_paths())
for _ in range(500):
    if under_way():
        break
    time.sleep(0.01)
print("claimed:", under_way(), file=sys.stderr)
met = 0
for r in range(rounds):  # vlhook's descriptors closed at every moment of its work
    if not replaying():
        break  # the replay is over: the rounds are there to meet it
    met += 1
    os.closerange(3, 1024)
    files = [open(os.path.join(mine, f"{i}.txt"), "w+") for i in range(20)]
    for i, out in enumerate(files):
        out.write(f"the program's file {r}-{i}\\n")
        out.flush()
    for i, out in enumerate(files):
        out.seek(0)
        assert out.read() == f"the program's file {r}-{i}\\n", (r, i)
        out.close()
print("rounds while replaying:", met, file=sys.stderr)
print("done")
"""
)


def test_a_program_that_closes_every_descriptor_again_and_again_while_the_spool_is_replayed(
    script: Any, sink: Sink, tmp_path: Path
) -> None:
    """Hundreds of `os.closerange(3, ...)` while replay runs, each followed by files of the
    program's: vlhook's descriptors are closed between any two of its calls. Before, the
    program's files were closed under it (the spool's files and its progress had their
    numbers), and a replayed file's progress was lost (sent again from its start). Now no
    file of the program's is touched and no line is lost. A request whose connection the
    program closed after it left is sent again, as for any cut connection (the server may
    have stored it)."""
    lines = 80_000  # ~9 pieces, replayed while the program works
    _spool_file(sink.spool, lines, sink.test_id)
    mine = tmp_path / "mine"
    mine.mkdir()
    with FaultProxy(sink.url, ["delay:0.001"] * 10_000) as proxy:
        env = sink.env(VICTORIALOGS_URL=proxy.url, VICTORIALOGS_DEBUG="1")
        run = run_python(script(CLOSES_AGAIN_AND_AGAIN), env,
                         args=(str(sink.spool), str(mine), "600"))  # fmt: skip
    assert (run.rc, run.out) == (0, "start\ndone\n"), run.err
    assert "claimed: True" in run.err and "not JSON" not in run.err, run.err
    # Every round met the replay under way (a round looks first), and there were hundreds.
    met = int(re.findall(r"rounds while replaying: (\d+)", run.err)[0])
    assert met >= 200, run.err
    result = replay(sink)  # what the program's exit left, if anything
    assert result.returncode == 0, result.stdout + result.stderr
    got = seqs(sink.settle(lines, timeout=60))
    assert set(got) == set(range(lines)), run.err  # at least once: see the docstring
