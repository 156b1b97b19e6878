"""Process life: signals with and without the program's handlers, pre-fork workers,
multiprocessing, os._exit, and TLS errors that say what is wrong."""

from __future__ import annotations

import _thread
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DROPIN, SRC, as_without_vlhook, base_env, messages, refused_port, run_python
from victorialogs import VictoriaLogs
from vlhook import _sender as sender_module
from vlhook import _sync
from vlhook._captures import text
from vlhook._config import load
from vlhook._sender import EXIT_GRACE_S, Sender
from vlhook._stats import Stats


def _start(path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = base_env()
    full.update(env)
    full["PYTHONPATH"] = str(DROPIN)
    return subprocess.Popen(
        [sys.executable, str(path)], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _signal_when_ready(proc: subprocess.Popen[bytes], sig: int) -> tuple[int, bytes, bytes]:
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"  # printed with flush=True
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, b"ready\n" + out, err


SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(20)\n"


@pytest.mark.parametrize("hooked", [False, True], ids=["bare", "vlhook"])
def test_sigint_without_handler_behaves_as_without(script: Any, sink: Any, hooked: bool) -> None:
    env = sink.env() if hooked else {}
    proc = _start(script(SLEEPER), env) if hooked else subprocess.Popen(
        [sys.executable, str(script(SLEEPER))], env=base_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    rc, _out, err = _signal_when_ready(proc, signal.SIGINT)
    assert rc == -signal.SIGINT and b"KeyboardInterrupt" in err  # dies of the signal, as bare
    if hooked:
        rows = sink.settle(2)
        assert messages(rows)[0] == "ready"
        assert [r.get("exception.type") for r in rows][1] == "KeyboardInterrupt"


def _bare_and_hooked(
    args: list[str], sink: Any, cwd: Path, stdin: bytes = b""
) -> list[tuple[int, bytes, bytes]]:
    """The same command without vlhook, then with the drop-in: (status, stdout, stderr) each."""
    runs = []
    for env in ({}, {**sink.env(), "PYTHONPATH": str(DROPIN)}):
        full = base_env()
        full.pop("PYTHONSTARTUP", None)
        full.update(env)
        proc = subprocess.run([sys.executable, *args], input=stdin, capture_output=True,
                              env=full, cwd=str(cwd), timeout=60)  # fmt: skip
        runs.append((proc.returncode, proc.stdout, proc.stderr))
    return runs


# An unhandled KeyboardInterrupt ends the process with SIGINT, after finalization (atexit, the
# files' buffers written, `__del__` run), as CPython does it. Before, vlhook killed the process
# with SIGINT at its own atexit step: finalization was skipped (the file below stayed empty,
# `__del__` never ran), a Ctrl-C the program had handled (passed to sys.excepthook, shown by a
# console) still killed it, and under the program's own sys.excepthook the status became 1.
FINALIZED = """
import os, sys
out = open(sys.argv[1], "w")
out.write("written, never closed\\n")
class Finalized:
    def __del__(self):
        os.write(1, b"__del__ ran\\n")
kept = Finalized()
print("raising")
raise KeyboardInterrupt
"""
HANDLED = """
import sys
try:
    raise KeyboardInterrupt
except KeyboardInterrupt:
    sys.excepthook(*sys.exc_info())
print("handled")
"""
OWN_HOOK = """
import sys
def hook(*exc_info):
    sys.__excepthook__(*exc_info)
sys.excepthook = hook
raise KeyboardInterrupt
"""
CONSOLE = "import code\ncode.interact(banner='', exitmsg='')\n"
INTERRUPTED_CASES = {  # name: (program, arguments after the program, stdin, status)
    "script": ("raise KeyboardInterrupt\n", [], b"", -signal.SIGINT),
    "finalized": (FINALIZED, ["out.txt"], b"", -signal.SIGINT),
    "handled": (HANDLED, [], b"", 0),
    "own-hook": (OWN_HOOK, [], b"", -signal.SIGINT),
    "console": (CONSOLE, [], b"raise KeyboardInterrupt\nprint('after')\n", 0),
    "console-last": (CONSOLE, [], b"raise KeyboardInterrupt\n", 0),
}


@pytest.mark.parametrize("case", sorted(INTERRUPTED_CASES))
def test_a_keyboard_interrupt_ends_the_process_as_without_vlhook(
    script: Any, sink: Any, case: str
) -> None:
    program, args, stdin, status = INTERRUPTED_CASES[case]
    path = script(program)
    bare, hooked = _bare_and_hooked([str(path), *args], sink, path.parent, stdin)
    assert bare[0] == status, bare
    assert hooked == bare
    if case == "finalized":
        assert b"__del__ ran\n" in hooked[1]
        assert (path.parent / "out.txt").read_text() == "written, never closed\n"


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["-c", "raise KeyboardInterrupt"], b""),
        (["-m", "app"], b""),
        (["-i", "-c", "raise KeyboardInterrupt"], b"print(6 * 7)\n"),  # typed after: status 0
        (["-i"], b"raise KeyboardInterrupt\n"),  # the last statement typed: SIGINT
        (["-i"], b"raise KeyboardInterrupt\nx = 1\n"),
    ],
    ids=["-c", "-m", "-i then a statement", "-i last statement", "-i statement after"],
)
def test_a_keyboard_interrupt_at_the_top_level_ends_the_process_as_without_vlhook(
    script: Any, sink: Any, args: list[str], stdin: bytes
) -> None:
    path = script("raise KeyboardInterrupt\n")
    bare, hooked = _bare_and_hooked(args, sink, path.parent, stdin)
    assert hooked == bare


# code.InteractiveConsole shows a traceback through its own write() when sys.excepthook is
# sys.__excepthook__, and through the hook (with one frame more) otherwise: vlhook's hook is
# both, as Python's was.
CONSOLE_WRITE = """
import code, sys
print(sys.excepthook is sys.__excepthook__)
class Console(code.InteractiveConsole):
    def write(self, data):
        sys.stdout.write("[console] " + data)
console = Console()
console.push("1/0")
console.push("def f(:")
"""


def test_interactive_consoles_show_tracebacks_as_without_vlhook(script: Any, sink: Any) -> None:
    path = script(CONSOLE_WRITE)
    bare, hooked = _bare_and_hooked([str(path)], sink, path.parent)
    assert bare[1].startswith(b"True\n[console] Traceback") and hooked == bare
    bare, hooked = _bare_and_hooked(["-m", "code"], sink, path.parent, b"1/0\n")
    assert hooked[1:] == bare[1:] and hooked[0] == bare[0] == 0


@pytest.mark.skipif(sys.version_info < (3, 10), reason="threading.__excepthook__ since 3.10")
def test_a_program_that_restores_threadings_own_hook_gets_vlhooks_as_sys_hook(
    script: Any, sink: Any
) -> None:
    # `threading.excepthook is threading.__excepthook__` held without vlhook, not with it;
    # a program that "restored the default" had a thread's traceback stored as two lines (an
    # INFO header and the traceback), without the `thread` field.
    path = script(
        "import threading\n"
        "print(threading.excepthook is threading.__excepthook__)\n"
        "threading.excepthook = threading.__excepthook__\n"
        "worker = threading.Thread(target=lambda: 1 / 0, name='w3')\n"
        "worker.start(); worker.join()\n"
    )
    _, hooked = as_without_vlhook(path, sink.env())
    assert hooked.out == "True\n"
    rows = sink.settle(2)
    assert len(rows) == 2 and [row["level"] for row in rows] == ["INFO", "ERROR"]
    assert rows[1]["thread"] == "w3" and rows[1]["exception.type"] == "ZeroDivisionError"


