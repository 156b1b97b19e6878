"""vlhook when the process runs out of what it needs for a moment: descriptors (a program at
its limit of open files), disk space. That is no reason to give up the sender or the spool for
the rest of the process, as a broken install or an unsafe directory is: the sender's modules
load at its next try, the spool's directory is tried again at the next need, and what could
not be kept meanwhile is dropped as "cannot be written", counted and said, never lost untold.
Real processes with a real limit of open files; the disk's case by a patched mkdir."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import DROPIN, INTERNAL_ERROR, SRC, base_env, messages, run_python
from fault_proxy import FaultProxy
from victorialogs import free_port
from vlhook._delivery.spool import BATCH, Spool
from vlhook._stats import Stats

# How each program below comes to its limit of open files: a limit of 128 (a real one, as
# `ulimit -n` sets), then every descriptor left taken by take_all(), let go by let_go().
LIMITED = """\
import os, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
def take_all():
    held = []
    while len(held) < 128:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            return held, exc.strerror
    raise AssertionError("no limit met")
def let_go(held):
    for fd in held:
        os.close(fd)
"""

# Holds every descriptor the process may open, puts a batch in the spool, lets them go, puts
# another: what each put said, the spool's files, and the counters.
AT_THE_LIMIT = (
    LIMITED
    + """\
import json, sys
sys.path.insert(0, sys.argv[2])
from vlhook._delivery.spool import Spool
from vlhook._stats import Stats

from vlhook import _diag

stats = Stats()
spool = Spool(sys.argv[1], 1 << 20, stats)
_diag.ready()  # as in a process that showed a message before (else see the test below)
held, _ = take_all()
first = spool.put(b'{"_msg":"a"}\\n', 1)
let_go(held)
second = spool.put(b'{"_msg":"b"}\\n', 1)
print(json.dumps({"first": first, "second": second, "files": sorted(os.listdir(sys.argv[1])),
                  "stats": stats.as_dict()}))
"""
)


def test_a_spool_met_at_the_limit_of_open_files_is_used_once_descriptors_are_free(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "spool"
    program = tmp_path / "limit.py"
    program.write_text(AT_THE_LIMIT)
    done = subprocess.run([sys.executable, str(program), str(folder), str(SRC)], env=base_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["first"], result["second"]) == ("spool_unwritable", "")
    assert len(result["files"]) == 1 and result["files"][0].endswith(f"-1{BATCH}")
    assert result["stats"].get("spooled") == 1
    assert done.stderr == (
        f"vlhook: cannot write to the spool {folder}: [Errno 24] Too many open files: "
        f"'{tmp_path}'\n"
    )


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EMFILE])
def test_a_spool_directory_that_cannot_be_made_for_now_is_made_later(
    tmp_path: Path, monkeypatch: Any, code: int
) -> None:
    """A full disk (or no descriptor) when the directory is made: dropped as the disk's, or as
    unwritable, with the reason; the next put makes it."""
    real_mkdir = os.mkdir
    failing = [True]

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: Any = None) -> None:
        if failing[0]:
            raise OSError(code, os.strerror(code))
        real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    stats = Stats()
    store = Spool(str(tmp_path / "parent" / "spool"), 1 << 20, stats)
    reason = store.put(b'{"_msg":"a"}\n', 1)
    assert reason == ("spool_no_space" if code == errno.ENOSPC else "spool_unwritable")
    assert store.refusal == ""
    failing[0] = False
    assert store.put(b'{"_msg":"b"}\n', 1) == ""
    assert stats.as_dict().get("spooled") == 1


PROGRAM = (
    LIMITED
    + """\
import time
for i in range(20):
    print(f"before the limit {i}")
time.sleep(float(os.environ["HOLD_AFTER_S"]))
held, _ = take_all()
time.sleep(float(os.environ["HOLD_S"]))
let_go(held)
for i in range(20):
    print(f"after the limit {i}")
