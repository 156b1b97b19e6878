"""Shared test harness: real interpreters with the drop-in, and real VictoriaLogs to ship to.

`sink` ships to one VictoriaLogs shared by the session (started here from the pinned binary that
tests/victorialogs.py finds or builds; or the server VLHOOK_TEST_VICTORIALOGS_URL names) and reads
back what it stored. `vl_node` and `vl_cluster` start servers of a test's own, to break them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import pytest

import victorialogs
from victorialogs import Cluster, Server, VictoriaLogs
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


#: Sockets bound to loopback ports and never listened on, kept for the whole run (see
#: refused_port).
_REFUSING: list[socket.socket] = []


def refused_port() -> int:
    """A loopback port whose connections are refused for the whole run: bound here and never
    listened on, so no server a later test starts (VictoriaLogs, a proxy) can take it, as
    one could take a port merely found free."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _REFUSING.append(held)
    return int(held.getsockname()[1])


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


def as_without_vlhook(
    script: Union[str, Path], env: dict[str, str], *, dropin: bool = True, **kwargs: Any
) -> tuple[Run, Run]:
    """The program run without vlhook, then with it (`env`, the drop-in as `dropin` says): its
    exit status, stdout and stderr must be the same byte for byte. Both runs, for what the
    test reads on."""
    plain = {k: v for k, v in env.items() if not k.startswith("VICTORIALOGS_")}
    bare = run_python(script, plain, dropin=False, **kwargs)
    hooked = run_python(script, env, dropin=dropin, **kwargs)
    assert (hooked.rc, hooked.stdout, hooked.stderr) == (bare.rc, bare.stdout, bare.stderr)
    return bare, hooked


def burst_program(lines: int, said: str) -> str:
    """A program that prints `lines` lines of 100 characters in a loop as fast as it can,
    then writes `said` to stderr: an f-string's body over `stats` (`vlhook.stats()`)."""
    return (
        "import sys, vlhook\n"
        f"for i in range({lines}):\n"
        '    print(f"{i:06d} " + "x" * 93)\n'
        "stats = vlhook.stats()\n"
        f'sys.stderr.write(f"{said}\\n")\n'
    )


def held_at_exit(printing: str, work: int) -> str:
    """A program: `printing` (its lines), then a thread that holds the interpreter in one C
    call, `sum(range(work))`, starting 5 ms after the exit has begun, while vlhook's exit flush
    makes entries of those lines. (The thread starts with the program and waits for an atexit
    callback to let it go: Python 3.12 starts no thread once the exit has begun, not even in
    such a callback. That callback runs before vlhook's exit flush, registered at start-up and
    so run last.)"""
    return (
        "import atexit, threading, time\n" + printing + "\ndef hold_the_interpreter():\n"
        "    exiting.wait()\n"
        "    time.sleep(0.005)  # the exit has begun by then\n"
        f"    sum(range({work}))  # one C call: nothing else runs Python meanwhile\n"
        "exiting = threading.Event()\n"
        "threading.Thread(target=hold_the_interpreter, daemon=True).start()\n"
        "atexit.register(exiting.set)\n"
    )


@pytest.fixture
def script(tmp_path: Path) -> Any:
    """script("code") writes a program file and returns its path."""

    def write(code: str, name: str = "app.py") -> Path:
        path = tmp_path / name
        path.write_text(code)
        return path

    return write


def shipped(script: Any, sink: Sink, code: str, count: int) -> list[dict[str, str]]:
    """Run the program with vlhook shipping to the sink; the `count` rows it stored."""
    run = run_python(script(code), sink.env())
    assert run.rc == 0, run.err
    return sink.settle(count)


