"""A real VictoriaLogs for the tests, the benchmarks and the demo.

`binary()` finds or builds the pinned release: `$VLHOOK_VICTORIALOGS_BIN`, else `victoria-logs`
on PATH, else `go install` of the published module into `.cache/victorialogs/<version>/` in this
checkout (ignored by git; built once, then reused). `VictoriaLogs` runs one node on a free
loopback port with its own data directory; `Cluster` runs storage nodes behind insert/select
nodes. Every wait is bounded, and every process started here is killed when this process ends.

As a script: `python tests/victorialogs.py` prints the binary's path, building it if needed
(`make victorialogs`); it exits 1 with the reason when no binary can be had.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any, Optional

VERSION = "v1.52.1"
MODULE = "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"
REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "victorialogs" / VERSION
BIN_ENV = "VLHOOK_VICTORIALOGS_BIN"
BUILD_TIMEOUT_S = 1800  # a cold build (module downloads + compile) took ~40 s on 2 cores
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


class Unavailable(RuntimeError):
    """No VictoriaLogs binary can be had; the message says why and what to do."""


def say(message: str) -> None:
    sys.stderr.write(f"victorialogs: {message}\n")
    sys.stderr.flush()


def find() -> Optional[Path]:
    """The binary to use without building one, if any (raises when the variable is wrong)."""
    given = os.environ.get(BIN_ENV)
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise Unavailable(f"{BIN_ENV}={given} is not an executable file")
        return path
    on_path = shutil.which("victoria-logs")
    if on_path:
        return Path(on_path)
    cached = CACHE / "victoria-logs"
    return cached if cached.is_file() else None


def binary() -> Path:
    """The VictoriaLogs binary: found, else built with `go install`."""
    found = find()
    return found if found is not None else _build()


def _build() -> Path:
    go = shutil.which("go")
    if go is None:
        raise Unavailable(
            f"no VictoriaLogs binary and no Go toolchain to build one: install Go, put "
            f"victoria-logs {VERSION} on PATH, or set {BIN_ENV} to its path"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / "victoria-logs"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the others reuse it
        if target.is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix="build-", dir=CACHE))
        try:
            _go_install(go, staging)
            os.replace(staging / "victoria-logs", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    say(f"built {target}")
    return target


def _go_install(go: str, gobin: Path) -> None:
    toolchain = os.environ.get("GOTOOLCHAIN")
    say(
        f"building VictoriaLogs {VERSION} from the Go module proxy into {CACHE.relative_to(REPO)}"
        + (f" (GOTOOLCHAIN={toolchain})" if toolchain else "")
        + ": ~40 s on 2 cores with empty Go caches (more on a slow network), seconds with warm ones"
    )
    env = dict(os.environ, CGO_ENABLED="0", GOBIN=str(gobin))
    started = time.monotonic()
    try:
        result = subprocess.run(
            [go, "install", f"{MODULE}@{VERSION}"],
            env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(
            f"go install of VictoriaLogs {VERSION} took over {BUILD_TIMEOUT_S} s"
        ) from exc
    if result.returncode != 0 or not (gobin / "victoria-logs").is_file():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise Unavailable(
            f"go install {MODULE}@{VERSION} failed (exit {result.returncode}):\n{tail}\n"
            f"(set GOTOOLCHAIN if it needs a newer Go; or set {BIN_ENV})"
        )
    say(f"go install took {time.monotonic() - started:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float, cafile: Optional[Path] = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A VictoriaLogs reached by URL: what tests need to read back what it stored."""

    def __init__(self, url: str, cafile: Optional[Path] = None) -> None:
        self.url = url.rstrip("/")
        self.cafile = cafile  # for https: the certificate to trust

    def force_flush(self) -> None:
        """Make every row ingested so far searchable at once (else: about a second later)."""
        status, body = _get(f"{self.url}/internal/force_flush", 10, self.cafile)
        if status != 200:
            raise RuntimeError(f"force_flush on {self.url}: HTTP {status} {body[:200]!r}")

    def query(self, logsql: str, *, limit: int = 1_000_000, **params: str) -> list[dict[str, str]]:
        args = urllib.parse.urlencode({"query": logsql, "limit": str(limit), **params})
        status, body = _get(f"{self.url}/select/logsql/query?{args}", 30, self.cafile)
        if status != 200:
            raise RuntimeError(f"query {logsql!r} on {self.url}: HTTP {status} {body[:300]!r}")
        # One row per b"\n" (str.splitlines would also split at U+2028, U+0085...), decoded
        # leniently: invalid UTF-8 that was stored comes back as it was sent.
        lines = body.split(b"\n")
        return [json.loads(line.decode("utf-8", "replace")) for line in lines if line.strip()]

    def rows(self, logsql: str) -> list[dict[str, str]]:
        """Flush, then query: every row stored so far that matches, oldest first."""
        self.force_flush()
        return self.query(f"{logsql} | sort by (_time)")