"""
)
PRINTED = [f"before the limit {i}" for i in range(20)] + [f"after the limit {i}" for i in range(20)]


def test_lines_of_an_outage_met_at_the_limit_of_open_files_are_kept_or_counted(
    script: Any, sink: Any
) -> None:
    """The server is down, and while the batch tries again the program takes every descriptor
    it may open: the sender can neither connect, nor load the spool's module, nor open the
    spool. What cannot be kept meanwhile is dropped and counted as "cannot be written" (before:
    the batch was lost untold, an internal error); once the program lets the descriptors go,
    the spool is used again (a refusal would have lasted the process), the rest is kept at the
    exit, and the next run delivers it once. Kept + dropped = printed."""
    path = script(PROGRAM)
    down = sink.env(VICTORIALOGS_URL=f"http://127.0.0.1:{free_port()}",
                    VICTORIALOGS_TIMEOUT_MS="200", VICTORIALOGS_EXIT_TIMEOUT_MS="1000",
                    HOLD_AFTER_S="0.5", HOLD_S="2.5")  # fmt: skip
    first = run_python(path, down)
    assert first.rc == 0 and first.out.splitlines() == PRINTED
    assert "not used" not in first.err, first.err
    kept = re.search(r"(\d+) kept in the spool", first.err)
    dropped = re.search(r"dropped earlier: spool_unwritable: (\d+)\)", first.err)
    assert kept is not None, first.err
    assert int(kept[1]) + (int(dropped[1]) if dropped else 0) == len(PRINTED), first.err
    run_python(script("print('replayed after it')\n", "next.py"), sink.env())
    rows = sink.settle(int(kept[1]) + 1)
    replayed = [m for m in messages(rows) if "limit" in m]
    assert len(replayed) == len(set(replayed)) == int(kept[1])
    assert set(replayed) <= set(PRINTED)


def test_a_sender_that_cannot_load_at_the_limit_of_open_files_loads_once_they_are_free(
    script: Any, sink: Any
) -> None:
    """The program takes every descriptor it may open right after its first lines, before the
    sender loaded its modules (they are files): the sender tries again at each interval, and
    loads once the program lets them go; every line is stored once. Before, it gave up for
    the process at the first try: every line dropped, the exit saying the sender could not
    start."""
    path = script(PROGRAM)
    first = run_python(path, sink.env(HOLD_AFTER_S="0", HOLD_S="1"))
    assert first.rc == 0 and first.out.splitlines() == PRINTED
    assert first.err == "", first.err
    assert sorted(messages(sink.settle(40))) == sorted(PRINTED)


def test_a_message_that_cannot_be_filtered_says_why() -> None:
    """A message is shown only through its filter (credentials masked); when the filter's
    files cannot be opened, the line says so, with the reason and no part of the message,
    once. The message is not taken as told: asked again once descriptors are free, it is
    shown then (before, it was held back as shown for 30 s)."""
    done = subprocess.run([sys.executable, "-c", SAYS_WHY, str(SRC)], env=base_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "vlhook: (a message could not be shown: Too many open files)\n"
        "vlhook: cannot reach https://***@example.com\n"
    )
    assert done.stdout == "[False, False, True]\n"


SAYS_WHY = (
    LIMITED
    + """\
import sys
sys.path.insert(0, sys.argv[1])
from vlhook import _diag
held, _ = take_all()
said = [_diag.warn("cannot reach https://user:secret@example.com", key="k") for _ in range(2)]
let_go(held)
said.append(_diag.warn("cannot reach https://user:secret@example.com", key="k"))
print(said)
"""
)


FIRST_AT_IT = (
    LIMITED
    + """\
held, _ = take_all()
print("first line, at the limit")
let_go(held)
print("after it")
"""
)


def test_a_first_line_printed_at_the_limit_of_open_files_starts_vlhook_as_any(
    script: Any, sink: Any
) -> None:
    """The first capture starts the sender; on Python 3.9 and 3.10 it imports `threading`
    on the program's thread first (see Sender._threading_first_here), which at the limit
    fails: the capture is kept, and the next one starts the sender. Before, that failure was
    reported as an internal error (a message that could not even be shown)."""
    run = run_python(script(FIRST_AT_IT), sink.env())
    assert (run.rc, run.out, run.err) == (0, "first line, at the limit\nafter it\n", "")
    assert messages(sink.settle(2)) == ["first line, at the limit", "after it"]


DIES_OF_IT = (
    LIMITED
    + """\
