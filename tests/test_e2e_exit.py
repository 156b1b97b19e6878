"""Flush points: exit, sys.exit, uncaught exceptions, SIGTERM, threads at exit, dead server."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import termios
import time
from typing import Any

import pytest

from conftest import DROPIN, SRC, as_without_vlhook, base_env, held_at_exit, messages, run_python


def test_sys_exit_code_is_kept_and_lines_delivered(script: Any, sink: Any) -> None:
    path = script("import sys\nprint('bye')\nsys.exit(3)\n")
    run = run_python(path, sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"))
    assert run.rc == 3
    assert messages(sink.settle(1)) == ["bye"]  # delivered by the exit flush, not the timer


def test_uncaught_exception_is_one_error_entry(script: Any, sink: Any) -> None:
    path = script("print('working')\ndef f():\n    raise RuntimeError('boom')\nf()\n")
    bare, _ = as_without_vlhook(path, sink.env())
    assert bare.rc == 1
    rows = sink.settle(2)
    assert len(rows) == 2, messages(rows)
    error = rows[1]
    assert error["level"] == "ERROR" and error["exception.type"] == "RuntimeError"
    assert error["exception.message"] == "boom" and "in f" in error["exception.stacktrace"]


def test_uncaught_exception_in_thread(script: Any, sink: Any) -> None:
    path = script(
        "import threading\n"
        "def work():\n    raise ValueError('in thread')\n"
        "t = threading.Thread(target=work, name='worker-1')\n"
        "t.start()\nt.join()\nprint('main ok')\n"
    )
    as_without_vlhook(path, sink.env())
    rows = sink.settle(2)
    errors = [r for r in rows if r["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["thread"] == "worker-1"
    assert errors[0]["exception.message"] == "in thread"


def _waiting_program(script: Any, sink: Any, tmp_path: Any, line: str) -> tuple[Any, Any, Any]:
    """A program that prints `line`, says it is ready, and waits to be ended; its environment
    (vlhook active, no timed flush) and the file it creates when ready."""
    ready = tmp_path / "ready"
    path = script(
        "import pathlib, time\n"
        f"print({line!r}, flush=True)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(30)\n"
    )
    env = base_env()
    env.update(sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"))
    env["PYTHONPATH"] = str(DROPIN)
    return path, env, ready


def _wait_for(ready: Any) -> None:
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_an_ending_signal_flushes_then_dies_of_the_signal(
    script: Any, sink: Any, tmp_path: Any, sig: int
) -> None:
    """`docker stop`, Kubernetes (SIGTERM); a closed terminal or SSH session (SIGHUP)."""
    path, env, ready = _waiting_program(script, sink, tmp_path, "started")
    proc = subprocess.Popen([sys.executable, str(path)], env=env, stdout=subprocess.PIPE)
    _wait_for(ready)
    proc.send_signal(sig)
    proc.wait(timeout=10)
    assert proc.returncode == -sig
    assert messages(sink.settle(1)) == ["started"]


def test_a_program_whose_terminal_closes_delivers_its_lines_and_dies_of_sighup(
    script: Any, sink: Any, tmp_path: Any
) -> None:
    """A program in a terminal (an SSH session) that is closed: the kernel hangs the terminal
    up, sending SIGHUP, and the program's output has nowhere to go any more."""
    path, env, ready = _waiting_program(script, sink, tmp_path, "in a terminal")
    master, terminal = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(path)], env=env, stdin=terminal, stdout=terminal,
            stderr=terminal, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # its terminal
        )  # fmt: skip
    finally:
        os.close(terminal)
    _wait_for(ready)
    os.close(master)  # the terminal closes
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGHUP
    assert messages(sink.settle(1)) == ["in a terminal"]


def test_a_program_started_with_sighup_ignored_goes_on_as_without_vlhook(
    script: Any, sink: Any
) -> None:
    """`nohup`: SIGHUP ignored before the program starts stays ignored."""
    path = script(
        "import os, signal\n"
        "print('ignored', signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "print('after')\n"
    )
    nohup = path.parent / "nohup-python"
    nohup.write_text(f"#!/bin/sh\ntrap '' HUP\nexec {sys.executable} \"$@\"\n")
    nohup.chmod(0o755)
    _, run = as_without_vlhook(path, sink.env(), python=str(nohup))
    assert run.rc == 0 and run.out == "ignored True\nafter\n"
    assert messages(sink.settle(2)) == ["ignored True", "after"]