class Sink:
    """Where test programs ship to (a real VictoriaLogs), and what it stored for this test.

    Every entry a program ships through `env()` carries this test's `test_id`, so tests can
    share one server: what a test reads back is only its own rows.
    """

    def __init__(self, server: Server, spool: Path, *, lag: float = 0.0) -> None:
        self.server = server
        self.url = server.url
        self.spool = spool
        self.lag = lag  # how long after a 200 a row may still become visible (cluster: ~1 s)
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

    def entries(self, count: int, timeout: float = 10.0, where: str = "") -> list[dict[str, str]]:
        """Wait (bounded) until the server stored at least `count` entries of this test (that
        also match the LogsQL filter `where`: vlhook's own report of the exit is an entry of the
        test too); return them all, oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.server.rows(f'test_id:="{self.test_id}" {where}')
            if len(rows) >= count or time.monotonic() >= deadline:
                return rows
            time.sleep(0.1)

    def settle(self, count: int, timeout: float = 10.0, quiet: float = 0.3) -> list[dict[str, str]]:
        """Entries once `count` are stored and nothing more came for `quiet` seconds (to prove
        that no duplicate follows)."""
        rows = self.entries(count, timeout)
        time.sleep(quiet + self.lag)
        return self.entries(len(rows), timeout)


def _victorialogs_required() -> bool:
    """In CI (or when asked) a missing VictoriaLogs fails the tests that need it."""
    return (
        os.environ.get("CI", "").lower() in ("true", "1")
        or os.environ.get("VLHOOK_REQUIRE_VICTORIALOGS") == "1"
    )


NEEDS_VICTORIALOGS = "real VictoriaLogs needed: "


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Report every skip for want of VictoriaLogs at one place, so `-ra` folds them into one
    line with one reason (pytest would list each test's own location)."""
    outcome: Any = yield
    report = outcome.get_result()
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and NEEDS_VICTORIALOGS in longrepr[2]:
        report.longrepr = (__file__, None, longrepr[2])


@pytest.fixture(scope="session")
def victorialogs_bin(pytestconfig: pytest.Config) -> Path:
    """The real VictoriaLogs binary, found or built once (the build's progress is shown).
    Without one: the tests that need it fail in CI, and are skipped elsewhere."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled():
            return victorialogs.binary()
    except victorialogs.Unavailable as exc:
        reason = f"{NEEDS_VICTORIALOGS}{exc}"
        if _victorialogs_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def victorialogs_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One real VictoriaLogs shared by the whole session (tests tell their rows apart by
    `test_id`), or the server VLHOOK_TEST_VICTORIALOGS_URL names."""
    external = os.environ.get("VLHOOK_TEST_VICTORIALOGS_URL")
    if external:
        yield Server(external)
        return
    binary = request.getfixturevalue("victorialogs_bin")
    with VictoriaLogs(binary, tmp_path_factory.mktemp("victorialogs")) as server:
        yield server


@pytest.fixture
def vl_node(victorialogs_bin: Path, tmp_path: Path) -> Iterator[VictoriaLogs]:
    """A VictoriaLogs of this test's own, to freeze, restart or stop."""
    with VictoriaLogs(victorialogs_bin, tmp_path / "victorialogs") as node:
        yield node


@pytest.fixture
def vl_cluster(victorialogs_bin: Path, tmp_path: Path) -> Iterator[Cluster]:
    """2 storage nodes behind 2 insert/select nodes, for this test only."""
    with Cluster(victorialogs_bin, tmp_path / "cluster") as cluster:
        yield cluster


@pytest.fixture
def sink(victorialogs_server: Server, tmp_path: Path) -> Sink:
    return Sink(victorialogs_server, tmp_path / "spool")


@pytest.fixture
def receiver() -> Iterator[Any]:
    """`vlhook listen`'s in-process receiver: only for tests about `listen` itself or that must
    see the raw requests."""
    from vlhook._listen import Receiver

    with Receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def no_swallowed_errors() -> Iterator[None]:
    """In-process tests: any error the interceptor swallowed fails the test."""
    before = len(_diag.internal_errors)
    yield
    new = _diag.internal_errors[before:]
    assert not new, f"vlhook swallowed internal errors: {new}"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, valid a day, made by openssl (the test is skipped
    where it cannot be)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, timeout=60,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    return cert, key


@pytest.fixture
def tls_server(victorialogs_bin: Path, tmp_path: Path) -> Iterator[VictoriaLogs]:
    """A real VictoriaLogs serving https with a self-signed certificate for 127.0.0.1."""
    cert, key = self_signed_certificate(tmp_path)
    with VictoriaLogs(victorialogs_bin, tmp_path / "victorialogs", tls=(cert, key)) as server:
        yield server


def messages(rows: list[dict[str, str]], stream: Optional[str] = None) -> list[str]:
    return [r["_msg"] for r in rows if stream is None or r.get("stream") == stream]