_running: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_running.values()):
        with contextlib.suppress(OSError):
            proc.kill()
            proc.wait(5)


def _death_signal() -> Any:
    """A function for the child to run before exec: get SIGKILL when the thread that started it
    ends (Linux's PR_SET_PDEATHSIG), so a test run that is killed leaves no server behind.
    Only for children of the main thread (another thread may end before its server should).
    Prepared in the parent: the child of a threaded process must not import anything."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)


_DIE_WITH_PARENT = _death_signal()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class VictoriaLogs(Server):
    """One VictoriaLogs process on loopback with its own data directory.

    `args` are extra flags (`-storageNode=...` makes it an insert/select node of a cluster).
    `tls` = (certificate, key): it serves https only. `outlive`: the process is left running
    when this one ends (in its own session, not killed at exit). The port and the data directory
    stay the same across `restart()`.
    """

    def __init__(
        self,
        bin_path: Path,
        workdir: Path,
        *,
        args: tuple[str, ...] = (),
        tls: Optional[tuple[Path, Path]] = None,
        outlive: bool = False,
    ) -> None:
        self.port = free_port()
        self.outlive = outlive
        if tls:
            cert, key = tls
            args = (*args, "-tls", f"-tlsCertFile={cert}", f"-tlsKeyFile={key}")
        scheme = "https" if tls else "http"
        super().__init__(f"{scheme}://127.0.0.1:{self.port}", tls[0] if tls else None)
        self.binary = bin_path
        self.workdir = workdir
        self.args = args
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> VictoriaLogs:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "server.log", "ab")  # closed in stop()
        argv = [str(self.binary), f"-storageDataPath={self.workdir / 'data'}",
                f"-httpListenAddr={self.address}", *self.args]  # fmt: skip
        tied = not self.outlive and _in_main_thread()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(self.workdir), preexec_fn=_DIE_WITH_PARENT if tied else None,
            start_new_session=self.outlive,
        )  # fmt: skip
        if not self.outlive:
            _running[self.proc.pid] = self.proc
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"VictoriaLogs exited at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if _get(f"{self.url}/health", 1, self.cafile)[0] == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"VictoriaLogs not ready in {READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def freeze(self) -> None:
        """SIGSTOP: the node keeps its socket (connections are accepted) but never answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        # The signal is delivered asynchronously: wait (bounded) until the kernel says stopped.
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and stat.exists():
            if stat.read_text().rpartition(")")[2].split()[0] in ("T", "t"):
                return
            time.sleep(0.005)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (graceful: acknowledged rows are kept), SIGKILL if it does not end in time."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGCONT)  # a frozen process cannot act on SIGTERM
                proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            _running.pop(proc.pid, None)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> VictoriaLogs:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Cluster(Server):
    """Storage nodes behind insert/select nodes (each started with `-storageNode=...`).

    Clients write to any of `urls`; reads go through the first front node, and `force_flush`
    reaches every storage node (a front node does not forward it).
    """

    def __init__(self, bin_path: Path, workdir: Path, *, storage: int = 2, front: int = 2) -> None:
        self.storage = [VictoriaLogs(bin_path, workdir / f"storage{i}") for i in range(storage)]
        nodes = ",".join(node.address for node in self.storage)
        self.front = [
            VictoriaLogs(bin_path, workdir / f"front{i}", args=(f"-storageNode={nodes}",))
            for i in range(front)
        ]
        super().__init__(self.front[0].url)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.front]

    def start(self) -> Cluster:
        try:
            for node in self.storage + self.front:
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def force_flush(self) -> None:
        for node in self.storage:
            node.force_flush()

    def stop(self) -> None:
        for node in self.front + self.storage:
            node.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    try:
        path = binary()
    except Unavailable as exc:
        say(str(exc))
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