# The program's SIGINT handler prints and exits. The signal is made to come while vlhook starts
# its sender on the first capture, with every signal blocked on the program's thread: Python
# runs the handler where that thread unblocks them, inside the start. LATE: the sender thread
# runs only once the exit has begun.
SIGNAL_IN_START = """
import os, signal, sys, time
threads = sys.modules["vlhook._sync"]  # vlhook's own binding: a patch of _thread is not
LATE = {late}
def stop(signum, frame):
    print("stopping cleanly")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
real = threads.start_new_thread
def start(run, args, *rest):
    threads.start_new_thread = real  # once
    os.kill(os.getpid(), signal.SIGINT)
    def later(*a):
        time.sleep(0.5)
        run(*a)
    return real(later if LATE else run, args, *rest)
threads.start_new_thread = start
print("ready", flush=True)
time.sleep(20)
"""


@pytest.mark.parametrize("late", [False, True], ids=["thread-first", "exit-first"])
def test_a_handler_that_exits_during_the_senders_start_loses_no_line(
    script: Any, sink: Any, late: bool
) -> None:
    """Before: the line being captured was lost with the handler's exception, and a thread
    started but not yet recorded could run beside an exit that did its work itself."""
    run = run_python(script(SIGNAL_IN_START.format(late=late)), sink.env(), timeout=20)
    assert (run.rc, run.out, run.err) == (0, "ready\nstopping cleanly\n", ""), run.err
    rows = sink.settle(2)
    assert sorted(messages(rows)) == ["ready", "stopping cleanly"]


def idle_sender() -> Sender:
    """A sender of this process's own, nothing started: the tests below take its steps."""
    return Sender(load({"VICTORIALOGS_URL": "http://127.0.0.1:9"}), Stats())


def test_an_exit_begun_in_the_middle_of_another_wakes_the_sender_and_a_later_one_waits_not(
    tmp_path: Path,
) -> None:
    """A second shutdown() on the same thread, right after the first made its request and
    before it woke the sender, found the request and waited for a sender still asleep (here
    for a minute) until the deadline and its grace. A shutdown() after the exit is over waited
    the grace (the first waiter had taken the flag)."""
    out = tmp_path / "entries.jsonl"
    config = load({"VICTORIALOGS_URL": f"file://{out}", "VICTORIALOGS_FLUSH_INTERVAL_MS": "60000"})
    sender = Sender(config, Stats())
    sender.put(text(1, "the last line\n", time.time_ns(), _thread.get_ident(), None))
    reports, again = [], [True]
    let_go = sender._let_spare_go

    def let_go_then_exit_again() -> None:
        let_go()
        if again:
            again.pop()
            reports.append(sender.shutdown(time.monotonic() + 5))

    sender._let_spare_go = let_go_then_exit_again  # type: ignore[method-assign]
    start = time.monotonic()
    report = sender.shutdown(time.monotonic() + 5)
    assert time.monotonic() - start < 2.0
    assert reports == [report] and report.delivered == 1
    assert [json.loads(line)["_msg"] for line in out.read_text().splitlines()] == ["the last line"]
    start = time.monotonic()
    assert sender.shutdown(time.monotonic() + 5) is report
    assert time.monotonic() - start < EXIT_GRACE_S / 2


def test_a_sender_thread_that_runs_once_the_exit_took_its_work_ends_at_once() -> None:
    """The exit claims the sender's work for its own thread when no sender thread has
    registered itself; one that was started all the same (see above) then stands aside."""
    sender = idle_sender()
    assert sender._claim()  # the exit does the work on this thread
    ended: list[bool] = []

    def run() -> None:
        sender._run()
        ended.append(True)

    _thread.start_new_thread(run, ())
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended and sender._thread == _thread.get_ident()
    assert sender.assembler is None  # it loaded nothing, took nothing
    assert not sender._claim()  # and the work stays claimed


def test_a_start_cut_short_before_the_thread_keeps_the_capture_and_starts_one_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler's exception before the thread was started: the capture is still kept, and
    a thread is started (here at once, by the same capture), not never."""
    sender = idle_sender()
    calls: list[Any] = []

    def start(run: Any, *args: Any) -> int:
        calls.append(run)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as a handler of the program's would, before the start
        return 12345  # started (a stand-in: no thread runs here)

    monkeypatch.setattr(sender_module, "start_thread", start)
    with pytest.raises(KeyboardInterrupt):
        sender.put(text(0, "first\n", time.time_ns(), 1, None))
    assert len(calls) == 2 and sender._thread == 12345
    assert [item.data for item in sender.buffer.items] == ["first\n"]
    assert sender.buffer.intercept is None


def test_a_start_cut_short_after_the_thread_registered_makes_no_second_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cut short by a handler after its thread had registered itself: the capture that tries
    again finds it there, and captures go straight to the buffer from then on."""
    sender = idle_sender()
    calls: list[Any] = []

    def start(run: Any, *args: Any) -> int:
        calls.append(run)
        sender._thread = 12345  # the thread ran and registered itself (_run)
        raise KeyboardInterrupt  # then the handler raised where the mask is put back

    monkeypatch.setattr(sender_module, "start_thread", start)
    with pytest.raises(KeyboardInterrupt):
        sender.put(text(0, "first\n", time.time_ns(), 1, None))
    sender.put(text(0, "second\n", time.time_ns(), 1, None))
    assert len(calls) == 1 and sender.buffer.intercept is None
    assert [item.data for item in sender.buffer.items] == ["first\n", "second\n"]


class RaisingMask:
    """Stands in for `_signal`: each pthread_sigmask call sets the mask it is asked for and
    then, at the call numbered `raise_at`, raises as a handler of the program's would."""

    SIG_BLOCK, SIG_SETMASK = signal.SIG_BLOCK, signal.SIG_SETMASK

    def __init__(self, raise_at: int) -> None:
        self.mask: set[int] = set()
        self.calls = 0
        self.raise_at = raise_at

    def valid_signals(self) -> set[int]:
        return set(signal.valid_signals())

    def pthread_sigmask(self, how: int, signals: Any) -> set[int]:
        previous = set(self.mask)
        self.mask = set(signals) if how == self.SIG_SETMASK else self.mask | set(signals)
        self.calls += 1
        if self.calls == self.raise_at:
            raise KeyboardInterrupt
        return previous


