"""A comma list of vlinsert URLs: batches spread over healthy nodes, fail over without loss,
and a node that comes back is used again."""

from __future__ import annotations

import socket
import time
from typing import Any

from conftest import messages, run_python
from vlhook._listen import Receiver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_batches_spread_over_nodes(script: Any, tmp_path: Any) -> None:
    with Receiver() as a, Receiver() as b:
        path = script(
            "import vlhook\nfor i in range(20):\n    print('line', i)\n    vlhook.flush(5)\n"
        )
        env = {"VICTORIALOGS_URL": f"{a.url},{b.url}",
               "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool")}  # fmt: skip
        run_python(path, env)
        got_a, got_b = messages(a.entries()), messages(b.entries())
    assert sorted(got_a + got_b, key=lambda m: int(m.split()[1])) == [
        f"line {i}" for i in range(20)
    ]
    assert got_a and got_b  # both nodes took batches


def test_failover_and_recovery_without_loss(script: Any, tmp_path: Any) -> None:
    down_port = _free_port()
    with Receiver() as up:
        path = script(
            "import sys, time, vlhook\n"
            "for i in range(30):\n"
            "    print('line', i)\n"
            "    vlhook.flush(5)\n"
            "    if i == 9:\n"
            "        sys.stdin.readline()  # the test brings the other node up meanwhile\n"
            "        time.sleep(5.5)  # past the time a failed node is set aside\n"
        )
        import subprocess
        import sys

        from conftest import DROPIN, base_env

        env = base_env()
        env.update(
            VICTORIALOGS_URL=f"http://127.0.0.1:{down_port},{up.url}",
            VICTORIALOGS_SPOOL_DIR=str(tmp_path / "spool"),
            PYTHONPATH=str(DROPIN),
        )
        proc = subprocess.Popen([sys.executable, str(path)], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 20
        while len(up.entries()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        back = Receiver(port=down_port).start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            got_up, got_back = messages(up.entries()), messages(back.entries())
        finally:
            back.stop()
    assert sorted(got_up + got_back, key=lambda m: int(m.split()[1])) == [
        f"line {i}" for i in range(30)
    ]
    assert all(int(m.split()[1]) >= 10 for m in got_back)  # nothing while it was down
    assert got_back  # taken back after it recovered
