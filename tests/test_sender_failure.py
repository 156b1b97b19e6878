"""A sender that cannot work: its pipeline cannot load (a broken install: one of the package's
modules fails to import), or no thread can be started for it (a container at its pids limit).
The program runs and exits as without vlhook, and is told what became of its lines, counted
exactly. Real programs: with a copy of the drop-in whose `_entry` module raises on import, and
in a pids cgroup that allows one task."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DROPIN, SRC, base_env, messages, run_python
from vlhook._buffer import LineCount, lines_in
from vlhook._captures import discard, text

BROKEN = "raise ImportError('simulated: a module of the package cannot be loaded')\n"
#: Longer than any of these runs takes with the fix: before it, the exit waited all of it.
EXIT_TIMEOUT_MS = 30_000


@pytest.fixture
def broken_dropin(tmp_path: Path) -> Path:
    """A drop-in beside a copy of the package whose entry builder cannot be imported (the
    sender loads it with the rest of its pipeline, when there is work)."""
    root = tmp_path / "broken"
    shutil.copytree(DROPIN, root / "sitecustomize", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SRC, root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "src" / "vlhook" / "_entry.py").write_text(BROKEN)
    return root / "sitecustomize"


def _run(dropin: Path, script: Any, code: str, **env: str) -> Any:
    path = script(code)
    full = {"VICTORIALOGS_URL": "http://127.0.0.1:9", "VICTORIALOGS_SPOOL_DIR": "off",
            "VICTORIALOGS_EXIT_TIMEOUT_MS": str(EXIT_TIMEOUT_MS), "PYTHONPATH": str(dropin),
            **env}  # fmt: skip
    return run_python(path, full, dropin=False, allow_internal_errors=True, timeout=120)


def test_the_exit_does_not_wait_for_a_sender_that_could_not_start(
    broken_dropin: Path, script: Any
) -> None:
    code = (
        "import sys\n"
        "for i in range(20):\n"
        "    print(f'line {i}')\n"
        "sys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'no newline at the end')\n"
        "sys.exit(3)\n"
    )
    run = _run(broken_dropin, script, code)
    assert run.rc == 3
    assert run.out == "".join(f"line {i}\n" for i in range(20)) + "no newline at the end"
    assert run.elapsed < EXIT_TIMEOUT_MS / 3000  # it waited all of it before
    assert "vlhook: internal error in sender start: ImportError: simulated" in run.err
    # Every line, the unfinished one included, counted once, and the reason said.
    assert "at exit, of the entries not yet delivered: 21 dropped: vlhook could not start " \
        "its sender" in run.err  # fmt: skip
    assert "the sender could not start (ImportError: simulated" in run.err


def test_a_writer_blocked_for_room_goes_on_and_flushes_answer_at_once(
    broken_dropin: Path, script: Any, tmp_path: Path
) -> None:
    """With `block` and a buffer that a few hundred lines fill, the program's writes waited
    for room that never came (each up to VICTORIALOGS_TIMEOUT_MS)."""
    said = tmp_path / "said.json"
    code = (
        "import json, sys, time, vlhook\n"
        "for i in range(5000):\n"
        "    print(f'line {i}')\n"
        "started = time.monotonic()\n"
        "flushed = vlhook.flush(20)\n"
        "took = time.monotonic() - started\n"
        f"with open({str(said)!r}, 'w') as fh:\n"
        "    json.dump({'flushed': flushed, 'took': took,\n"
        "               'dropped': vlhook.stats()['dropped']}, fh)\n"
    )
    run = _run(broken_dropin, script, code, VICTORIALOGS_ON_FULL="block",
               VICTORIALOGS_BUFFER_BYTES="65536", VICTORIALOGS_TIMEOUT_MS="20000")  # fmt: skip
    assert run.rc == 0
    assert run.out.splitlines() == [f"line {i}" for i in range(5000)]
    assert run.elapsed < 20  # one wait for room alone took 20 s before
    result = json.loads(said.read_text())
    assert result["flushed"] is False
    assert result["took"] < 1
    assert result["dropped"] == {"sender_failed": 5000}
    assert "5000 dropped: vlhook could not start its sender" in run.err


def test_counting_captures_as_they_come_matches_counting_them_all_at_once() -> None:
    """LineCount (captures refused one by one) and lines_in (what is left, at once) agree: an
    unfinished line counts once, when it begins; a line whose end was shed, not at all."""
    pieces = [
        text(0, b"partial", 1, 7, None),  # begins a line: counted now
        text(0, "end\nwhole\nopen", 2, 7, None),  # ends it, one more, begins another
        text(1, "other thread\n", 3, 8, None),
        text(0, "still open", 4, 7, None),
        discard(0, 7),  # that line's end was shed (and counted then)
        text(0, "next\n", 5, 7, None),
    ]
    count = LineCount()
    assert [count.add(item) for item in pieces] == [1, 2, 1, 0, -1, 1]
    assert [lines_in(pieces[:end]) for end in range(len(pieces) + 1)] == [0, 1, 3, 4, 4, 3, 4]


def test_check_says_the_pipeline_cannot_load(broken_dropin: Path) -> None:
    """`vlhook check` loads what the sender loads: a broken install fails there, plainly,
    before any program loses a line to it."""
    env = {**base_env(), "VICTORIALOGS_URL": "http://127.0.0.1:9",
           "PYTHONPATH": str(broken_dropin.parent / "src")}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "vlhook", "check"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert "FAILED: vlhook cannot load what it sends with (ImportError: simulated" in proc.stdout
    assert "probe" not in proc.stdout  # no endpoint is tried: nothing would be sent anyway


@pytest.fixture
def one_task_cgroup() -> Iterator[Path]:
    """A pids cgroup (v1) that allows one task: a process moved into it cannot start a thread,
    as in a container at its pids limit. Needs root and a writable pids hierarchy."""
    parent = Path("/sys/fs/cgroup/pids")
    if not (parent / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 pids hierarchy here")
    group = parent / f"vlhook-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "pids.max").write_text("1")
    except OSError as exc:
        pytest.skip(f"cannot make a pids cgroup here: {exc}")
    try:
        yield group
    finally:
        for _ in range(50):  # its last task may take a moment to leave after exiting
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_no_thread_to_be_had_the_exit_sends_everything_and_says_why(
    one_task_cgroup: Path, script: Any, sink: Any
) -> None:
    path = script(
        "import time\n"
        "for i in range(5):\n"
        "    print(f'before {i}')\n"
        "time.sleep(0.3)\n"
        "for i in range(5):\n"
        "    print(f'after {i}')\n"
    )
    # The shell joins the group, then becomes the interpreter: its one task.
    procs = one_task_cgroup / "cgroup.procs"
    code = f'echo $$ > {procs} && exec "$0" "$1"'
    env = {**base_env(), **sink.env(), "PYTHONPATH": str(DROPIN)}
    proc = subprocess.run(["sh", "-c", code, sys.executable, str(path)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"before {i}" for i in range(5)] + \
        [f"after {i}" for i in range(5)]  # fmt: skip
    assert "vlhook: the sender thread cannot be started (can't start new thread): what is " \
        "captured waits in memory, and is sent at exit" in proc.stderr  # fmt: skip
    assert "internal error" not in proc.stderr
    stored = messages(sink.settle(10))
    assert sorted(stored) == sorted(proc.stdout.splitlines())  # each once


def test_no_thread_to_be_had_a_writer_under_block_does_not_wait_in_vain(
    one_task_cgroup: Path, script: Any, sink: Any, tmp_path: Path
) -> None:
    """No thread makes room in the buffer until the exit: under `block`, each write past a
    full buffer waited VICTORIALOGS_TIMEOUT_MS for nothing. Now it is shed and counted, and
    the exit sends the rest: stored + dropped = printed."""
    said = tmp_path / "said.json"
    path = script(
        "import json, vlhook\n"
        "for i in range(3000):\n"
        "    print(f'line {i:05d}')\n"
        f"with open({str(said)!r}, 'w') as fh:\n"
        "    json.dump(vlhook.stats()['dropped'], fh)\n"
    )
    procs = one_task_cgroup / "cgroup.procs"
    code = f'echo $$ > {procs} && exec "$0" "$1"'
    env = {**base_env(), **sink.env(VICTORIALOGS_ON_FULL="block", VICTORIALOGS_BUFFER_BYTES="65536",
                                    VICTORIALOGS_TIMEOUT_MS="20000"),
           "PYTHONPATH": str(DROPIN)}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(["sh", "-c", code, sys.executable, str(path)], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 20  # one wait alone took 20 s before
    shed = json.loads(said.read_text()).get("buffer_full", 0)
    assert shed > 0  # 3,000 captures do not fit in 64 KiB
    rows = sink.settle(3000 - shed + 1)  # and vlhook's own entry that reports the drops
    stored = messages(rows, "stdout")
    assert len(stored) == len(set(stored)) == 3000 - shed
    assert messages(rows, "vlhook") == [f"vlhook: {shed} entries dropped (buffer_full: {shed} "
                                        "since start)"]  # fmt: skip