@pytest.mark.parametrize("raise_at", [1, 2, 3], ids=["reading", "blocking", "restoring"])
def test_a_handler_raising_in_a_thread_start_leaves_the_mask_as_it_was(
    monkeypatch: pytest.MonkeyPatch, raise_at: int
) -> None:
    """Before: raised in the call that blocks every signal, the program's thread kept them all
    blocked (its Ctrl-C and SIGTERM never reached it again)."""
    fake = RaisingMask(raise_at)
    monkeypatch.setattr(_sync, "_signal", fake)
    ran: list[bool] = []
    with pytest.raises(KeyboardInterrupt):
        _sync.start_thread(lambda: ran.append(True))
    deadline = time.monotonic() + 5
    while raise_at == 3 and not ran and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.mask == set()
    assert ran == ([True] if raise_at == 3 else [])  # started only once every signal was blocked


MASKS = """
import json, os, vlhook
print("first line")  # starts the sender
vlhook.flush(5)  # and the delivery thread
def blocked(tid):
    with open(f"/proc/self/task/{tid}/status") as fh:
        return next(int(line.split()[1], 16) for line in fh if line.startswith("SigBlk:"))
masks = {tid: blocked(tid) for tid in os.listdir("/proc/self/task")}
print(json.dumps({"main": os.getpid(), "masks": masks}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_signals_sent_to_the_process_never_land_on_a_vlhook_thread(script: Any, sink: Any) -> None:
    """A signal sent to the process goes to a thread that does not block it; had it landed on
    one of vlhook's threads, the handler would still run, but a main thread blocked in sleep()
    would not be woken, and Ctrl-C would wait for the sleep to end. vlhook's threads block
    every signal but the faults (which must reach faulthandler in the thread that caused
    them); the program's are as they were."""
    run = run_python(script(MASKS), sink.env())
    assert run.rc == 0, run.err
    said = json.loads(run.out.splitlines()[-1])
    masks = {int(tid): mask for tid, mask in said["masks"].items()}
    assert masks.pop(said["main"]) == 0
    assert len(masks) >= 2, masks  # the sender and the delivery thread
    for mask in masks.values():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            assert mask & (1 << (sig - 1)), (sig, hex(mask))
        for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT):
            assert not mask & (1 << (sig - 1)), (sig, hex(mask))


def test_program_sigint_handler_still_runs(script: Any, sink: Any) -> None:
    path = script(
        "import signal, sys, time\n"
        "def stop(signum, frame):\n    print('stopping cleanly')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\n" + SLEEPER
    )
    rc, out, err = _signal_when_ready(_start(path, sink.env()), signal.SIGINT)
    assert (rc, out, err) == (0, b"ready\nstopping cleanly\n", b"")
    assert messages(sink.settle(2)) == ["ready", "stopping cleanly"]


def test_prefork_workers_each_ship_their_own_once(script: Any, sink: Any) -> None:
    """A gunicorn-style master: logs, forks workers that log and exit, reaps them."""
    path = script(
        "import logging, os, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "log = logging.getLogger('master')\n"
        "log.info('master booting')\n"
        "pids = []\n"
        "for n in range(3):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        logging.getLogger('worker').info('worker %d serving', n)\n"
        "        print(f'worker {n} done')\n"
        "        sys.exit(0)\n"
        "    pids.append(pid)\n"
        "for pid in pids:\n    os.waitpid(pid, 0)\n"
        "log.info('master stopped')\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 0
    rows = sink.settle(8)
    expected = ["master booting", "master stopped"] + [
        text for n in range(3) for text in (f"worker {n} serving", f"worker {n} done")
    ]
    assert sorted(messages(rows)) == sorted(expected)


def test_a_fork_while_a_vlhook_thread_counts_leaves_the_child_free(script: Any, sink: Any) -> None:
    """vlhook's threads update its counters under a lock: a fork while one of them holds it
    gave the child that lock held by a thread it does not have, and the child hung at its
    exit (its report reads the counters). Here a thread of the parent holds the lock through
    the fork: the child must still ship its line and exit, and say nothing of the parent's
    counts."""
    path = script(
        "import os, sys, threading, warnings\n"
        "warnings.simplefilter('ignore', DeprecationWarning)  # 3.12+: a fork with a thread\n"
        "print('parent line', flush=True)\n"
        "stats = sys._vlhook_active.stats\n"
        "held, release = threading.Event(), threading.Event()\n"
        "def hold():\n"
        "    with stats._lock:\n"
        "        held.set()\n"
        "        release.wait()\n"
        "threading.Thread(target=hold).start()\n"
        "held.wait()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child line')\n"
        "    sys.exit(0)\n"
        "release.set()\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print('child exit', os.waitstatus_to_exitcode(status))\n"
    )
    run = run_python(path, sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="3000"), timeout=30)
    assert run.rc == 0, run.err
    assert run.out.splitlines() == ["parent line", "child line", "child exit 0"]
    assert run.err == ""
    rows = sink.settle(3)
    assert sorted(messages(rows)) == ["child exit 0", "child line", "parent line"]


def test_a_forked_child_reports_only_its_own_drops(script: Any, sink: Any) -> None:
    """The parent shed lines (a tiny buffer, `drop`) and reported it; its forked child, which
    sheds nothing, reports nothing: the parent's drops are the parent's."""
    path = script(
        "import os, sys, vlhook\n"
        "for i in range(3000):\n"
        "    print(f'burst {i}')\n"
        "vlhook.flush(10)\n"
        "shed = vlhook.stats()['dropped'].get('buffer_full', 0)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    print('child line', vlhook.stats()['dropped'], vlhook.stats()['captured'])\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent shed', shed > 0)\n"
    )
    run = run_python(path, sink.env(VICTORIALOGS_BUFFER_BYTES="65536"))
    assert run.rc == 0, run.err
    assert "child line {} 0" in run.out.splitlines()
    assert "parent shed True" in run.out.splitlines()
    sink.server.force_flush()
    reports = sink.server.rows(f'test_id:="{sink.test_id}" stream:=vlhook')
    pids = {row["pid"] for row in reports}
    assert len(pids) == 1, reports  # the parent's only


