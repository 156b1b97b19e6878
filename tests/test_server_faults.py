"""A real VictoriaLogs that breaks under a running program: restarted, frozen. (A lost vlinsert
node of a cluster: test_many_servers.py.)"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import DROPIN, Sink, base_env
from victorialogs import VictoriaLogs

# Three batches of 20 numbered lines; the test changes the server between them.
PROGRAM = """
import json, sys, vlhook
for start in (0, 20, 40):
    for i in range(start, start + 20):
        print('seq', i)
    vlhook.flush(30)
    if start < 40:
        sys.stdin.readline()
sys.stderr.write('STATS ' + json.dumps(vlhook.stats()) + '\\n')
"""


def _seqs(rows: list[dict[str, str]]) -> list[int]:
    return sorted(int(m.group(1)) for r in rows if (m := re.fullmatch(r"seq (\d+)", r["_msg"])))


def _wait_for_file(folder: Path, pattern: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(folder.glob(pattern)):
            return True
        time.sleep(0.05)
    return False


def _next(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


def test_lines_written_while_the_server_restarts_are_spooled_then_stored_once(
    script: Any, vl_node: VictoriaLogs, tmp_path: Path
) -> None:
    sink = Sink(vl_node, tmp_path / "spool")
    env = base_env()
    # A batch is retried for twice the request timeout (1 s here), then spooled.
    env.update(sink.env(VICTORIALOGS_TIMEOUT_MS="500"), PYTHONPATH=str(DROPIN))
    proc = subprocess.Popen([sys.executable, str(script(PROGRAM))], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert _seqs(sink.entries(20, timeout=20)) == list(range(20))
        vl_node.stop()
        _next(proc)  # the second batch finds the server down
        assert _wait_for_file(sink.spool, "*.jsonl"), "nothing was spooled"
        vl_node.start()  # same port, same data
        _next(proc)  # the third batch: the spool is replayed first
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    stats = json.loads(err.decode().split("STATS ", 1)[1].splitlines()[0])
    # The second batch went through the spool: still there when the program asked (the third
    # batch goes first, and the flush waits only for it), or replayed already (a busy machine
    # can hold the program back that long).
    assert (stats["spooled"] + stats["replayed"], stats["dropped_total"]) == (20, 0)
    assert b"at exit" not in err  # everything, the spool included, was delivered
    rows = sink.settle(60)
    # Every line once: the first batch survived the restart, the second was replayed once.
    assert _seqs(rows) == list(range(60))
    assert not list(sink.spool.glob("*.jsonl*"))


def test_a_frozen_server_accepts_connections_but_never_answers(vl_node: VictoriaLogs) -> None:
    """What the freeze fixture gives a test: SIGSTOP, and SIGCONT brings it back."""
    vl_node.freeze()
    try:
        socket.create_connection(("127.0.0.1", vl_node.port), timeout=2).close()  # the kernel's
        with pytest.raises(OSError, match="timed out"):
            urllib.request.urlopen(f"{vl_node.url}/health", timeout=1)
    finally:
        vl_node.thaw()
    with urllib.request.urlopen(f"{vl_node.url}/health", timeout=5) as response:
        assert response.status == 200
