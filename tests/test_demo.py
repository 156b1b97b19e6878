"""`make demo` stays true: the demo runs and everything the example wrote arrives."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, SRC, base_env


def test_demo_runs_against_a_local_receiver() -> None:
    env = base_env()
    env["PYTHONPATH"] = str(SRC)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--- 12 entries arrived ---" in result.stdout
    assert '"exception.type": "KeyError"' in result.stdout
    # the Lambda part: both invocations' entries arrived, tagged with their request ids
    assert result.stdout.count("entries with aws_request_id=") == 2
    assert "[ERROR] ValueError: cannot process bob" in result.stdout
