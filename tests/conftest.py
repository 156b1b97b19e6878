"""Shared test harness: real interpreters with the drop-in, and a sink to ship to.

The sink is `vlhook listen`'s in-process Receiver, or a real VictoriaLogs when
VLHOOK_TEST_VICTORIALOGS_URL is set (entries are then found by a per-test `test_id` field).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import pytest

from vlhook import _diag

REPO = Path(__file__).resolve().parents[1]
DROPIN = REPO / "sitecustomize"
SRC = REPO / "src"
PYTHON = sys.executable


def purelib(python: Path) -> str:
    """The site-packages directory of another interpreter (a venv's)."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.fixture(scope="session")
def vlhook_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, once per test session."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [PYTHON, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("vlhook-*.whl")
    return found


def venv_with(root: Path, wheel: Path, *packages: str) -> Path:
    """A fresh venv at `root` with the wheel installed (its vlhook.pth: no PYTHONPATH needed)
    and any other packages; returns its python."""
    import venv

    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site = purelib(python)
    for args in (["--no-deps", str(wheel)], list(packages)):
        if args:
            subprocess.run(
                [PYTHON, "-m", "pip", "install", "-q", "--target", site, *args],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
    return python


INTERNAL_ERROR = b"vlhook: internal error"


@dataclass
class Run:
    rc: int
    stdout: bytes
    stderr: bytes
    elapsed: float

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


def base_env() -> dict[str, str]:
    """The test process's environment without anything that would activate vlhook."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICTORIALOGS_")}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def run_python(
    script: Union[str, Path],
    env: Optional[dict[str, str]] = None,
    *,
    dropin: bool = True,
    args: tuple[str, ...] = (),
    timeout: float = 60,
    python: str = PYTHON,
    allow_internal_errors: bool = False,
    stdin: Optional[bytes] = None,
) -> Run:
    """Run a real interpreter on a script file; the drop-in on PYTHONPATH when asked."""
    full_env = base_env()
    full_env.update(env or {})
    if dropin:
        full_env["PYTHONPATH"] = str(DROPIN)
    start = time.monotonic()
    proc = subprocess.run(
        [python, str(script), *args],
        env=full_env,
        capture_output=True,
        timeout=timeout,
        input=stdin,
        cwd=str(Path(script).parent),
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    if not allow_internal_errors:
        # An error the interceptor swallowed is still a bug: it always reports one on stderr.
        assert INTERNAL_ERROR not in proc.stderr, proc.stderr.decode("utf-8", "replace")
    return run


@pytest.fixture
def script(tmp_path: Path) -> Any:
    """script("code") writes a program file and returns its path."""

    def write(code: str, name: str = "app.py") -> Path:
        path = tmp_path / name
        path.write_text(code)
        return path

    return write


class Sink:
    """Where test programs ship to, and what arrived there."""

    def __init__(self, url: str, spool: Path, receiver: Any = None) -> None:
        self.url = url
        self.receiver = receiver
        self.spool = spool
        self.test_id = uuid.uuid4().hex[:16]

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "VICTORIALOGS_URL": self.url,
            "VICTORIALOGS_FIELDS": f"test_id={self.test_id}",
            "VICTORIALOGS_FLUSH_INTERVAL_MS": "100",
            # Not the machine-wide default: another test's spooled batches would be replayed.
            "VICTORIALOGS_SPOOL_DIR": str(self.spool),
        }
        env.update(extra)
        return env

    def entries(self, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
        """Wait (bounded) until at least `count` entries of this test arrived; return them all."""
        if self.receiver is not None:
            rows = self.receiver.wait_for(count, timeout=timeout)
            return [r for r in rows if r.get("test_id") == self.test_id]
        return self._query(count, timeout)

    def settle(self, count: int, timeout: float = 10.0, quiet: float = 0.3) -> list[dict[str, str]]:
        """Entries once `count` arrived and nothing more came for `quiet` seconds (to prove
        that no duplicate follows)."""
        rows = self.entries(count, timeout)
        time.sleep(quiet)
        return self.entries(len(rows), timeout)

    def _query(self, count: int, timeout: float) -> list[dict[str, str]]:
        base = self.url.rstrip("/")
        deadline = time.monotonic() + timeout
        rows: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            urllib.request.urlopen(f"{base}/internal/force_flush", timeout=5).read()
            query = urllib.parse.urlencode(
                {"query": f"test_id:{self.test_id} | sort by (_time)", "limit": "1000000"}
            )
            with urllib.request.urlopen(f"{base}/select/logsql/query?{query}", timeout=10) as r:
                rows = [json.loads(line) for line in r.read().splitlines() if line.strip()]
            if len(rows) >= count:
                return rows
            time.sleep(0.2)
        return rows


@pytest.fixture
def receiver() -> Iterator[Any]:
    from vlhook._listen import Receiver

    with Receiver() as r:
        yield r


@pytest.fixture
def sink(receiver: Any, tmp_path: Path) -> Sink:
    real = os.environ.get("VLHOOK_TEST_VICTORIALOGS_URL")
    if real:
        return Sink(real, tmp_path / "spool")
    return Sink(receiver.url, tmp_path / "spool", receiver)


@pytest.fixture(autouse=True)
def no_swallowed_errors() -> Iterator[None]:
    """In-process tests: any error the interceptor swallowed fails the test."""
    before = len(_diag.internal_errors)
    yield
    new = _diag.internal_errors[before:]
    assert not new, f"vlhook swallowed internal errors: {new}"


def messages(rows: list[dict[str, str]], stream: Optional[str] = None) -> list[str]:
    return [r["_msg"] for r in rows if stream is None or r.get("stream") == stream]
