"""What terminal programs write: live displays that end a line and redraw a status line in one
write (rich's Progress and Live, spinners), escape sequences other than colours, lines that
show nothing, and a Ctrl-C while the exit waits for the server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import DROPIN, PYTHON, as_without_vlhook, base_env, messages, refused_port
from vlhook.cli._format import time_ns

#: A live display as rich draws one: each write erases the status line, prints a line over
#: it, and draws the status line again without ending it. Then it waits to be told to end.
LIVE_DISPLAY = (
    "import sys, time\n"
    "sys.stdout.write('status: starting'); sys.stdout.flush()\n"
    "for i in range(4):\n"
    "    time.sleep(0.3)\n"
    "    sys.stdout.write(f'\\r\\x1b[2KERROR: step {i} failed\\nstatus: {i + 1}/4')\n"
    "    sys.stdout.flush()\n"
    "sys.stdin.readline()  # until the test has read what was stored meanwhile\n"
    "sys.stdout.write('\\n')\n"
)


def test_a_live_displays_lines_are_stored_while_it_runs_each_at_its_time(
    script: Any, sink: Any
) -> None:
    # Before, the tee held every such write for the end of a line that never came at a write's
    # end: nothing was stored until the exit, every line had the first write's time, and the
    # level of the line printed over the status line was lost (INFO).
    path = script(LIVE_DISPLAY)
    env = {**base_env(), **sink.env(), "PYTHONPATH": str(DROPIN)}
    with subprocess.Popen([PYTHON, str(path)], env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # fmt: skip
        try:
            running = sink.entries(4, timeout=10)
            assert proc.poll() is None  # stored while the program still runs
        finally:
            out, err = proc.communicate(b"\n", timeout=30)
    assert proc.returncode == 0, err
    assert out.startswith(b"status: starting\r\x1b[2KERROR: step 0 failed\nstatus: 1/4\r")
    assert [row["_msg"] for row in running[:4]] == [
        f"{status}\nERROR: step {i} failed"
        for i, status in enumerate(
            ["status: starting", "status: 1/4", "status: 2/4", "status: 3/4"]
        )
    ]
    rows = sink.settle(5)
    assert messages(rows)[4] == "status: 4/4" and len(rows) == 5
    assert [row["level"] for row in rows] == ["ERROR"] * 4 + ["INFO"]
    times = [row["_time"] for row in rows]
    assert times == sorted(times) and len(set(times)) == 5  # each at the time it was drawn


def test_lines_of_escape_sequences_alone_make_no_entry_and_others_are_read_without_them(
    script: Any, sink: Any
) -> None:
    # A colour reset or the cursor shown again on a line of its own made an entry whose
    # message was empty (the server stored "missing _msg field"); a link's, a window title's
    # or a character set's sequence was left in the message, and hid its level.
    path = script(
        "import sys\n"
        "print('visible 1')\n"
        "print('\\x1b[0m')\n"
        "print('\\x1b[?25h')\n"
        "sys.stdout.write('\\x1b[2K\\r\\x1b[1A\\x1b[2K\\n')\n"
        "print('\\x1b]8;;https://example.com/a\\x1b\\\\ERROR: the link\\x1b]8;;\\x1b\\\\ failed')\n"
        "print('\\x1b]0;a title\\x07WARNING: after a title')\n"
        "print('\\x1b(BERROR: after tput sgr0')\n"
        "print('\\x1b[1;31mERROR\\x1b[0m: coloured')\n"
        "print('visible 2')\n"
        "sys.stdout.write('\\r\\x1b[K\\x1b[?25h')  # a spinner's end, left unfinished\n"
    )
    as_without_vlhook(path, sink.env())
    rows = sink.settle(6)
    assert [(row["_msg"], row["level"]) for row in rows] == [
        ("visible 1", "INFO"),
        ("ERROR: the link failed", "ERROR"),
        ("WARNING: after a title", "WARNING"),
        ("ERROR: after tput sgr0", "ERROR"),
        ("ERROR: coloured", "ERROR"),
        ("visible 2", "INFO"),
    ]


#: What colorama's `init(autoreset=True)` makes of sys.stdout: after each write, the code that
#: resets the colours, so the one after a line's newline waits, unfinished, for the next line.
AUTORESET = (
    "import sys, time\n"
    "class AutoReset:\n"
    "    def __init__(self, stream): self.stream = stream\n"
    "    def write(self, text): self.stream.write(text); self.stream.write('\\x1b[0m')\n"
    "    def flush(self): self.stream.flush()\n"
    "sys.stdout = AutoReset(sys.stdout)\n"
    "print('first')\n"
    "time.sleep(0.6)\n"
    "print('\\x1b[31msecond')\n"
    "time.sleep(0.6)\n"
    "print('third', 3)\n"
)


def test_a_line_after_a_colour_reset_left_unfinished_has_its_own_time(
    script: Any, sink: Any
) -> None:
    # The reset written after a line's newline was held for the next line, with its time: each
    # line took the time of the line before it (0.6 s early here; a status printed every minute
    # was stored a minute early).
    as_without_vlhook(script(AUTORESET), sink.env())
    rows = sink.settle(3)
    assert messages(rows) == ["first", "second", "third 3"]
    times = [time_ns(row["_time"]) or 0 for row in rows]
    assert times[1] - times[0] > 5e8 and times[2] - times[1] > 5e8, times


def _interrupted_exit(script: Any, env: dict[str, str]) -> tuple[int, str, float]:
    """A program that prints three lines and ends, interrupted (SIGINT, as Ctrl-C) 0.4 s into
    vlhook's exit, which would wait 10 s for the server; its status, stderr, and how long it
    took to end after the signal."""
    path = script("import logging\nprint('one')\nprint('two')\nlogging.warning('three')\n")
    full = {**base_env(), **env, "PYTHONPATH": str(DROPIN),
            "VICTORIALOGS_EXIT_TIMEOUT_MS": "10000"}  # fmt: skip
    with subprocess.Popen([PYTHON, str(path)], env=full, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"one\n"  # the program runs, then ends at once
        time.sleep(0.4)
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode(), time.monotonic() - signalled


def test_ctrl_c_while_the_exit_waits_for_a_server_that_is_down_keeps_the_lines(
    script: Any, tmp_path: Path
) -> None:
    # Before, the KeyboardInterrupt ended vlhook's exit where it waited: Python printed
    # vlhook's traceback ("Exception ignored in atexit callback"), and the lines were lost,
    # neither spooled nor said.
    spool = tmp_path / "spool"
    rc, err, took = _interrupted_exit(script, {
        "VICTORIALOGS_URL": f"http://127.0.0.1:{refused_port()}",
        "VICTORIALOGS_SPOOL_DIR": str(spool),
    })  # fmt: skip
    assert rc == 0  # the program's own status: it had ended well
    assert took < 5
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "vlhook: at exit, of the entries not yet delivered: 3 kept in the spool" in err, err
    kept = [json.loads(line) for path in spool.glob("*.jsonl") for line in path.open()]
    assert sorted(entry["_msg"] for entry in kept) == ["one", "three", "two"]


def test_ctrl_c_while_the_exit_waits_for_a_server_that_never_answers_says_so(
    script: Any, tmp_path: Path
) -> None:
    with socket.socket() as listener:  # accepts (the kernel does), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        rc, err, took = _interrupted_exit(script, {
            "VICTORIALOGS_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
            "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
        })  # fmt: skip
    assert rc == 0 and took < 5
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "3 in a request still under way with no answer" in err, err


def test_a_records_message_is_stored_without_its_escape_sequences(script: Any, sink: Any) -> None:
    # werkzeug (Flask's development server) colours its request line in the record's message
    # itself, whatever the handler writes to: every request's entry held the codes.
    path = script(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "log = logging.getLogger('werkzeug')\n"
        "for i in range(40):  # a run of records, and one alone\n"
        "    log.info('\\x1b[35m\\x1b[1mGET /item/%d HTTP/1.1\\x1b[0m 500 -', i)\n"
        "log.warning('\\x1b[33mGET /slow HTTP/1.1\\x1b[0m 200 -')\n"
    )
    as_without_vlhook(path, sink.env())
    rows = sink.settle(41)
    assert [row["_msg"] for row in rows] == [
        *(f"GET /item/{i} HTTP/1.1 500 -" for i in range(40)),
        "GET /slow HTTP/1.1 200 -",
    ]
    assert rows[-1]["level"] == "WARNING" and rows[0]["logger"] == "werkzeug"
