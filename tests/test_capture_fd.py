"""VICTORIALOGS_CAPTURE=fd against real VictoriaLogs: whatever reaches fds 1 and 2 (os.write, a
shell child, C code, a Python child) is stored exactly once, and the console is byte for byte
what it is without vlhook — also when the program ends by os._exit(), a signal or SIGKILL, and
on a terminal."""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import DROPIN, PYTHON, Run, Sink, base_env, messages, refused_port, run_python
from vlhook.cli._format import time_ns

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fd capture is Linux-only")

FD = {"VICTORIALOGS_CAPTURE": "fd,logging"}


def bare_and_hooked(path: Path, sink: Sink, **env: str) -> tuple[Run, Run]:
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env(**FD, **env))
    return bare, hooked


def assert_same_console(bare: Run, hooked: Run) -> None:
    assert (hooked.rc, hooked.stdout, hooked.stderr) == (bare.rc, bare.stdout, bare.stderr)


def by_message(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    found = {row["_msg"]: row for row in rows}
    assert len(found) == len(rows), f"stored twice: {sorted(messages(rows))}"
    return found


def test_os_write_and_print_are_stored_once_with_their_stream(script: Any, sink: Sink) -> None:
    path = script(
        "import os, sys\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "print('printed')\n"
        "sys.stdout.flush()\n"
        "os.write(1, b'os.write to 1\\n')\n"
        "os.write(2, b'os.write to 2\\n')\n"
        "os.write(1, b'one write, ' + b'two lines\\nsecond\\n')\n"
        "sys.stdout.buffer.write(b'bytes \\xff ok\\n')\n"
        "sys.stdout.flush()\n"
        "print('ERROR: a level word', file=sys.stderr)\n"
        "os.write(1, b'no newline at the end')\n"
    )
    pid_file = path.parent / "pid"
    bare = run_python(path, dropin=False, args=(str(pid_file),))
    hooked = run_python(path, sink.env(**FD), args=(str(pid_file),))
    assert_same_console(bare, hooked)
    expected = {"printed": "stdout", "os.write to 1": "stdout", "os.write to 2": "stderr",
                "one write, two lines": "stdout", "second": "stdout",
                "bytes \ufffd ok": "stdout", "ERROR: a level word": "stderr",
                "no newline at the end": "stdout"}  # fmt: skip
    rows = by_message(sink.settle(len(expected)))
    assert {msg: row["stream"] for msg, row in rows.items()} == expected
    assert rows["ERROR: a level word"]["level"] == "ERROR"
    # The program's pid (not the helper's), its job and container.
    assert {row["pid"] for row in rows.values()} == {pid_file.read_text()}
    assert {row["job"] for row in rows.values()} == {"app"}


def test_a_line_written_in_pieces_has_the_time_of_its_first(script: Any, sink: Sink) -> None:
    # The helper holds the unfinished line of a read for the next; the line was stamped when
    # it ended: stored after a line written meanwhile (a piped progress bar's, when it ended).
    path = script(
        "import os, time\n"
        "os.write(1, b'A-start ')\n"
        "time.sleep(0.3)\n"
        "os.write(2, b'B\\n')\n"
        "time.sleep(0.3)\n"
        "os.write(1, b'A-end\\nnext\\n')\n"
    )
    assert_same_console(*bare_and_hooked(path, sink))
    rows = sink.settle(3)
    assert messages(rows) == ["A-start A-end", "B", "next"]  # sorted by _time
    times = [time_ns(row["_time"]) or 0 for row in rows]
    assert times[1] - times[0] > 2e8 and times[2] - times[1] > 2e8, times


def _exit_and_stderr_end(path: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run the program with the drop-in: when it exited, when its stderr ended (seconds from
    its start), and what stderr said."""
    full = {**base_env(), **env, "PYTHONPATH": str(DROPIN)}
    start = time.monotonic()
    with subprocess.Popen([PYTHON, str(path)], env=full, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as proc:  # fmt: skip
        assert proc.stderr is not None
        proc.wait(timeout=30)
        exited = time.monotonic() - start
        err = proc.stderr.read()  # to its end: the helper holds the write end
        ended = time.monotonic() - start
    return exited, ended, err.decode()


def test_with_the_server_down_stderr_ends_with_the_program(script: Any, tmp_path: Path) -> None:
    # Batches of an earlier run in the spool, the server down: after the program's exit the
    # helper's own exit tried to replay them, for a second exit budget, holding the console's
    # stderr open (a reader of the pipe waited 1.5 s more for a program that took 1.5 s).
    path = script("print('one line')\n")
    spool = tmp_path / "spool"
    env = {**FD, "VICTORIALOGS_URL": f"http://127.0.0.1:{refused_port()}/",
           "VICTORIALOGS_SPOOL_DIR": str(spool),
           "VICTORIALOGS_EXIT_TIMEOUT_MS": "1500"}  # fmt: skip
    for run in range(2):
        exited, ended, err = _exit_and_stderr_end(path, env)
        assert "1 kept in the spool" in err
        assert ended - exited < 0.5, (run, exited, ended)
    assert len(list(spool.iterdir())) == 2


def test_a_stream_detached_and_wrapped_anew_is_flushed_without_a_word(
    script: Any, sink: Sink
) -> None:
    """The original stream, detached, cannot be flushed (ValueError): nothing of it to push."""
    path = script("import io, sys\n"
                  "sys.stdout = io.TextIOWrapper(sys.stdout.detach(), line_buffering=True)\n"
                  "print('after detach')\n")  # fmt: skip
    bare = run_python(path, dropin=False)
    hooked = run_python(path, sink.env(**FD))
    assert_same_console(bare, hooked)
    assert messages(sink.settle(1)) == ["after detach"]


def test_each_process_says_once_what_became_of_its_lines(script: Any, tmp_path: Path) -> None:
    """Nothing can be kept (no server, no usable spool): the helper (for the printed lines)
    and the program (for its record) each say so in one report of the end, told apart by
    their names. The helper used to add "entries lost" and "entries dropped" for the same
    lines, as its flush of the program's end was not an exit."""
    path = script("import logging\nprint('a line')\nlogging.warning('a record')\n")
    env = {
        **FD,
        "VICTORIALOGS_URL": "http://127.0.0.1:1",
        "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "file"),
        "VICTORIALOGS_EXIT_TIMEOUT_MS": "500",
    }
    (tmp_path / "file").write_text("a file where the spool should be\n")
    run = run_python(path, env)
    lines = [line for line in run.err.splitlines() if line.startswith("vlhook")]
    helper = [line for line in lines if line.startswith("vlhook (fd helper): ")]
    program = [line for line in lines if line.startswith("vlhook: ")]
    assert [line for line in helper if "at exit" in line] and len(helper) == 2, run.err
    assert [line for line in program if "at exit" in line] and len(program) == 2, run.err


def test_shell_child_output_is_stored_once(script: Any, sink: Sink) -> None:
    path = script(
        "import subprocess, sys\n"
        "print('before the child', flush=True)\n"
        "subprocess.run('echo from sh; echo sh error >&2; printf \"%s\\\\n\" a b', shell=True)\n"
        "print('after the child')\n"
    )
    bare, hooked = bare_and_hooked(path, sink)
    assert_same_console(bare, hooked)
    assert bare.stdout == b"before the child\nfrom sh\na\nb\nafter the child\n"
    rows = by_message(sink.settle(6))
    assert {m: r["stream"] for m, r in rows.items()} == {
        "before the child": "stdout", "from sh": "stdout", "sh error": "stderr", "a": "stdout",
        "b": "stdout", "after the child": "stdout"}  # fmt: skip


def test_c_level_writes_through_ctypes_are_stored_once(script: Any, sink: Sink) -> None:
    path = script(
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None)\n"
        "print('python first', flush=True)\n"
        "libc.write(1, b'libc write\\n', 11)\n"
        "libc.printf(b'printf %d %s\\n', 42, b'ok')\n"
        "libc.fflush(None)\n"
        "libc.dprintf(2, b'dprintf to stderr\\n')\n"
        "print('python last')\n"
    )
    bare, hooked = bare_and_hooked(path, sink)
    assert_same_console(bare, hooked)
    assert b"printf 42 ok" in bare.stdout
    rows = by_message(sink.settle(5))
    assert {m: r["stream"] for m, r in rows.items()} == {
        "python first": "stdout", "libc write": "stdout", "printf 42 ok": "stdout",
        "dprintf to stderr": "stderr", "python last": "stdout"}  # fmt: skip


@pytest.mark.parametrize(
    ("ending", "rc"),
    [("os._exit(3)", 3), ("os.kill(os.getpid(), signal.SIGUSR1)", -signal.SIGUSR1),
     ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL)],
    ids=["os._exit", "uncaught-signal", "SIGKILL"],
)  # fmt: skip
def test_output_written_just_before_the_end_is_kept(
    script: Any, sink: Sink, ending: str, rc: int
) -> None:
    lines = 2000
    path = script(
        "import os, signal, sys\n"
        f"for i in range({lines}):\n"
        "    print(f'line {i:05d}')\n"
        "sys.stdout.flush()\n"
        "os.write(2, b'last words\\n')\n"
        "os.write(1, b'unfinished line')\n"
        "sys.stdout.write('in the Python buffer: lost with or without vlhook\\n')\n"
        f"{ending}\n"
    )
    bare, hooked = bare_and_hooked(path, sink)
    assert bare.rc == rc
    assert_same_console(bare, hooked)
    assert b"in the Python buffer" not in bare.stdout
    rows = by_message(sink.settle(lines + 2, timeout=20))
    expected = {f"line {i:05d}" for i in range(lines)} | {"last words", "unfinished line"}
    assert set(rows) == expected