# SIGTERM sent at the N-th line the program's main thread runs in the functions named (the
# buffer's path for a full buffer), once it gets there: Python runs the signal handler between
# two operations of that thread, so the exit it leads to may begin anywhere in that path. Its
# lines are long, ~16 of them to the buffer: it is full again and again however often the
# writer lets the sender in (with lines of ~100 characters it was full only now and then).
FULL_SIGTERM = """
import os, signal, sys
at, names = int(sys.argv[1]), sys.argv[2].split(",")
seen = 0
def line(frame, event, arg):
    global seen
    if event == "line":
        seen += 1
        if seen == at:
            os.kill(os.getpid(), signal.SIGTERM)
    return line
def calls(frame, event, arg):
    code = frame.f_code
    if code.co_name in names and "vlhook" in code.co_filename:
        return line
    return None
print("ready", flush=True)
sys.settrace(calls)
for i in range(5000):
    print(f"flood {i:05d} " + "x" * 4000)
sys.settrace(None)
print("lines run in the path:", seen, file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("on_full", "path"),
    [("drop", "_make_room,_shed_text,drop"), ("block", "_make_room,_wait_for_room,add")],
)
def test_sigterm_while_the_buffer_is_full_ends_the_process(
    on_full: str, path: str, script: Any, sink: Any
) -> None:
    """A flood into a tiny buffer stopped with SIGTERM, the signal landing at each line of the
    full buffer's path in turn (shedding a line, or waiting for room): the process dies of it
    within the exit budget, as without vlhook. A lock taken there was held by the main thread
    when the handler ran the exit, which takes it too: 1 in 20 floods under `drop` stopped this
    way never ended."""
    program = script(FULL_SIGTERM)
    env = sink.env(VICTORIALOGS_BUFFER_BYTES="65536", VICTORIALOGS_EXIT_TIMEOUT_MS="2000",
                   VICTORIALOGS_ON_FULL=on_full)  # fmt: skip
    dry = run_python(program, env, args=("0", path))
    seen = re.search(r"lines run in the path: (\d+)", dry.err)
    assert dry.rc == 0 and seen and int(seen.group(1)) > 25, dry.err
    for at in range(1, 25):  # the first lines, one after the other
        run = run_python(program, env, args=(str(at), path), timeout=20)
        assert run.rc == -signal.SIGTERM, (at, run.err)
        assert run.elapsed < 10, (at, run.elapsed)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_an_ending_signal_reaches_a_forked_child_whose_main_thread_is_blocked(
    script: Any, sink: Any, sig: int
) -> None:
    """A multiprocessing child blocked in a lock (as a Pool worker is when Pool.terminate()
    sends SIGTERM) and a signal its main thread is not woken by (here another of its threads
    takes it; a Pool worker misses it when it comes just before the wait, 1 to 3 % of `with
    Pool()` exits). Without vlhook the kernel ends the child; with vlhook's handler, Python
    must run it on the main thread, which waited for ever. The child must die of the signal, its
    line shipped (a closed terminal sends SIGHUP to every process of its group)."""
    path = script(
        "import multiprocessing as mp, signal, _thread, time\n"
        "def child(sem):\n"
        "    print('child blocking', flush=True)\n"
        "    def kick():\n"
        "        time.sleep(0.3)\n"
        f"        signal.pthread_kill(_thread.get_ident(), {int(sig)})\n"
        "    _thread.start_new_thread(kick, ())\n"
        "    sem.acquire()  # never released: only the signal ends the child\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('fork')\n"
        "    sem = ctx.Semaphore(0)\n"
        "    p = ctx.Process(target=child, args=(sem,))\n"
        "    p.start()\n"
        "    p.join(15)\n"
        "    print('child exit', p.exitcode)\n"
        "    if p.exitcode is None:\n"
        "        p.kill()\n"
    )
    run = run_python(path, sink.env(), timeout=60)
    assert run.rc == 0, run.err
    assert run.out.splitlines() == ["child blocking", f"child exit -{int(sig)}"]
    assert sorted(messages(sink.settle(2))) == ["child blocking", f"child exit -{int(sig)}"]


FORK_POOL = (
    "import multiprocessing as mp\n"
    "def work(i):\n    print('task', i)\n    return i\n"
    "if __name__ == '__main__':\n"
    "    with mp.get_context('fork').Pool(2) as pool:\n"
    "        print('sum', sum(pool.map(work, range(6))))\n"
)
POOL_LINES = sorted([f"task {i}" for i in range(6)] + ["sum 15"])


def test_multiprocessing_fork_pool(script: Any, sink: Any) -> None:
    path = script(FORK_POOL)
    run_python(path, sink.env())
    assert sorted(messages(sink.settle(7))) == POOL_LINES


# A forked Process whose target raises: multiprocessing prints its traceback after running its
# exit finalizers. vlhook's exit flush was one of them: the traceback came after the exit, went
# to the spool as raw lines, and was stored line by line as INFO, with no exception fields.
CRASHING_CHILD = """
import multiprocessing as mp, sys
def target():
    print("child")
    raise RuntimeError("boom")
if __name__ == "__main__":
    child = mp.get_context(sys.argv[1]).Process(target=target)
    child.start(); child.join()
    print("exit", child.exitcode)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_crashing_child_process_is_one_error_entry(script: Any, sink: Any, method: str) -> None:
    run = run_python(script(CRASHING_CHILD), sink.env(), args=(method,))
    assert run.out == "child\nexit 1\n", run.err
    rows = sink.settle(4)
    assert sorted(messages(rows)[:1] + messages(rows)[-1:]) == ["child", "exit 1"]
    errors = [row for row in rows if row["level"] == "ERROR"]
    assert len(rows) == 4 and len(errors) == 1, rows
    assert errors[0]["_msg"].startswith("Traceback (most recent call last):")
    assert errors[0]["_msg"].endswith("RuntimeError: boom")


LOKY_POOL = """\
import logging, os
from joblib import Parallel, delayed
def work(i):
    print('task', i, flush=True)
    return os.getpid()
if __name__ == '__main__':
    pids = Parallel(n_jobs=2)(delayed(work)(i) for i in range(4))
    print('workers', len(set(pids) - {os.getpid()}) > 0)
"""


def test_joblib_loky_workers_ship_under_their_programs_name(script: Any, sink: Any) -> None:
    """joblib's default pool (loky, scikit-learn's) starts each worker with
    `python -m joblib.externals.loky.backend.popen_loky_posix`: its lines went to a job and a
    container named after that module, not the program's."""
    pytest.importorskip("joblib")
    run = run_python(script(LOKY_POOL, name="shop.py"), sink.env())
    assert run.rc == 0 and run.out.endswith("workers True\n"), run.err
    rows = sink.settle(5)
    assert sorted(messages(rows)) == [*(f"task {i}" for i in range(4)), "workers True"]
    assert {(row["job"], row["container_name"]) for row in rows} == {("shop", "shop")}
    assert len({row["pid"] for row in rows}) > 1  # the workers' own lines


# Each worker does one task and ends (billiard 4.3 ends it within ~1 s; 4.2, the last for
# Python 3.9, ~30 s later); the pool is terminated once both have. A worker still alive then
# would die of SIGTERM, whose handler flushes: the test would not tell.
BILLIARD_POOL = """\
import billiard, os, time
def work(i):
    print('task', i)
    return os.getpid()
def running(pid):
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False
if __name__ == '__main__':
    pool = billiard.get_context('fork').Pool(2, maxtasksperchild=1)
    workers = pool.map(work, range(2), chunksize=1)
    print('done')
    deadline = time.monotonic() + 5
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    print('ended', not any(map(running, workers)))
    pool.terminate()
"""


