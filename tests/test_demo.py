"""`make demo` stays true: the demo runs, everything the examples wrote arrives, and it is read
back from a real VictoriaLogs the demo started (or, with none to be had, from the receiver)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import REPO, SRC, base_env
from victorialogs import BIN_ENV, Server


def _demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = base_env()
    full["PYTHONPATH"] = str(SRC)
    full.update(env)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), *args],
        env=full, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _everything_arrived(out: str) -> None:
    assert "--- 12 entries arrived ---" in out
    assert '"exception.type": "KeyError"' in out
    # the Lambda part: both invocations' entries arrived, tagged with their request ids
    assert out.count("entries with aws_request_id=") == 2
    assert "[ERROR] ValueError: cannot process bob" in out


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_demo_starts_a_real_victorialogs_and_stops_it(victorialogs_bin: Path) -> None:
    out = _demo({BIN_ENV: str(victorialogs_bin)}).stdout
    started = re.search(r"started VictoriaLogs v[\d.]+ .* at (http://127\.0\.0\.1:\d+)", out)
    assert started, out
    _everything_arrived(out)
    assert re.search(r"LogsQL query:  demo_run:[0-9a-f]{12}", out)
    assert f"web UI: {started.group(1)}/select/vmui/" in out
    assert "stopped VictoriaLogs" in out and not _answers(started.group(1))


def test_demo_can_leave_the_server_running(victorialogs_bin: Path) -> None:
    out = _demo({BIN_ENV: str(victorialogs_bin), "VLHOOK_DEMO_KEEP": "1"}).stdout
    kept = re.search(r"keeps running at (\S+): stop it with  kill (\d+)", out)
    data = re.search(r"data in (\S+)", out)
    assert kept and data, out
    url, pid = kept.group(1), int(kept.group(2))
    try:
        assert _answers(url)
        run_id = re.search(r"LogsQL query:  (demo_run:[0-9a-f]{12})", out)
        assert run_id
        assert len(Server(url).rows(run_id.group(1))) >= 12 + 8  # the script's and the Lambda's
    finally:
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(data.group(1), ignore_errors=True)


def test_demo_falls_back_to_the_receiver_without_victorialogs(tmp_path: Path) -> None:
    out = _demo({BIN_ENV: str(tmp_path / "no-such-binary")}).stdout
    assert "no VictoriaLogs to be had" in out and "falling back to vlhook's local receiver" in out
    _everything_arrived(out)