def test_sigkill_from_outside_while_writing(script: Any, sink: Sink, tmp_path: Path) -> None:
    """Killed mid-stream by someone else: every line that reached the fd reaches the server."""
    path = script(
        "import itertools, os, sys, time\n"
        "for i in itertools.count():\n"
        "    os.write(1, b'tick %d\\n' % i)\n"
        "    if i == 300:\n"
        "        open(sys.argv[1], 'w').close()\n"
        "    time.sleep(0.001)\n"
    )
    ready = tmp_path / "ready"
    env = base_env()
    env.update(sink.env(**FD), PYTHONPATH=str(DROPIN))
    proc = subprocess.Popen([PYTHON, str(path), str(ready)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.kill()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and err == b""
    printed = out.decode().splitlines()
    assert len(printed) > 300 and printed == [f"tick {i}" for i in range(len(printed))]
    rows = by_message(sink.settle(len(printed), timeout=20))
    assert sorted(rows) == sorted(printed)


def test_a_kill_of_the_whole_process_group_spares_what_was_written(script: Any, sink: Sink) -> None:
    """`kill -9 -PGID` (GNU timeout, a CI job's end) right after ~2 MB of writes: the helper,
    in a process group of its own, writes out and delivers what was still in the pipe."""
    path = script("import os, signal\n"
                  "for i in range(2000):\n"
                  "    os.write(1, b'%04d ' % i + b'x' * 1018 + b'\\n')\n"
                  "os.killpg(0, signal.SIGKILL)\n")  # fmt: skip
    env = base_env()
    env.update(sink.env(**FD), PYTHONPATH=str(DROPIN))
    proc = subprocess.run([PYTHON, str(path)], env=env, capture_output=True, timeout=60,
                          start_new_session=True)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    assert len(proc.stdout) == 2000 * 1024
    assert len(sink.settle(2000, timeout=30)) == 2000


def read_pty(master: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    """Everything the program (and vlhook's helper) wrote to the terminal, until they close it."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 0.5)[0]:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer is gone
            break
        if not data:
            break
        out += data
    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return out


def run_in_terminal(path: Path, env: Optional[dict[str, str]]) -> tuple[int, bytes]:
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    full = base_env()
    if env is not None:
        full.update(env, PYTHONPATH=str(DROPIN))
    proc = subprocess.Popen([PYTHON, str(path)], env=full, stdin=slave, stdout=slave,
                            stderr=slave, cwd=str(path.parent))  # fmt: skip
    os.close(slave)
    try:
        out = read_pty(master, proc)
    finally:
        os.close(master)
    return proc.returncode, out


def test_terminal_answers_and_renders_as_before(script: Any, sink: Sink) -> None:
    path = script(
        "import os, shutil, sys, time\n"
        "print('isatty', sys.stdout.isatty(), sys.stderr.isatty(), os.isatty(1), os.isatty(2))\n"
        "print('size', tuple(shutil.get_terminal_size()))\n"
        "print('\\x1b[32mgreen\\x1b[0m plain')\n"
        "for p in (10, 60, 100):\n"
        "    sys.stdout.write(f'\\rprogress {p}%')\n"
        "    sys.stdout.flush()\n"
        "print()\n"
        "print('to stderr', file=sys.stderr)\n"
        "os.write(1, b'raw write\\n')\n"
    )
    bare_rc, bare = run_in_terminal(path, None)
    hooked_rc, hooked = run_in_terminal(path, sink.env(**FD))
    assert (hooked_rc, hooked) == (bare_rc, bare)
    assert bare.startswith(b"isatty True True True True\r\nsize (111, 33)\r\n")
    assert b"\rprogress 10%\rprogress 60%\rprogress 100%\r\n" in bare
    rows = by_message(sink.settle(6))
    assert rows["to stderr"]["stream"] == "stderr"
    assert rows["progress 10%\nprogress 60%\nprogress 100%"]["stream"] == "stdout"  # one entry
    assert "green plain" in rows  # the console keeps the colours; entries are stored without


def test_stdout_and_stderr_into_one_pipe_keep_their_order(script: Any, sink: Sink) -> None:
    """`2>&1`: one channel for both fds, so the bytes come out in the order they were written;
    what Python writes to sys.stderr is still stored as stderr."""
    path = script(
        "import os, sys\n"
        "for i in range(300):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    os.write(1, b'raw %d\\n' % i)\n"
    )

    def run(env: Optional[dict[str, str]]) -> bytes:
        full = base_env()
        if env is not None:
            full.update(env, PYTHONPATH=str(DROPIN))
        done = subprocess.run([PYTHON, str(path)], env=full, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60, check=True)  # fmt: skip
        return done.stdout

    assert run(sink.env(**FD)) == run(None)
    rows = by_message(sink.settle(900))
    streams = {(m.split()[0], r["stream"]) for m, r in rows.items()}
    assert streams == {("out", "stdout"), ("err", "stderr"), ("raw", "stdout")}


def test_logging_records_and_tracebacks_are_stored_once(script: Any, sink: Sink) -> None:
    """Records are stored as records (logger, code location); the text their handlers print
    reaches the console but is not stored again; so is a traceback already shipped."""
    path = script(
        "import json, logging, sys, threading\n"
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s:%(name)s:%(message)s')\n"
        "class Json(logging.Formatter):\n"
        "    def format(self, record):\n"
        "        return json.dumps({'message': record.getMessage(), 'shop': 'north'})\n"
        "out = logging.StreamHandler(sys.stdout)\n"
        "out.setFormatter(Json())\n"
        "logging.getLogger('json').addHandler(out)\n"
        "log = logging.getLogger('orders')\n"
        "def noisy():\n"
        "    for i in range(50):\n"
        "        print(f'thread line {i}')\n"
        "t = threading.Thread(target=noisy)\n"
        "t.start()\n"
        "for i in range(50):\n"
        "    log.info('order %d', i)\n"
        "t.join()\n"
        "logging.getLogger('json').warning('as json')\n"
        "print('INFO:orders:order 3')  # the same text, printed: stored\n"
        "raise RuntimeError('the end')\n"
    )
    bare, hooked = bare_and_hooked(path, sink)
    assert_same_console(bare, hooked)
    assert bare.stderr.count(b"INFO:orders:order") == 50 and b"RuntimeError" in bare.stderr
    # 50 records, 50 thread lines, the json record, the printed look-alike, the exception.
    rows = sink.settle(50 + 50 + 1 + 1 + 1)
    records = [r for r in rows if r["stream"] == "logging"]
    assert sorted(r["_msg"] for r in records if r["logger"] == "orders") == sorted(
        f"order {i}" for i in range(50)
    )
    (as_json,) = [r for r in records if r["logger"] == "json"]
    assert as_json["_msg"] == "as json" and as_json["shop"] == "north"  # the printed keys
    printed = messages(rows, "stdout")
    assert sorted(printed) == sorted([f"thread line {i}" for i in range(50)]
                                     + ["INFO:orders:order 3"])  # fmt: skip
    (error,) = [r for r in rows if r["stream"] == "stderr"]
    assert error["exception.type"] == "RuntimeError"
    assert len(rows) == 103  # the json record, printed twice (json and basicConfig), once


def test_python_child_with_vlhook_is_not_shipped_twice(script: Any, sink: Sink) -> None:
    script(
        "import logging, os, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "logging.getLogger('child').info('child record')\n"
        "print('child print')\n"
        "print('child stderr', file=sys.stderr)\n"
        "os.write(1, b'child os.write\\n')\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n",
        name="child.py",
    )
    path = script(
        "import logging, os, subprocess, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "logging.getLogger('parent').info('parent record')\n"
        "subprocess.run([sys.executable, 'child.py', sys.argv[1]], check=True)\n"
        "subprocess.run([sys.executable, 'child.py', sys.argv[1] + '.tee'], check=True,\n"
        "               env={**os.environ, 'VICTORIALOGS_CAPTURE': 'stdout,stderr,logging'})\n"
        "print('parent print')\n"
    )
    child_pid = path.parent / "child-pid"
    env = sink.env(**FD)
    hooked = run_python(path, env, args=(str(child_pid),))
    bare = run_python(path, env, dropin=False, args=(str(child_pid) + ".bare",))
    assert_same_console(bare, hooked)
    rows = sink.settle(2 + 2 * 4)
    got = sorted(messages(rows))
    assert got == sorted(
        ["parent record", "parent print"]
        + 2 * ["child record", "child print", "child stderr", "child os.write"]
    )
    records = {r["pid"] for r in rows if r["_msg"] == "child record"}
    assert records == {child_pid.read_text(), Path(f"{child_pid}.tee").read_text()}


def test_deactivating_gives_the_fds_back(script: Any, sink: Sink) -> None:
    path = script(
        "import os, sys\n"
        "print('captured')\n"
        "from vlhook._activation import deactivate\n"
        "deactivate()\n"
        "print('not captured', flush=True)\n"
        "os.write(1, b'not captured either\\n')\n"
        "print('marker', 'VICTORIALOGS_FD_CAPTURED' in os.environ)\n"
    )
    hooked = run_python(path, sink.env(**FD))
    assert hooked.stdout == b"captured\nnot captured\nnot captured either\nmarker False\n"
    assert messages(sink.settle(1, quiet=1.0)) == ["captured"]


def test_flush_delivers_what_reached_the_fds(script: Any, sink: Sink) -> None:
    """vlhook.flush() returns once the helper delivered what was written before it (the
    program asks the server itself right after)."""
    path = script(
        "import os, sys, urllib.parse, urllib.request, vlhook\n"
        "os.write(1, b'written\\n')\n"
        "print('printed, still in the Python buffer')\n"
        "ok = vlhook.flush(10)\n"
        "base, test_id, out = sys.argv[1:]\n"
        "urllib.request.urlopen(base + '/internal/force_flush').read()\n"
        "query = urllib.parse.urlencode({'query': f'test_id:={test_id}'})\n"
        "rows = urllib.request.urlopen(base + '/select/logsql/query?' + query).read()\n"
        "open(out, 'w').write(f'{ok} {len(rows.splitlines())}')\n"
    )
    out = path.parent / "seen"
    env = sink.env(**FD, VICTORIALOGS_FLUSH_INTERVAL_MS="600000")  # only the flush sends
    run = run_python(path, env, args=(sink.url, sink.test_id, str(out)))
    assert run.rc == 0, run.err
    assert out.read_text() == "True 2"
    assert sorted(messages(sink.settle(2))) == ["printed, still in the Python buffer", "written"]


def test_a_stranger_cannot_silence_lines(script: Any, sink: Sink) -> None:
    """Anyone on the host can see the helper's address; without the token in the program's
    environment, what they send is not heard."""
    path = script(
        "import os, socket, struct, zlib\n"
        "name = os.environ['VICTORIALOGS_FD_CAPTURED'].split(';')[0].split(':')[3]\n"
        "line = b'do not skip me'\n"
        "note = struct.pack('<BBII', 0, 0, len(line), zlib.crc32(line))\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "s.connect(b'\\0' + name.encode())\n"
        "s.sendall(b'N' + struct.pack('<I', len(note)) + note)\n"
        "s.close()\n"
        "os.write(1, line + b'\\n')\n"
    )
    hooked = run_python(path, sink.env(**FD))
    assert hooked.stdout == b"do not skip me\n"
    assert messages(sink.settle(1)) == ["do not skip me"]


def everyone_can_run_python() -> bool:
    """Whether a process that dropped to `nobody` can still import the standard library."""
    import json

    path = Path(json.__file__).resolve()
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in path.parents) and bool(
        os.stat(path).st_mode & 0o004
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not everyone_can_run_python(),
    reason="needs root, and a Python installation that `nobody` can read",
)
def test_workers_that_drop_privileges_are_still_heard(script: Any, sink: Sink) -> None:
    """A pre-fork master started as root, workers running as nobody (gunicorn --user): the
    workers' records are stored once, although their handlers print them."""
    path = script(
        "import logging, os, sys\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.setgid(65534)\n"
        "    os.setuid(65534)\n"
        "    logging.getLogger('worker').info('from the worker')\n"
        "    print('worker print', flush=True)\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "logging.getLogger('master').info('from the master')\n"
    )
    hooked = run_python(path, sink.env(**FD, VICTORIALOGS_SPOOL_DIR="off"))
    assert hooked.rc == 0
    rows = sink.settle(3)
    assert sorted(messages(rows)) == ["from the master", "from the worker", "worker print"]
    assert {r["_msg"]: r["stream"] for r in rows}["from the worker"] == "logging"


def test_a_signal_handler_that_logs_while_a_record_is_handled(script: Any, sink: Sink) -> None:
    """The handler runs between two bytecodes of vlhook's own bookkeeping, on the same thread:
    no deadlock, every record once. (It logs to a logger that prints nothing: a handler that
    writes to a stream the interrupted code is writing to fails without vlhook too.)"""
    path = script(
        "import logging, signal, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "log = logging.getLogger('x')\n"
        "quiet = logging.getLogger('quiet')\n"
        "quiet.propagate = False\n"
        "hits = [0]\n"
        "def on_alarm(signum, frame):\n"
        "    hits[0] += 1\n"
        "    quiet.info('from the handler %d', hits[0])\n"
        "signal.signal(signal.SIGALRM, on_alarm)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)\n"
        "for i in range(3000):\n"
        "    log.info('main %d', i)\n"
        "signal.setitimer(signal.ITIMER_REAL, 0, 0)\n"
        "open(sys.argv[1], 'w').write(str(hits[0]))\n"
    )
    hits = path.parent / "hits"
    run = run_python(path, sink.env(**FD), args=(str(hits),), timeout=60)
    assert run.rc == 0, run.err[-2000:]
    expected = 3000 + int(hits.read_text())
    assert run.err.count("\n") == 3000
    rows = sink.settle(expected)
    assert len(rows) == expected and {r["stream"] for r in rows} == {"logging"}


def test_a_program_that_closes_every_descriptor_keeps_its_sockets(script: Any, sink: Sink) -> None:
    """A daemon's `os.closerange(3, ...)` closes the connection that tells the helper which
    printed lines were a record's, and the program's next sockets take its number. Before,
    vlhook's notes went out on the program's socket, and the record's printed line, not
    noted, was stored again as a stderr line. Now the connection is checked before each use
    and opened anew: the program's sockets carry only its own bytes, each record is stored once."""
    path = script(
        "import logging, os, socket, sys\n"
        "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
        "log = logging.getLogger('daemon')\n"
        "log.info('before')\n"
        "vlhook = sys.modules.get('vlhook')  # with the drop-in only\n"
        "if vlhook:  # delivered: no C extension is being loaded while descriptors close\n"
        "    vlhook.flush(10)\n"
        "os.closerange(3, 1024)\n"
        "pairs = [socket.socketpair() for _ in range(20)]  # the lowest free numbers\n"
        "log.info('after')\n"
        "log.info('once more')\n"
        "for ours, theirs in pairs:\n"
        "    theirs.setblocking(False)\n"
        "    try:\n"
        "        print('received', theirs.recv(4096))\n"
        "    except BlockingIOError:\n"
        "        pass\n"
        "print('done')\n"
    )
    bare, hooked = bare_and_hooked(path, sink)
    assert_same_console(bare, hooked)
    assert bare.stdout == b"done\n"
    rows = sink.settle(4)
    assert sorted((r["stream"], r["_msg"]) for r in rows) == [
        ("logging", "after"), ("logging", "before"), ("logging", "once more"),
        ("stdout", "done")]  # fmt: skip


@pytest.mark.parametrize("ending", ["exec", "os._exit", "SIGTERM"])
def test_what_pythons_buffers_hold_when_the_image_ends_without_writing_them_stays_unwritten(
    script: Any, sink: Sink, ending: str
) -> None:
    # Printed into a pipe, a line waits in Python's buffer; an exec, os._exit() or a signal's
    # death loses it, as without vlhook. vlhook's flush before those wrote the buffers out
    # first: the line reached the console (and was stored) where without vlhook it is lost.
    child = script("print('the next program')\n", name="child.py")
    end = {
        "exec": f"os.execv(sys.executable, [sys.executable, {str(child)!r}])",
        "os._exit": "os._exit(0)",
        "SIGTERM": "os.kill(os.getpid(), signal.SIGTERM)",
    }[ending]
    path = script(f"import os, signal, sys\nprint('still in the buffer')\n{end}\n")
    env = sink.env(VICTORIALOGS_CAPTURE="fd,logging", VICTORIALOGS_FLUSH_ON_OS_EXIT="1")
    plain = {k: v for k, v in env.items() if not k.startswith("VICTORIALOGS_")}
    bare = run_python(path, plain, dropin=False)
    hooked = run_python(path, env)
    assert (hooked.rc, hooked.stdout) == (bare.rc, bare.stdout)
    assert b"still in the buffer" not in hooked.stdout
    if ending == "exec":
        assert messages(sink.settle(1)) == ["the next program"]