import sys
print("serving")
vlhook = sys.modules.get("vlhook")
if vlhook:  # delivered: vlhook's pipeline and connection are up, as in a service that ran a while
    vlhook.flush(10)
held, _ = take_all()
print(f"out of descriptors after {len(held)}")
open(os.devnull)  # and dies of it, as a program that leaks them does
"""
)


DIED_OF_IT = "OSError: [Errno 24] Too many open files: '/dev/null'"


def assert_died_of_it_and_all_stored(run: Any, rows: list[dict[str, str]]) -> None:
    """The program died at its limit as it does without vlhook (Python's own traceback on
    stderr, exit code 1), and each line it printed and that traceback were stored once."""
    assert run.rc == 1
    assert run.err.startswith("Traceback (most recent call last):\n"), run.err
    assert run.err.endswith(DIED_OF_IT + "\n"), run.err
    errors = [r for r in rows if r.get("level") == "ERROR"]
    assert len(rows) == len(run.out.splitlines()) + 1 and len(errors) == 1, rows
    assert sorted(messages(rows)) == sorted([*run.out.splitlines(), errors[0]["_msg"]])
    assert errors[0]["_msg"].endswith(DIED_OF_IT)


def test_a_program_that_dies_at_the_limit_of_open_files_has_its_last_lines_delivered(
    script: Any, sink: Any
) -> None:
    """A service leaks descriptors until it dies of it: its last lines and the traceback that
    says why are what its user needs. vlhook holds one descriptor of its own from its first
    delivery on and lets it go when the exit begins, so the exit's own code (a file) loads
    and the lines go out on the open connection. Before, the exit could load nothing at the
    limit: both lines were lost, and stderr said only that a message could not be shown."""
    run = run_python(script(DIES_OF_IT), sink.env())
    serving, last = run.out.splitlines()
    assert serving == "serving" and last.startswith("out of descriptors after ")
    assert_died_of_it_and_all_stored(run, sink.settle(3))


# As LIMITED, at a limit above the number vlhook holds its spare descriptor at from the start
# (as `ulimit -n 1024`, a container's usual limit, is).
DIES_BEFORE_ANY_DELIVERY = (
    LIMITED.replace("128", "512")
    + """\
print("starting")
held, _ = take_all()
print(f"out of descriptors after {len(held)}")
open(os.devnull)  # dies of it before vlhook delivered anything
"""
)


def test_a_short_script_that_dies_at_the_limit_before_any_delivery_has_its_lines_delivered(
    script: Any, sink: Any
) -> None:
    """The same death in a script that ran for a moment: the sender has not made its first
    delivery. vlhook holds its spare descriptor from activation on, above the numbers the
    program's files get. Before, the spare was made after the sender's first step only: the
    exit could load nothing, and all three entries were lost."""
    env = sink.env(VICTORIALOGS_FLUSH_INTERVAL_MS="60000")  # no delivery before the exit
    run = run_python(script(DIES_BEFORE_ANY_DELIVERY), env)
    starting, last = run.out.splitlines()
    assert starting == "starting" and last.startswith("out of descriptors after ")
    assert_died_of_it_and_all_stored(run, sink.settle(3))


def test_a_program_that_dies_at_the_limit_after_the_server_closed_the_connection_reconnects(
    script: Any, sink: Any
) -> None:
    """As above, the server having closed the kept-alive connection after the program's first
    lines (as an idle server does): the descriptor the exit lets go is the one the new
    connection then takes, once the exit's code has loaded."""
    with FaultProxy(sink.url, ["close"]) as proxy:
        run = run_python(script(DIES_OF_IT), sink.env(VICTORIALOGS_URL=proxy.url))
        rows = sink.settle(3)
        faults = proxy.faults()
    assert run.out.startswith("serving\nout of descriptors after "), run.out
    assert_died_of_it_and_all_stored(run, rows)
    assert faults[0] == "close" and len(faults) == 2, faults  # the second on a new connection