def test_billiard_pool_workers_deliver_their_lines_though_they_end_with_os_exit(
    script: Any, sink: Any
) -> None:
    """billiard (Celery's prefork pool) forks as multiprocessing does, but its workers end
    with os._exit() inside their task loop (recycled after `maxtasksperchild` tasks, or at the
    pool's close), so multiprocessing's exit finalizers, which flush a forked child, never
    run. With no timed flush before it, each worker's line was lost, and said nowhere."""
    pytest.importorskip("billiard")
    path = script(BILLIARD_POOL)
    run = run_python(path, sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"))
    assert run.rc == 0 and run.err == "", run.err
    if "ended False" in run.out:
        pytest.skip("this billiard's workers did not end within 5 s of their one task")
    assert sorted(messages(sink.settle(4))) == ["done", "ended True", "task 0", "task 1"]


# The exit, begun (a pool worker's finalizers, or atexit), is interrupted by SIGTERM: SIGTERM's
# handler then runs in the middle of it, on the same thread. Two moments a Pool's terminate()
# hit in 1 of 10 to 30 `with Pool()` exits, each sent here from inside that step, so that it
# comes there every time: right after the exit made its request and before it woke the sender
# (the spare descriptor's close, just before the wake, can take milliseconds); and while it
# held the import lock (importing `gc` to pause the collector), which the sender, loading its
# pipeline, waited for. And SIGHUP (a closed terminal) in the middle of SIGTERM's own flush.
INTERRUPTED_EXIT = """\
import os, signal, sys
print("the last line", flush=True)
sender_module = sys.modules["vlhook._sender"]
Sender = sender_module.Sender
def signalled(original, holding_import_lock, sig=signal.SIGTERM):
    def step(self, *args):
        if not getattr(self, "_signalled", False):
            self._signalled = True
            if holding_import_lock:
                import _imp
                _imp.acquire_lock()
            os.kill(os.getpid(), sig)  # its handler runs before the next line
            if holding_import_lock:
                _imp.release_lock()
        return original(self, *args)
    return step
if sys.argv[1] == "before_the_wake":
    Sender._let_spare_go = signalled(Sender._let_spare_go, False)
elif sys.argv[1] == "holding_the_import_lock":
    Sender.shutdown = signalled(Sender.shutdown, True)
else:
    Sender.shutdown = signalled(Sender.shutdown, False, signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
"""


@pytest.mark.parametrize(
    "moment", ["before_the_wake", "holding_the_import_lock", "sighup_in_sigterms_flush"]
)
def test_sigterm_in_the_middle_of_the_exit_lets_that_exit_finish(
    script: Any, sink: Any, moment: str
) -> None:
    """The handler began an exit of its own and waited for the sender: one nobody had woken
    (asleep for its flush interval), or one waiting for the import lock the interrupted exit
    held. Until the exit's deadline and its grace, then the line was dropped as "the sender
    did not finish in time". Now the exit under way finishes, and the process then dies of
    the signal, as it would have: of the first, when SIGHUP comes during SIGTERM's flush."""
    path = script(INTERRUPTED_EXIT)
    env = sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    run = run_python(path, env, args=(moment,))
    assert run.rc == -signal.SIGTERM, run.err
    assert run.elapsed < 1.5 and run.err == "", run.err
    assert messages(sink.settle(1)) == ["the last line"]


def test_multiprocessing_fork_pool_with_the_default_flush_interval(script: Any, sink: Any) -> None:
    """Workers still holding their lines when terminate() sends SIGTERM (see the test above):
    1 in 10 to 30 runs dropped a worker's lines. A few runs, each must store every line."""
    path = script(FORK_POOL)
    for attempt in range(5):
        env = sink.env(VICTORIALOGS_FIELDS=f"test_id={sink.test_id},attempt={attempt}")
        env.pop("VICTORIALOGS_FLUSH_INTERVAL_MS")
        run = run_python(path, env)
        assert "did not finish" not in run.err, run.err
        rows = sink.entries(7 * (attempt + 1))
        assert sorted(r["_msg"] for r in rows if r["attempt"] == str(attempt)) == POOL_LINES


def test_python_verbose_ends_as_without_vlhook(script: Any, sink: Any) -> None:
    """`python -v` writes a message on sys.stderr for every import, and at teardown. A write
    after the exit's report goes straight to the spool, which that write may have to load:
    the import's own message came back to the same thread while it held the exit's lock, and
    the process never ended."""
    path = script("print('verbose run')\n")
    env = sink.env(PYTHONVERBOSE="1")
    bare = run_python(path, env, dropin=False, timeout=20)
    run = run_python(path, env, timeout=20)
    assert (run.rc, run.out) == (bare.rc, bare.out) == (0, "verbose run\n")
    assert [line for line in run.err.splitlines() if line.startswith("vlhook")] == []
    assert "verbose run" in messages(sink.settle(1))
    # An exit that kept something (the server down) loaded the spool, and the messages of the
    # interpreter's teardown go there too, until one meets a module of vlhook's the teardown
    # has wiped: it is dropped without a word. Its internal error used to end the program's
    # stderr with "vlhook: (a message could not be shown)".
    down = dict(env, VICTORIALOGS_URL=f"http://127.0.0.1:{refused_port()}")
    kept = run_python(path, down, timeout=20)
    assert (kept.rc, kept.out) == (0, "verbose run\n")
    ours = [line for line in kept.err.splitlines() if line.startswith("vlhook")]
    assert len(ours) == 1 and "kept in the spool" in ours[0], ours


EXEC = """
import os, sys
try:
    os.execvp("no-such-program-of-this-test", ["no-such-program-of-this-test"])
except FileNotFoundError as exc:
    print("exec failed:", type(exc).__name__)
for i in range(3):
    print(f"before exec {i}")
sys.stdout.flush()
os.execlp(sys.executable, sys.executable, "-c", "print('after exec')")
"""


def test_lines_written_before_an_exec_are_delivered(script: Any, sink: Any) -> None:
    """os.exec*() replaces the process, and what vlhook had not delivered went with it: the
    lines printed before were lost, those of the program it became (vlhook active there
    too) stored. An exec flushes first now (within VICTORIALOGS_EXIT_TIMEOUT_MS); one that
    fails leaves the program going as before, nothing stored twice."""
    path = script(EXEC)
    env = sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    bare, _ = as_without_vlhook(path, env)
    assert bare.out == "exec failed: FileNotFoundError\n" + "".join(
        f"before exec {i}\n" for i in range(3)) + "after exec\n"  # fmt: skip
    rows = sink.settle(5)
    assert sorted(messages(rows)) == sorted(bare.out.splitlines())
    assert len({row["pid"] for row in rows}) == 1  # exec keeps the process


@pytest.mark.parametrize("option", ["", "1"], ids=["default", "flush_on_os_exit"])
def test_os_exit(script: Any, sink: Any, option: str) -> None:
    path = script("import os\nprint('before os._exit')\nos._exit(3)\n")
    env = sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    if option:
        env["VICTORIALOGS_FLUSH_ON_OS_EXIT"] = option
    run = run_python(path, env)
    assert run.rc == 3
    if option:
        assert messages(sink.settle(1)) == ["before os._exit"]
    else:
        time.sleep(0.5)
        assert sink.entries(0, timeout=0.5) == []  # by contract: no flush, documented


DAEMONIZING = """\
import os
print('starting the daemon', flush=True)
if os.fork():
    os._exit(0)  # the original process hands over, as python-daemon's does
os.setsid()
if os.fork():
    os._exit(0)
print('daemon running', flush=True)
pid = os.fork()
if pid == 0:
    print('its child', flush=True)
    os._exit(0)  # a bare fork's child ends so, not to run its parent's code on
os.waitpid(pid, 0)
print('daemon done', flush=True)
"""


def test_os_exit_flushes_in_a_process_that_forked_or_was_forked(script: Any, sink: Any) -> None:
    """Daemonizing (a double fork whose parents end with os._exit()) and a bare fork's child:
    what the original process and the child printed was lost, said nowhere."""
    path = script(DAEMONIZING)
    run = run_python(path, sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"))
    assert run.rc == 0 and run.err == "", run.err
    lines = ["daemon done", "daemon running", "its child", "starting the daemon"]
    assert sorted(run.out.splitlines()) == lines
    assert sorted(messages(sink.settle(4))) == lines


def test_bad_certificate_is_a_clear_error(tls_server: VictoriaLogs) -> None:
    env = base_env()
    env.update(PYTHONPATH=str(SRC), VICTORIALOGS_URL=tls_server.url)
    result = subprocess.run([sys.executable, "-m", "vlhook", "check"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    assert "TLS certificate" in result.stdout and "VICTORIALOGS_CA_BUNDLE" in result.stdout
    assert tls_server.rows("*") == []
    env["VICTORIALOGS_CA_BUNDLE"] = str(tls_server.cafile)
    trusted = subprocess.run([sys.executable, "-m", "vlhook", "check"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert trusted.returncode == 0, trusted.stdout
    assert len(tls_server.rows("*")) == 1  # the probe, stored


def test_http_to_a_server_of_https_keeps_the_lines_and_says_which_to_write(
    tls_server: VictoriaLogs, script: Any, tmp_path: Path
) -> None:
    """The server answers 400 "Client sent an HTTP request to an HTTPS server.": a mistake of
    the URL's, not of the lines, which were dropped as rejected. They are kept in the spool
    now, and the next run with https:// delivers them."""
    assert tls_server.cafile is not None
    spool = tmp_path / "spool"
    env = {
        "VICTORIALOGS_URL": tls_server.url.replace("https://", "http://"),
        "VICTORIALOGS_SPOOL_DIR": str(spool),
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "1000",
    }
    run = run_python(script("print('kept for https')\n"), env)
    assert run.rc == 0 and run.out == "kept for https\n"
    assert "where VICTORIALOGS_URL says http://: write https:// (HTTP 400" in run.err, run.err
    assert "1 kept in the spool" in run.err and "dropped" not in run.err, run.err
    check = subprocess.run([sys.executable, "-m", "vlhook", "check"],
                           env={**base_env(), **env, "PYTHONPATH": str(SRC)},
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "  the server speaks HTTPS where VICTORIALOGS_URL says http://: write https://\n" in (
        check.stdout), check.stdout  # fmt: skip
    env.update(VICTORIALOGS_URL=tls_server.url, VICTORIALOGS_CA_BUNDLE=str(tls_server.cafile))
    again = run_python(script("print('next run')\n", name="next.py"), env)
    assert again.err == ""
    assert sorted(row["_msg"] for row in tls_server.rows("*")) == ["kept for https", "next run"]


@pytest.mark.parametrize("command", [("check",), ("query", "*")])
def test_https_to_a_server_of_plain_http_says_which_to_write(
    sink: Any, command: tuple[str, ...]
) -> None:
    """It said `SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number` and no more."""
    env = base_env()
    env.update(PYTHONPATH=str(SRC), VICTORIALOGS_URL=sink.url.replace("http://", "https://"))
    result = subprocess.run([sys.executable, "-m", "vlhook", *command], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    said = result.stdout + result.stderr
    assert result.returncode == 1
    assert "does not speak TLS" in said and "write http:// in VICTORIALOGS_URL" in said, said


@pytest.mark.parametrize("bundle", ["missing.pem", "not-pem.txt"])
def test_a_ca_bundle_that_cannot_be_used_is_named_once_and_verification_stays(
    tls_server: VictoriaLogs, script: Any, tmp_path: Path, bundle: str
) -> None:
    """Missing or not PEM: one warning naming the variable, the system's certificates used
    (this server's is not among them: kept in the spool), never a sender that cannot start."""
    (tmp_path / "not-pem.txt").write_text("not a certificate\n")
    env = {
        "VICTORIALOGS_URL": tls_server.url,
        "VICTORIALOGS_CA_BUNDLE": str(tmp_path / bundle),
        "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "1000",
    }
    run = run_python(script("print('over tls')\n"), env)
    assert run.rc == 0 and run.out == "over tls\n"
    assert run.err.count("VICTORIALOGS_CA_BUNDLE=") == 1, run.err
    assert "system's trusted certificates" in run.err and "internal error" not in run.err
    assert "1 kept in the spool" in run.err, run.err
    assert tls_server.rows("*") == []


def test_a_relative_ca_bundle_is_read_from_where_the_program_started(
    tls_server: VictoriaLogs, script: Any, tmp_path: Path
) -> None:
    """The bundle is read when the first batch goes, perhaps after the program changed its
    directory: a relative path used to be read from there, not found, and every batch kept
    in the spool for want of the certificate."""
    path = script("import os\nos.chdir('/')\nprint('over tls')\n")
    assert tls_server.cafile is not None
    env = {
        "VICTORIALOGS_URL": tls_server.url,
        "VICTORIALOGS_CA_BUNDLE": os.path.relpath(tls_server.cafile, path.parent),
        "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    run = run_python(path, env)
    assert run.rc == 0 and run.out == "over tls\n" and run.err == ""
    assert [row["_msg"] for row in tls_server.rows("*")] == ["over tls"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the fork warning exists since 3.12")
def test_fork_warning_shown_exactly_as_without_vlhook(script: Any, sink: Any) -> None:
    """The program's own thread makes Python warn at fork(): with vlhook too, and only then."""
    path = script(
        "import os, sys, threading, time\n"
        "print('start', flush=True)\n"
        "if len(sys.argv) > 1:\n"
        "    threading.Thread(target=time.sleep, args=(1,), daemon=True).start()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    for args in ((), ("with-thread",)):
        bare = run_python(path, dropin=False, args=args)
        hooked = run_python(path, sink.env(), args=args)
        import re

        def same(err: bytes) -> bytes:
            return re.sub(rb"pid=\d+", b"pid=N", err)

        assert same(hooked.stderr) == same(bare.stderr)
        assert (b"multi-threaded" in bare.stderr) == bool(args)


def test_sender_never_becomes_the_main_thread_of_threading(script: Any, sink: Any) -> None:
    """Before 3.13 the first thread to import `threading` is its "main thread", and the exit
    waits for that thread to end. A module the sender loads may import threading (orjson
    builds for 3.9 do, through uuid): the program's main thread must stay the main thread, and
    the exit must not wait for the sender. The stand-in `orjson` here imports threading and
    then fails, so the sender falls back to the standard json module (a JSON line makes the
    sender load its encoder: a plain one would not)."""
    path = script(
        "print('first line')\n"
        'print(\'{"message": "a JSON line"}\')\n'
        "import vlhook\n"
        "vlhook.flush(10)\n"
        "import threading\n"
        "print(threading.current_thread() is threading.main_thread())\n"
    )
    shim = "import threading\nraise ImportError('a stand-in that imports threading')\n"
    (path.parent / "orjson.py").write_text(shim)
    run = run_python(path, sink.env(), timeout=30)
    assert (run.rc, run.stdout) == (0, b'first line\n{"message": "a JSON line"}\nTrue\n')
    assert messages(sink.settle(3)) == ["first line", "a JSON line", "True"]


def test_a_program_that_never_imports_threading_does_not_get_it(script: Any, sink: Any) -> None:
    """On 3.11 and 3.12 the sender spares the program the `threading` import (~4 ms) that
    older Pythons need first on the main thread (there orjson imports it on the sender); when
    the program imports it later, the main thread is still threading's main thread and a
    thread's uncaught exception is still shipped. The JSON line makes the sender load orjson."""
    path = script(
        "import sys\n"
        "print('plain line')\n"
        'print(\'{"message": "a JSON line", "n": 1.5}\')\n'
        "import vlhook\n"
        "vlhook.flush(10)\n"
        "print('threading loaded:', 'threading' in sys.modules)\n"
        "import threading\n"
        "print(threading.current_thread() is threading.main_thread())\n"
        "def fails():\n"
        "    raise ValueError('thread failed')\n"
        "thread = threading.Thread(target=fails)\n"
        "thread.start()\n"
        "thread.join()\n"
    )
    run = run_python(path, sink.env(), timeout=30)
    loaded = sys.version_info < (3, 11)
    printed = f'plain line\n{{"message": "a JSON line", "n": 1.5}}\nthreading loaded: {loaded}\n'
    assert run.stdout == printed.encode() + b"True\n"
    assert run.rc == 0 and b"ValueError: thread failed" in run.stderr
    rows = sink.settle(5)
    assert [row["_msg"] for row in rows][:4] == [
        "plain line", "a JSON line", f"threading loaded: {loaded}", "True"
    ]  # fmt: skip
    assert rows[1]["n"] == "1.5"
    failed = [row for row in rows if "thread failed" in row["_msg"]]
    assert len(failed) == 1  # one entry from threading's hook, not a line per frame
    assert failed[0]["exception.type"] == "ValueError"
    assert failed[0]["thread"].startswith("Thread-1")  # "Thread-1 (fails)" since 3.10


def test_the_pipeline_loads_when_there_is_work_not_with_the_first_line(
    script: Any, sink: Any
) -> None:
    """A program still starting (a Lambda function's init phase) does not share the interpreter
    lock with the sender's imports: the first line starts the sender thread, and its pipeline
    loads at the first batch's worth, flush, exit or flush interval. The line is then
    delivered as before."""
    path = script(
        "import sys, time, vlhook\n"
        "print('first line')\n"
        "time.sleep(0.3)\n"
        "before = 'vlhook._entry' in sys.modules\n"
        "flushed = vlhook.flush(10)\n"
        "after = 'vlhook._entry' in sys.modules\n"
        "print('loaded before', before, 'flushed', flushed, 'loaded after', after)\n"
    )
    run = run_python(path, sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"), timeout=30)
    report = "loaded before False flushed True loaded after True"
    _printed_and_stored(run, sink, "first line", report)


#: Notes every collection made off the main thread while the sender's pipeline loads (its
#: first module begun, its last not yet done), then reports it with the collector's state.
COLLECTIONS_PROBE = (
    "import _thread, gc, sys, vlhook\n"
    "main, during = _thread.get_ident(), []\n"
    "def loading():\n"
    "    last = sys.modules.get('vlhook._lines')\n"
    "    return 'vlhook._delivery.batch' in sys.modules and not hasattr(last, 'LineAssembler')\n"
    "def watch(phase, info):\n"
    "    if phase == 'start' and _thread.get_ident() != main and loading():\n"
    "        during.append(info['generation'])\n"
    "gc.callbacks.append(watch)\n"
    "{state}\n"
    "print('one line')\n"
    "flushed = vlhook.flush(10)\n"
    "print('flushed', flushed, 'collections', during, 'enabled', gc.isenabled())\n"
)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_pipeline_loads_without_a_collection_and_leaves_the_collector_as_it_was(
    script: Any, sink: Any, enabled: bool
) -> None:
    """The sender's imports make only objects that live as long as the process: the collector
    waits while they load (a one-line script ends ~1.5 ms sooner), and is then as the program
    left it, on or off. Unpaused, the ~230 KB of code they load always set one off."""
    path = script(COLLECTIONS_PROBE.format(state="" if enabled else "gc.disable()"))
    run = run_python(path, sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"), timeout=30)
    _printed_and_stored(run, sink, "one line", f"flushed True collections [] enabled {enabled}")


#: The program goes on running while the sender's pipeline loads at the flush interval, and
#: looks at the collector between its own steps until the pipeline is there (bounded: 5 s).
COLLECTOR_WATCH = (
    "import gc, sys, time, vlhook\n"
    "print('one line')\n"
    "seen, looks, end = set(), 0, time.monotonic() + 5\n"
    "while time.monotonic() < end:\n"
    "    looks += 1\n"
    "    seen.add(gc.isenabled())\n"
    "    if hasattr(sys.modules.get('vlhook._lines'), 'LineAssembler'):\n"
    "        break\n"
    "print('loaded', time.monotonic() < end, 'collector seen', sorted(seen),\n"
    "      'looked more than once', looks > 1)\n"
)


def test_a_pipeline_loaded_while_the_program_runs_leaves_its_collector_alone(
    script: Any, sink: Any
) -> None:
    """The collector waits only while a thread of the program waits for the sender (a flush,
    the exit): a program that goes on running while the pipeline loads never sees it off, and
    a `gc.disable()` it makes then is never undone."""
    run = run_python(script(COLLECTOR_WATCH), sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="50"),
                     timeout=30)  # fmt: skip
    report = "loaded True collector seen [True] looked more than once True"
    _printed_and_stored(run, sink, "one line", report)


#: An object in a reference cycle (freed by the collector alone) closes its sqlite3 connection
#: in `__del__`: sqlite3 refuses a close from any thread but the one that opened it.
CYCLIC_GARBAGE = (
    "import gc, sqlite3, threading\n"
    "class Store:\n"
    "    def __init__(self):\n"
    "        self.conn = sqlite3.connect(':memory:')\n"
    "        self.me = self\n"
    "    def __del__(self):\n"
    "        self.conn.close()\n"
    "        print('closed on the main thread',\n"
    "              threading.current_thread() is threading.main_thread(),\n"
    "              'collector on', gc.isenabled(), 'frozen', gc.get_freeze_count())\n"
    "print('one line')\n"
    "Store()\n"
)


def test_cyclic_garbage_left_at_exit_is_finalized_as_without_vlhook(script: Any, sink: Any) -> None:
    """A short script's exit loads the sender's pipeline. The collection those imports set off
    ran on the sender's thread, and finalized the program's cyclic garbage there: sqlite3's
    close failed ("Exception ignored in ... ProgrammingError") and the line after it was
    never printed. Now the exit leaves nothing young for a collection, and the interpreter's
    own collection at shutdown finalizes it on the main thread, the collector on and nothing
    left frozen, as without vlhook."""
    path = script(CYCLIC_GARBAGE)
    bare = run_python(path, dropin=False, timeout=30)
    run = run_python(path, sink.env(), timeout=30)
    # Python 3.12's interpreter freezes some objects of its own: the count is bare's.
    expected = b"one line\nclosed on the main thread True collector on True frozen "
    assert (bare.rc, bare.stdout[: len(expected)], bare.stderr) == (0, expected, b"")
    assert (run.rc, run.stdout, run.stderr) == (0, bare.stdout, b"")
    assert messages(sink.settle(1)) == ["one line"]


def _printed_and_stored(run: Any, sink: Any, first: str, report: str) -> None:
    """The program ended well, printed `first` and then its `report`, and both were stored."""
    assert run.rc == 0, run.stderr
    assert run.stdout == f"{first}\n{report}\n".encode()
    assert messages(sink.settle(2)) == [first, report]


# A program's own sys.excepthook that shows the exception its own way and never calls the one
# before it, as rich.traceback.install() and typer's pretty exceptions do: the crash was stored
# as the lines that hook printed, all INFO, with no ERROR entry and no exception.* fields.
OWN_DISPLAY = """
import sys
def show(exc_type, exc, tb):
    sys.stderr.write(f"| {exc_type.__name__}: {exc} |\\n")
sys.excepthook = show
print("working")
def fail():
    raise ValueError("bad input")
fail()
"""


def test_a_crash_shown_by_the_programs_own_hook_is_one_error_entry(script: Any, sink: Any) -> None:
    _, hooked = as_without_vlhook(script(OWN_DISPLAY), sink.env())
    assert hooked.rc == 1 and hooked.stderr == b"| ValueError: bad input |\n"
    rows = sink.settle(3)
    assert sorted(messages(rows)[:2]) == ["working", "| ValueError: bad input |"]
    # The line the hook printed names an exception: ERROR too, without exception fields.
    assert [row["level"] for row in rows] == ["INFO", "ERROR", "ERROR"]
    errors = [row for row in rows if "exception.type" in row]
    assert len(errors) == 1, rows
    assert errors[0]["exception.type"] == "ValueError"
    assert errors[0]["exception.message"] == "bad input"
    assert "in fail" in errors[0]["exception.stacktrace"]
    assert errors[0]["thread"] == "MainThread"


# A program whose hook calls the one before it (vlhook's) makes one ERROR entry, not two; a
# program that catches the exception and shows it through its hook itself makes none at exit.
CHAINED = """
import sys
before = sys.excepthook
def hook(*exc_info):
    sys.stderr.write("crashed:\\n")
    before(*exc_info)
sys.excepthook = hook
raise ValueError("chained")
"""
SHOWN_BY_HAND = """
import sys
sys.excepthook = lambda *exc_info: sys.stderr.write("shown\\n")
try:
    raise ValueError("caught")
except ValueError:
    sys.excepthook(*sys.exc_info())
print("went on")
"""


# A console of the program's own that records what it showed as Python does (IPython 8 from
# its cell's coroutine, which has no caller; code.InteractiveInterpreter): the exception was
# handled, and the program went on and ended well. It made a false ERROR entry at the exit.
RECORDED = """
import asyncio, sys
sys.excepthook = lambda *exc_info: None
def shown():
    sys.last_type, sys.last_value, sys.last_traceback = sys.exc_info()
async def cell():
    try:
        {}["missing"]
    except KeyError:
        shown()
asyncio.run(cell())
try:
    {}["at the top"]
except KeyError:
    shown()
print("went on")
"""


@pytest.mark.parametrize("program, errors", [(CHAINED, 1), (SHOWN_BY_HAND, 0), (RECORDED, 0)],
                         ids=["chained", "shown-by-hand", "recorded"])  # fmt: skip
def test_a_crash_through_vlhooks_hook_is_not_stored_twice(
    script: Any, sink: Any, program: str, errors: int
) -> None:
    as_without_vlhook(script(program), sink.env())
    rows = sink.settle(2)
    assert [row.get("exception.type") for row in rows if row["level"] == "ERROR"] == \
        ["ValueError"] * errors  # fmt: skip


# As PID 1 (a container's program run without an init: `docker run image python app.py`), the
# kernel drops SIGTERM and SIGHUP where the program left their default: it goes on. vlhook's
# handler flushed, then "died of the signal" by a kill that the kernel dropped too, and went on
# as if the process had ended: every line after it went to the spool, none to the server,
# untold (a `docker stop`'s 10 s, or the rest of the container's life after a stray SIGHUP).
AS_PID_1 = """\
import os, signal, time
print("pid", os.getpid(), flush=True)
for i in range(6):
    print("tick", i, flush=True)
    if i == 2:
        os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` does
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.05)
print("done")
"""


def _pid_namespace(tmp_path: Path) -> str:
    """An interpreter command that runs the program as PID 1 of a new PID namespace."""
    try:
        ok = subprocess.run(["unshare", "-fp", "--mount-proc", "true"], capture_output=True,
                            timeout=10).returncode == 0  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        pytest.skip("needs unshare(1) with the right to make a PID namespace (root)")
    wrapper = tmp_path / "as-pid-1"
    wrapper.write_text(f'#!/bin/sh\nexec unshare -fp --mount-proc {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_as_pid_1_a_termination_signal_leaves_the_program_shipping(
    script: Any, sink: Any, tmp_path: Path
) -> None:
    python = _pid_namespace(tmp_path)
    bare, _ = as_without_vlhook(script(AS_PID_1), sink.env(), python=python)
    assert bare.out.startswith("pid 1\n") and bare.out.endswith("tick 5\ndone\n")
    assert sorted(messages(sink.settle(8))) == sorted(bare.out.splitlines())
    assert not (sink.spool.exists() and any(sink.spool.iterdir()))  # nothing left behind


# A program that cleans up on a signal, then sets the signal's default back and sends it to
# itself, to end as the signal ends a process (Twisted's twistd and twist on Ctrl-C and
# SIGTERM): the process died at once, and what vlhook had not delivered with it, untold.
SELF_KILL = """\
import os, signal, sys, time
how, name = sys.argv[1], sys.argv[2]
signum = getattr(signal, name)
if how == "group":
    os.setpgid(0, 0)  # a group of its own: the signal to it (pid 0) reaches no one else
print("working", flush=True)
signal.signal(signum, lambda *_: None)
signal.raise_signal(signum) if how == "raise" else None
print("cleaning up on", name, flush=True)
signal.signal(signum, signal.SIG_DFL)
if how == "raise":
    signal.raise_signal(signum)
else:
    os.kill(0 if how == "group" else os.getpid(), signum)
print("not reached")
"""


@pytest.mark.parametrize(
    ("how", "name"), [("kill", "SIGINT"), ("kill", "SIGTERM"), ("raise", "SIGINT"),
                      ("group", "SIGHUP")],
)  # fmt: skip
def test_a_program_ending_by_its_own_signal_delivers_first(
    script: Any, sink: Any, how: str, name: str
) -> None:
    env = sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000")
    bare, _ = as_without_vlhook(script(SELF_KILL), env, args=(how, name))
    assert bare.rc == -getattr(signal, name) and bare.out == f"working\ncleaning up on {name}\n"
    assert messages(sink.settle(2)) == ["working", f"cleaning up on {name}"]