def test_program_sigterm_handler_is_left_alone(script: Any, sink: Any) -> None:
    path = script(
        "import signal, os, sys\n"
        "def handler(signum, frame):\n    print('handled', signum)\n    sys.exit(7)\n"
        "signal.signal(signal.SIGTERM, handler)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "import time; time.sleep(5)\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 7 and run.out == "handled 15\n"
    assert messages(sink.settle(1)) == ["handled 15"]


def test_a_program_handler_passing_the_signal_on_ends_the_process_as_the_default_would(
    script: Any, sink: Any
) -> None:
    """Cleanup, then the signal passed on to the handler replaced, or the default's end where
    none can be called: vlhook's handler, replaced, stands in for the default."""
    path = script(
        "import os, signal\n"
        "def cleanup(signum, frame):\n"
        "    print('cleaned up', flush=True)\n"
        "    if callable(replaced):\n"
        "        replaced(signum, frame)\n"
        "    else:\n"
        "        signal.signal(signum, signal.SIG_DFL)\n"
        "        os.kill(os.getpid(), signum)\n"
        "replaced = signal.signal(signal.SIGTERM, cleanup)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('not reached')\n"
    )
    _, run = as_without_vlhook(path, sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000"))
    assert run.rc == -signal.SIGTERM and run.out == "cleaned up\n"
    assert messages(sink.settle(1)) == ["cleaned up"]


def test_threads_still_printing_at_exit(script: Any, sink: Any) -> None:
    path = script(
        "import threading, time\n"
        "def spin():\n"
        "    for i in range(10**5):\n        print('bg', i)\n        time.sleep(0.0005)\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "time.sleep(0.05)\n"
        "print('main done')\n"
    )
    run = run_python(path, sink.env())
    assert run.rc == 0
    rows = sink.settle(1)
    assert "main done" in messages(rows)
    printed = set(run.out.splitlines())
    assert all(m in printed for m in messages(rows))  # nothing invented, nothing doubled
    assert len(messages(rows)) == len(set(messages(rows)))


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_exit_is_bounded_and_spooled(script: Any, tmp_path: Any) -> None:
    path = script("for i in range(100):\n    print('line', i)\n")
    spool = tmp_path / "spool"
    env = {
        "VICTORIALOGS_URL": f"http://127.0.0.1:{_unused_port()}",
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "500",
        "VICTORIALOGS_SPOOL_DIR": str(spool),
    }
    run = run_python(path, env)
    assert run.rc == 0 and run.elapsed < 5
    files = list(spool.glob("*.jsonl"))
    assert files and oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
    assert sum(f.read_bytes().count(b"\n") for f in files) == 100


def test_blackholed_server_exit_is_bounded(script: Any, tmp_path: Any) -> None:
    """A server that accepts but never answers: the exit still ends within the bound."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        path = script("print('hello')\n")
        env = {
            "VICTORIALOGS_URL": f"http://127.0.0.1:{port}",
            "VICTORIALOGS_EXIT_TIMEOUT_MS": "800",
            "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
        }
        run = run_python(path, env)
    assert run.rc == 0 and run.out == "hello\n"
    assert run.elapsed < 4


def test_a_batch_whose_connection_never_opened_is_spooled_not_under_way(
    script: Any, tmp_path: Any
) -> None:
    """A server whose accept queue is full: connect() hangs, and nothing of the batch leaves.
    At exit that batch is spooled like the rest, not reported as maybe stored."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = []  # fill the queue: later connections wait for a SYN-ACK that never comes
        for _ in range(3):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            queued.append(sock)
        time.sleep(0.2)
        path = script("import time\nfor i in range(500):\n    print('early', i)\n"
                      "time.sleep(1.0)  # the first batch's connection is being opened\n"
                      "for i in range(500):\n    print('late', i)\n")  # fmt: skip
        spool = tmp_path / "spool"
        env = {
            "VICTORIALOGS_URL": f"http://127.0.0.1:{port}",
            "VICTORIALOGS_EXIT_TIMEOUT_MS": "1000",
            "VICTORIALOGS_SPOOL_DIR": str(spool),
            "VICTORIALOGS_DEBUG": "1",
        }
        run = run_python(path, env)
        for sock in queued:
            sock.close()
    assert run.rc == 0 and run.elapsed < 8
    assert "under way" not in run.err, run.err
    assert sum(f.read_bytes().count(b"\n") for f in spool.glob("*.jsonl")) == 1000


def test_spooled_lines_are_replayed_by_the_next_run(script: Any, sink: Any, tmp_path: Any) -> None:
    spool = tmp_path / "spool"
    first = script("print('from the first run')\n", name="first.py")
    run_python(first, {"VICTORIALOGS_URL": f"http://127.0.0.1:{_unused_port()}",
                       "VICTORIALOGS_EXIT_TIMEOUT_MS": "300",
                       "VICTORIALOGS_SPOOL_DIR": str(spool),
                       "VICTORIALOGS_FIELDS": f"test_id={sink.test_id}"})  # fmt: skip
    assert list(spool.glob("*.jsonl"))
    second = script("print('from the second run')\n", name="second.py")
    run_python(second, sink.env(VICTORIALOGS_SPOOL_DIR=str(spool)))
    rows = sink.settle(2)
    # The new run's own entries go first at exit; the server orders by time anyway.
    assert sorted(messages(rows)) == ["from the first run", "from the second run"]
    assert not list(spool.glob("*.jsonl*"))


def test_flood_at_exit_is_delivered_spooled_or_counted(script: Any, sink: Any) -> None:
    """More than the exit budget can ship: what is not delivered is spooled (raw lines when
    there is no time to make entries), and the message's numbers are exact. Replaying the
    spool then stores every line exactly once."""
    total = 100_000
    path = script(f"for i in range({total}):\n    print('seq', i)\n")
    run = run_python(path, sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="600"))
    assert run.rc == 0
    kept = re.search(r"(\d+) kept in the spool", run.err)
    dropped = sum(int(n) for n in re.findall(r"(\d+) dropped", run.err))
    under_way = re.search(r"(\d+) in a request still under way", run.err)
    maybe = int(under_way.group(1)) if under_way else 0  # stored, or not: the server decides
    replay = subprocess.run(
        [sys.executable, "-m", "vlhook", "spool", "replay"],
        env={**base_env(), **sink.env(), "PYTHONPATH": str(SRC)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert not list(sink.spool.glob("*"))  # empty, or never made: all delivered in time
    rows = sink.settle(total - dropped - maybe, timeout=30)
    seqs = [r["_msg"] for r in rows if r["_msg"].startswith("seq")]
    assert len(seqs) == len(set(seqs))  # nothing twice
    assert total - dropped - maybe <= len(seqs) <= total - dropped
    if kept:
        assert f"replayed {kept.group(1)} entries" in replay.stdout, replay.stdout


BURST = """
import sys
pad = "x" * 92
for i in range(200_000):
    print(f"{i:07d} {pad}")
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        sys.stderr.write("peak at the end of the loop: " + line)
"""


def _peak_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


def test_the_exit_makes_batches_only_a_few_ahead_of_delivery(script: Any, sink: Any) -> None:
    """A burst fills the buffer (`ON_FULL=block`); at exit the rest is made into batches only
    a few ahead of delivery, so the exit adds little to the process's peak memory (making all
    of it at once added ~24 MiB here), and every line is still stored once."""
    env = {**base_env(), **sink.env(VICTORIALOGS_ON_FULL="block",
                                    VICTORIALOGS_EXIT_TIMEOUT_MS="60000")}  # fmt: skip
    env["PYTHONPATH"] = str(DROPIN)
    proc = subprocess.Popen([sys.executable, str(script(BURST))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    peak, deadline = 0, time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # the exit takes a few seconds
        try:
            peak = max(peak, _peak_kib(proc.pid))
        except OSError:  # it has just ended
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    found = re.search(rb"peak at the end of the loop: VmHWM:\s+(\d+) kB", err)
    assert found, err
    added_at_exit_mib = (peak - int(found.group(1))) / 1024
    assert added_at_exit_mib < 8, added_at_exit_mib
    sink.server.force_flush()
    printed = f'test_id:="{sink.test_id}" stream:=stdout'  # (the peak went to stderr)
    query = f"{printed} | stats count() as rows, count_uniq(_msg) as lines"
    (counts,) = sink.server.query(query)
    assert (int(counts["rows"]), int(counts["lines"])) == (200_000, 200_000)


# 60,000 lines, then a thread holds the interpreter for ~0.3-0.6 s while the exit makes
# entries of them.
STALLED_EXIT = held_at_exit(
    'pad = "x" * 92\nfor i in range(60_000):\n    print(f"{i:07d} {pad}")\n', 40_000_000
)


def test_a_stall_while_the_exit_makes_entries_does_not_send_the_rest_to_the_spool(
    script: Any, sink: Any
) -> None:
    """The exit writes raw lines to the spool only when making entries at the rate it sees
    would not finish in time. One stall (another thread holding the interpreter for a moment)
    is not that rate: judged on it alone, everything left went to the spool, in a process that
    had the time to deliver it all."""
    run = run_python(script(STALLED_EXIT), sink.env(VICTORIALOGS_EXIT_TIMEOUT_MS="8000"))
    assert run.rc == 0, run.err
    assert "kept in the spool" not in run.err, run.err
    sink.server.force_flush()
    query = f'test_id:="{sink.test_id}" | stats count() as rows, count_uniq(_msg) as lines'
    (counts,) = sink.server.query(query)
    assert (int(counts["rows"]), int(counts["lines"])) == (60_000, 60_000), run.err


# An uncaught exception's traceback keeps `a` alive until the modules are cleared: its
# `__del__` prints at interpreter teardown, after vlhook's exit flush, when no import works.
PRINTS_AT_TEARDOWN = (
    "class A:\n"
    "    def __del__(self):\n"
    "        print('bye from del')\n"
    "a = A()\n"
    "raise ValueError('x')\n"
)


def test_a_print_at_interpreter_teardown_changes_nothing_on_stderr(
    script: Any, tmp_path: Any
) -> None:
    """Delivered everything, so no spool loaded: the late line cannot be kept (nothing can be
    imported any more) and is counted as dropped, without a word. It used to add `vlhook: (a
    message could not be shown)`: the late write imported modules, and so did the filter of
    the internal error's message."""
    path = script(PRINTS_AT_TEARDOWN)
    spool = tmp_path / "spool"
    bare, _ = as_without_vlhook(path, {"VICTORIALOGS_URL": f"file://{tmp_path / 'out.jsonl'}",
                                       "VICTORIALOGS_SPOOL_DIR": str(spool)})  # fmt: skip
    assert bare.rc == 1 and bare.stdout == b"bye from del\n"
    assert not spool.exists()


def test_an_extra_value_whose_str_never_returns_neither_holds_the_exit_nor_goes_uncounted(
    script: Any, tmp_path: Any
) -> None:
    """The sender, making the record's entry, is stuck in the program's __str__ (holding
    the group it took): the exit ends within its budget all the same, and counts the group's
    lines as dropped. It waited for that call as long as it took (here 20 s), and counted
    nothing when it did not."""
    path = script("import logging, time\n"
                  "class Hang:\n"
                  "    def __str__(self):\n"
                  "        time.sleep(20)\n"
                  "        return 'late'\n"
                  "logging.getLogger('t').warning('hang', extra={'h': Hang()})\n"
                  "for i in range(5):\n"
                  "    print('after', i)\n")  # fmt: skip
    run = run_python(path, {"VICTORIALOGS_URL": f"file://{tmp_path / 'out.jsonl'}",
                            "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
                            "VICTORIALOGS_EXIT_TIMEOUT_MS": "1000"})  # fmt: skip
    assert run.rc == 0 and run.elapsed < 8, run.elapsed
    assert "6 dropped: no time left" in run.err, run.err


def test_a_first_line_printed_at_interpreter_teardown_says_nothing(
    script: Any, tmp_path: Any
) -> None:
    """The program's only output comes at teardown, after the exit: the sender cannot start
    then (no import works). Before Python 3.11 that start failed and went through itself
    again, each time, until the recursion limit: an internal error on stderr."""
    path = script("class A:\n    def __del__(self):\n        print('only line')\na = A()\n")
    bare = run_python(path, dropin=False)
    hooked = run_python(path, {"VICTORIALOGS_URL": f"file://{tmp_path / 'out.jsonl'}",
                               "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
                               "VICTORIALOGS_DEBUG": "1"})  # fmt: skip
    assert (hooked.rc, hooked.out) == (bare.rc, bare.out) == (0, "only line\n")
    assert [line for line in hooked.err.splitlines() if "vlhook: active" not in line] == []


@pytest.mark.parametrize("secret", ["", " Bearer abcdefghijklmnop0"])
def test_a_print_at_interpreter_teardown_is_kept_where_the_exit_spooled(
    script: Any, tmp_path: Any, secret: str
) -> None:
    """The exit spooled (the server is down), so what a late write needs was loaded before
    its report: the line printed at teardown is in the spool (redacted: a built-in pattern's
    replacement imports nothing), and stderr holds only the program's own output and that
    report."""
    path = script(PRINTS_AT_TEARDOWN.replace("bye from del", f"bye from del{secret}"))
    bare = run_python(path, dropin=False)
    spool = tmp_path / "spool"
    hooked = run_python(path, {"VICTORIALOGS_URL": f"http://127.0.0.1:{_unused_port()}",
                               "VICTORIALOGS_EXIT_TIMEOUT_MS": "300",
                               "VICTORIALOGS_SPOOL_DIR": str(spool)})  # fmt: skip
    assert (hooked.rc, hooked.stdout) == (bare.rc, bare.stdout)
    report = hooked.err.splitlines()[-1]
    assert report.startswith("vlhook: at exit, of the entries not yet delivered: 1 kept")
    assert hooked.err == bare.err + report + "\n"
    (captures,) = spool.glob("*.captures")
    rows = [json.loads(line) for line in captures.read_text().splitlines()[1:]]
    masked = " Bearer [REDACTED]" if secret else ""
    assert [row[2] for row in rows] == [f"bye from del{masked}\n"]