CLOSES_THEN_DIES = (
    LIMITED
    + """\
import sys
vlhook = sys.modules.get("vlhook")
print("serving")
if vlhook:
    vlhook.flush(10)  # the sender's first step: its spare descriptor is held
os.closerange(3, 128)  # as a daemon does: vlhook's connection and spare go too
print("closed every descriptor")
if vlhook:
    vlhook.flush(10)
held, _ = take_all()
print(f"out of descriptors after {len(held)}")
open(os.devnull)
"""
)


def test_a_program_that_closed_every_descriptor_and_dies_at_the_limit_has_its_lines_delivered(
    script: Any, sink: Any
) -> None:
    """The program closed the spare descriptor with all the others: the sender's next step
    holds a new one. Before, none was held again, and the exit could load nothing: the last
    line and the traceback were lost."""
    run = run_python(script(CLOSES_THEN_DIES), sink.env())
    assert run.out.splitlines()[:2] == ["serving", "closed every descriptor"]
    assert_died_of_it_and_all_stored(run, sink.settle(4))


THREAD_DIES_OF_IT = (
    LIMITED
    + """\
import threading
held = []
def work():
    held.extend(take_all()[0])
    open(os.devnull)  # the thread dies of it; its report is shown while every descriptor is held
worker = threading.Thread(target=work, name="worker")
worker.start()
worker.join()
let_go(held)
print("after the worker")
"""
)


def test_a_thread_that_dies_at_the_limit_of_open_files_is_reported_as_without_vlhook(
    script: Any, sink: Any
) -> None:
    """The thread's uncaught exception is shown by Python's own report alone and stored once.
    Before, vlhook's hook could not load the module that takes its frames out of tracebacks
    (a file) and said so beside the program's report: "(a message could not be shown: Too
    many open files)"."""
    run = run_python(script(THREAD_DIES_OF_IT), sink.env())
    assert (run.rc, run.out) == (0, "after the worker\n")
    assert run.err.startswith("Exception in thread worker:\nTraceback"), run.err
    assert run.err.endswith("OSError: [Errno 24] Too many open files: '/dev/null'\n"), run.err
    rows = sink.settle(2)
    errors = [r for r in rows if r.get("level") == "ERROR"]
    assert len(rows) == 2 and len(errors) == 1, rows
    assert errors[0]["thread"] == "worker" and "Too many open files" in errors[0]["_msg"]


def test_at_any_limit_of_open_files_fd_capture_leaves_the_programs_output_as_it_was(
    script: Any, sink: Any
) -> None:
    """`VICTORIALOGS_CAPTURE=fd` started under each limit from 4 to 16 open files (`ulimit -n`):
    what the program writes to fds 1 and 2 and its exit status are as without vlhook. At 8 the
    helper forked to read the fds could not open its own code: it ended, and every write of
    the program's failed (EPIPE) — no output, exit status 1. Now such a helper passes the
    output through, unshipped, and says so."""
    path = script(
        "import os, sys\n"
        "print('to stdout', flush=True)\n"
        "os.write(2, b'to fd 2\\n')\n"
        "print('to stderr', file=sys.stderr)\n"
    )

    def limited(limit: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", f'ulimit -n {limit} && exec "$0" "$1"', sys.executable, str(path)],
            env={**base_env(), **env}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    env = {**sink.env(VICTORIALOGS_CAPTURE="fd,logging"), "PYTHONPATH": str(DROPIN)}
    said = {}
    for limit in range(4, 17):
        bare = limited(limit, {})
        if bare.returncode:  # too few for the interpreter itself (4, on some versions)
            continue
        assert (bare.stdout, bare.stderr) == ("to stdout\n", "to fd 2\nto stderr\n")
        hooked = limited(limit, env)
        theirs = "".join(line for line in hooked.stderr.splitlines(True)
                         if not line.startswith("vlhook"))  # fmt: skip
        assert (hooked.returncode, hooked.stdout, theirs) == (0, bare.stdout, bare.stderr), (
            limit, hooked.stderr)  # fmt: skip
        assert INTERNAL_ERROR.decode() not in hooked.stderr, (limit, hooked.stderr)
        said[limit] = hooked.stderr
    assert len(said) >= 12, said
    # where the helper could not run, it said so, and nothing of vlhook's broke
    assert any("(fd helper): cannot run (OSError: " in text for text in said.values()), said
    assert any("pass" in text for text in said.values()), said
