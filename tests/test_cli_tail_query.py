"""`vlhook tail` and `vlhook query` against a real VictoriaLogs, fed by real vlhook-instrumented
programs. The CLI runs as a real process with the drop-in active, as a user's shell would have
it when VICTORIALOGS_URL is exported."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from conftest import DROPIN, PYTHON, SRC, base_env, run_python, self_signed_certificate

HOST = os.uname().nodename
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLOCK = r"\d\d:\d\d:\d\d\.\d{3}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VictoriaLogs:
    """One real VictoriaLogs single node on a free loopback port, with its own storage."""

    def __init__(self, binary: Path, storage: Path, *flags: str) -> None:
        self.port = free_port()
        scheme = "https" if "-tls" in flags else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(binary), f"-storageDataPath={storage}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-loggerLevel=ERROR", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                unverified = ssl._create_unverified_context()  # only to see it is up
                with urllib.request.urlopen(
                    f"{self.url}/health", timeout=1, context=unverified
                ) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"VictoriaLogs did not become healthy at {self.url}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def insert(self, rows: list[dict[str, Any]], headers: Optional[dict[str, str]] = None) -> None:
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        request = urllib.request.Request(
            f"{self.url}/insert/jsonline?_stream_fields=container_name,job", data=body,
            headers={"Content-Type": "application/stream+json", **(headers or {})},
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10).read()

    def rows(self, query: str, count: int, headers: Optional[dict[str, str]] = None,
             timeout: float = 15) -> list[dict[str, str]]:  # fmt: skip
        """The rows matching `query` once there are at least `count` (bounded wait)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            flush = urllib.request.Request(
                f"{self.url}/internal/force_flush", headers=headers or {}
            )
            urllib.request.urlopen(flush, timeout=5).read()
            args = urllib.parse.urlencode({"query": query})
            request = urllib.request.Request(
                f"{self.url}/select/logsql/query?{args}", headers=headers or {}
            )
            with urllib.request.urlopen(request, timeout=10) as r:
                rows = [json.loads(line) for line in r.read().splitlines() if line.strip()]
            if len(rows) >= count:
                break
            time.sleep(0.2)
        return rows


@pytest.fixture(scope="module")
def victorialogs(
    tmp_path_factory: pytest.TempPathFactory, victorialogs_bin: Path
) -> Iterator[VictoriaLogs]:
    server = VictoriaLogs(victorialogs_bin, tmp_path_factory.mktemp("vl"))
    yield server
    server.stop()


def cli_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a shell where VICTORIALOGS_URL is exported: the CLI itself is
    active (the drop-in), so these tests also prove it does not ship its own output."""
    env = base_env()
    env.update(PYTHONPATH=os.pathsep.join([str(DROPIN), str(SRC)]), VICTORIALOGS_URL=url,
               PYTHONIOENCODING="utf-8")  # fmt: skip
    env.update(extra)
    return env


def vlhook(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "vlhook", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def ship(script: Any, tmp_path: Path, url: str, code: str, test_id: str = "", **extra: str) -> str:
    """Run a real program with vlhook shipping to `url`; its entries carry `test_id` (a fresh
    one unless given)."""
    test_id = test_id or uuid.uuid4().hex[:16]
    env = {"VICTORIALOGS_URL": url, "VICTORIALOGS_FIELDS": f"test_id={test_id}",
           "VICTORIALOGS_FLUSH_INTERVAL_MS": "100", "VICTORIALOGS_JOB": "shop",
           "VICTORIALOGS_CONTAINER_NAME": "web", "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool"),
           **extra}  # fmt: skip
    run = run_python(script(code, name=f"app_{uuid.uuid4().hex[:8]}.py"), env)
    assert run.rc == 0, run.err
    return test_id


PROGRAM = (
    "import logging, time\n"
    "logging.basicConfig(format='%(message)s')\n"
    "print('first line')\n"
    "time.sleep(0.01)\n"
    "logging.getLogger('shop.checkout').error('payment failed', extra={'order': 'A 17'})\n"
    "time.sleep(0.01)\n"
    "print('last line')\n"
)


class Reader:
    """Lines read from a pipe or a pty master on a thread, for bounded waits."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # a pty master reads EIO once the child is gone
                data = b""
            with self.cond:
                self.text += data.decode("utf-8", "replace").replace("\r\n", "\n")
                self.cond.notify_all()
            if not data:
                return

    def wait(self, check: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not check(self.text):
                left = deadline - time.monotonic()
                assert left > 0, f"not seen in time; output so far:\n{self.text}"
                self.cond.wait(left)
            return self.text


class Tail:
    """`vlhook tail ...` as a real process; its stdout a pipe, or a terminal (`tty=True`)."""

    def __init__(self, args: list[str], env: dict[str, str], tty: bool = False) -> None:
        self.master = -1
        if tty:
            self.master, slave = pty.openpty()
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "vlhook", "tail", *args], env={**env, "TERM": "xterm"},
                stdin=slave, stdout=slave, stderr=subprocess.PIPE, start_new_session=True,
                preexec_fn=_take_terminal,
            )  # fmt: skip
            os.close(slave)
            self.out = Reader(self.master)
        else:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "vlhook", "tail", *args], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert self.proc.stdout is not None
            self.out = Reader(self.proc.stdout.fileno())
        assert self.proc.stderr is not None
        self.err = Reader(self.proc.stderr.fileno())

    def started(self) -> str:
        return self.err.wait(lambda text: "Ctrl-C stops" in text or self.proc.poll() is not None)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if self.master >= 0:
            os.close(self.master)


def _take_terminal() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def tails() -> Iterator[Callable[..., Tail]]:
    started: list[Tail] = []

    def start(*args: str, env: dict[str, str], tty: bool = False) -> Tail:
        tail = Tail(list(args), env, tty)
        started.append(tail)
        return tail

    yield start
    for tail in started:
        tail.close()


# --- tail ----------------------------------------------------------------------------------


def test_tail_follows_this_hosts_entries_in_colour_and_ctrl_c_ends_it(
    victorialogs: VictoriaLogs, tails: Callable[..., Tail], script: Any, tmp_path: Path
) -> None:
    """The default query is this host's entries; on a terminal, levels are coloured; Ctrl-C
    typed in the terminal ends it with 130 and no traceback; it ships nothing of its own."""
    tail = tails(env=cli_env(victorialogs.url), tty=True)
    assert f'following host:="{HOST}" at {victorialogs.url}' in tail.started()
    other = {"_msg": "from another machine", "host": "elsewhere", "container_name": "x", "job": "y"}
    victorialogs.insert([other])
    test_id = ship(script, tmp_path, victorialogs.url, PROGRAM)
    shown = tail.out.wait(lambda text: text.count(f"test_id={test_id}") >= 3)
    lines = [ANSI.sub("", line) for line in shown.splitlines() if test_id in line]
    assert [re.sub(CLOCK, "T", line) for line in lines] == [
        f"T INFO  [web shop] stdout: first line  test_id={test_id}",
        f'T ERROR [web shop] shop.checkout: payment failed  order="A 17" test_id={test_id}',
        f"T INFO  [web shop] stdout: last line  test_id={test_id}",
    ]
    assert "\x1b[31mERROR" in shown and "\x1b[32mINFO" in shown
    os.write(tail.master, b"\x03")  # Ctrl-C, through the terminal
    assert tail.proc.wait(10) == 130
    errors = tail.err.wait(lambda _: tail.proc.poll() is not None)
    assert "Traceback" not in errors and "internal error" not in errors
    assert "from another machine" not in tail.out.text
    # What the tail printed was not shipped again (the CLI deactivates its own capture).
    assert len(victorialogs.rows(f"test_id:{test_id}", 3)) == 3
    time.sleep(1.5)
    assert len(victorialogs.rows(f"test_id:{test_id}", 4, timeout=1)) == 3


def test_tail_since_and_json(
    victorialogs: VictoriaLogs, tails: Callable[..., Tail], script: Any, tmp_path: Path
) -> None:
    """--since reaches back; without it, only what is new; --json prints the server's lines."""
    marker = uuid.uuid4().hex[:12]
    two_minutes_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 120))
    victorialogs.insert([{"_msg": "older entry", "_time": two_minutes_ago, "marker": marker,
                          "container_name": "c", "job": "j"}])  # fmt: skip
    assert victorialogs.rows(f"marker:{marker}", 1)
    env = cli_env(victorialogs.url)
    since = tails(f"marker:{marker}", "--since", "5m", "--json", env=env)
    recent = tails(f"marker:{marker}", env=env)
    assert "Ctrl-C stops" in since.started() and "Ctrl-C stops" in recent.started()
    ship(
        script,
        tmp_path,
        victorialogs.url,
        "print('newer entry')\n",
        VICTORIALOGS_FIELDS=f"marker={marker}",
    )
    recent_text = recent.out.wait(lambda text: "newer entry" in text)
    assert "older entry" not in recent_text
    lines = since.out.wait(lambda text: "newer entry" in text).splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["_msg"] for r in rows] == ["older entry", "newer entry"]
    assert rows[1]["host"] == HOST and rows[1]["stream"] == "stdout" and "_stream_id" in rows[1]
    assert "\x1b[" not in since.out.text + recent.out.text  # pipes: no colour


def test_tail_reports_a_server_that_goes_away(
    tmp_path: Path, tails: Callable[..., Tail], victorialogs_bin: Path
) -> None:
    server = VictoriaLogs(victorialogs_bin, tmp_path / "vl")
    try:
        tail = tails("*", env=cli_env(server.url))
        assert "Ctrl-C stops" in tail.started()
        server.proc.kill()
        server.proc.wait(10)
        assert tail.proc.wait(15) == 1
    finally:
        server.stop()
    errors = tail.err.wait(lambda _: tail.proc.poll() is not None)
    assert server.url in errors.splitlines()[-1] and "Traceback" not in errors


def test_tail_plain_errors(victorialogs: VictoriaLogs) -> None:
    env = cli_env(victorialogs.url)
    stats = vlhook("tail", "* | stats count()", env=env)
    assert stats.returncode == 1 and "cannot be used in live tailing" in stats.stderr
    bad = vlhook("tail", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "'yesterday' is not a duration" in bad.stderr
    down = vlhook("tail", env=cli_env(f"http://127.0.0.1:{free_port()}"))
    assert down.returncode == 1 and "cannot reach http://127.0.0.1:" in down.stderr
    assert "Traceback" not in stats.stderr + bad.stderr + down.stderr


# --- query ---------------------------------------------------------------------------------


def test_query_prints_the_newest_entries_oldest_first(
    victorialogs: VictoriaLogs, script: Any, tmp_path: Path
) -> None:
    test_id = ship(script, tmp_path, victorialogs.url, PROGRAM)
    victorialogs.rows(f"test_id:{test_id}", 3)
    env = cli_env(victorialogs.url)
    result = vlhook("query", f"test_id:{test_id}", env=env)
    assert result.returncode == 0, result.stderr
    assert [re.sub(CLOCK, "T", line) for line in result.stdout.splitlines()] == [
        f"T INFO  [web shop] stdout: first line  test_id={test_id}",
        f'T ERROR [web shop] shop.checkout: payment failed  order="A 17" test_id={test_id}',
        f"T INFO  [web shop] stdout: last line  test_id={test_id}",
    ]
    assert result.stderr == ""
    limited = vlhook("query", f"test_id:{test_id}", "--limit", "2", "--json", env=env)
    rows = [json.loads(line) for line in limited.stdout.splitlines()]
    assert [r["_msg"] for r in rows] == ["payment failed", "last line"]
    assert rows[0]["logger"] == "shop.checkout" and rows[0]["code.function"] == "<module>"
    assert "2 entries shown, as many as --limit allows" in limited.stderr
    bad = vlhook("query", "foo:(", env=env)
    assert bad.returncode == 1 and f"HTTP 400 from {victorialogs.url}: cannot parse" in bad.stderr


def _pty_run(args: list[str], env: dict[str, str]) -> str:
    """stdout of a command that writes to a terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, env=env, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    reader = Reader(master)
    try:
        assert proc.wait(60) == 0
        reader.thread.join(10)
        return reader.text
    finally:
        os.close(master)


def test_query_colours_only_a_terminal_without_no_color(
    victorialogs: VictoriaLogs, script: Any, tmp_path: Path
) -> None:
    test_id = ship(script, tmp_path, victorialogs.url, PROGRAM)
    victorialogs.rows(f"test_id:{test_id}", 3)
    args = [PYTHON, "-m", "vlhook", "query", f"test_id:{test_id}"]
    env = cli_env(victorialogs.url)
    coloured = _pty_run(args, env)
    assert "\x1b[31mERROR" in coloured and "\x1b[32mINFO" in coloured
    plain = _pty_run(args, {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in plain and ANSI.sub("", coloured) == plain
    piped = vlhook("query", f"test_id:{test_id}", env=env).stdout
    assert piped == plain
    assert "\x1b[" not in _pty_run([*args, "--json"], env)


def test_query_and_tail_use_the_tenancy_of_shipping(
    victorialogs: VictoriaLogs, script: Any, tmp_path: Path, tails: Callable[..., Tail]
) -> None:
    tenant = {"VICTORIALOGS_ACCOUNT_ID": "7", "VICTORIALOGS_PROJECT_ID": "3"}
    tail = tails('"tenant seven"', env=cli_env(victorialogs.url, **tenant))
    assert "Ctrl-C stops" in tail.started()
    test_id = ship(script, tmp_path, victorialogs.url, "print('tenant seven')\n", **tenant)
    victorialogs.rows(f"test_id:{test_id}", 1, headers={"AccountID": "7", "ProjectID": "3"})
    found = vlhook("query", f"test_id:{test_id}", env=cli_env(victorialogs.url, **tenant))
    assert found.returncode == 0 and "tenant seven" in found.stdout
    elsewhere = vlhook("query", f"test_id:{test_id}", env=cli_env(victorialogs.url))
    assert elsewhere.returncode == 0 and elsewhere.stdout == ""
    other = vlhook("query", f"test_id:{test_id}",
                   env=cli_env(victorialogs.url, VICTORIALOGS_ACCOUNT_ID="7"))  # fmt: skip
    assert other.stdout == ""  # ProjectID 0 is another tenant
    assert f"tenant seven  test_id={test_id}" in tail.out.wait(lambda text: test_id in text)


class _Gateway:
    """A loopback HTTP server answering every request with one status."""

    def __init__(self, status: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_query_uses_the_first_url_that_answers(victorialogs: VictoriaLogs, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex[:12]
    victorialogs.insert([{"_msg": "reached", "marker": marker}])
    victorialogs.rows(f"marker:{marker}", 1)
    dead = f"http://127.0.0.1:{free_port()}"
    with _Gateway(503) as nothing_behind, _Gateway(400) as refusing:
        urls = f"{dead},{nothing_behind},{victorialogs.url}"
        result = vlhook("query", f"marker:{marker}", env=cli_env(urls))
        refused = vlhook("query", "*", env=cli_env(f"{refusing},{victorialogs.url}"))
    assert result.returncode == 0 and "reached" in result.stdout, result.stderr
    assert refused.returncode == 1 and f"HTTP 400 from {refusing}: no" in refused.stderr
    # Nothing to ask, as without a URL (2); a bad setting said once, though the CLI's own
    # interpreter is active too (its activation says it: the command does not again).
    for command in ("query", "tail"):
        env = cli_env(f"file://{tmp_path}/x.jsonl", VICTORIALOGS_BATCH_LINES="lots")
        files = vlhook(command, "*", env=env)
        assert files.returncode == 2 and "there is no server to ask" in files.stderr
        assert files.stderr.count("VICTORIALOGS_BATCH_LINES='lots'") == 1, files.stderr


def test_tls_settings_are_shipping_ones(tmp_path: Path, victorialogs_bin: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server = VictoriaLogs(
        victorialogs_bin, tmp_path / "vl", "-tls", f"-tlsCertFile={cert}", f"-tlsKeyFile={key}"
    )
    try:
        untrusted = vlhook("query", "*", env=cli_env(server.url))
        trusted = vlhook("query", "*", env=cli_env(server.url, VICTORIALOGS_CA_BUNDLE=str(cert)))
        unchecked = vlhook("query", "*", env=cli_env(server.url, VICTORIALOGS_TLS_VERIFY="0"))
        checked = vlhook("check", env=cli_env(server.url, VICTORIALOGS_CA_BUNDLE=str(cert)))
    finally:
        server.stop()
    # `vlhook check` reads its probe back with the same TLS settings as it sent it.
    assert "probe read back: stored and searchable" in checked.stdout, checked.stdout
    assert untrusted.returncode == 1
    assert f"TLS certificate of {server.url} not trusted" in untrusted.stderr
    assert "VICTORIALOGS_CA_BUNDLE" in untrusted.stderr
    assert (trusted.returncode, trusted.stderr) == (0, "")
    assert (unchecked.returncode, unchecked.stderr) == (0, "")


def test_credentials_reach_the_server_and_never_the_output(
    tmp_path: Path, victorialogs_bin: Path
) -> None:
    password = "s3cret-pass"
    server = VictoriaLogs(
        victorialogs_bin,
        tmp_path / "vl",
        "-httpAuth.username=reader",
        f"-httpAuth.password={password}",
    )
    try:
        token = base64.b64encode(f"reader:{password}".encode()).decode()
        auth = {"Authorization": f"Basic {token}"}
        server.insert([{"_msg": "behind a password"}], headers=auth)
        assert server.rows("password", 1, headers=auth)
        good = f"http://reader:{password}@127.0.0.1:{server.port}"
        wrong = f"http://reader:not-{password}@127.0.0.1:{server.port}"
        extra = {"VICTORIALOGS_HEADERS": "X-Api-Key=hdr-secret"}
        ok = vlhook("query", "password", env=cli_env(good, **extra))
        assert ok.returncode == 0 and "behind a password" in ok.stdout, ok.stderr
        refused = vlhook("query", "password", env=cli_env(wrong, **extra))
        assert (
            refused.returncode == 1
            and f"HTTP 401 from http://127.0.0.1:{server.port}" in refused.stderr
        )
        tail = vlhook(
            "tail", "--since", "1h", env=cli_env(wrong, VICTORIALOGS_BEARER_TOKEN="tok-secret")
        )
        assert tail.returncode == 1 and "HTTP 401" in tail.stderr
    finally:
        server.stop()
    for result in (ok, refused, tail):
        for secret in (password, "hdr-secret", "tok-secret"):
            assert secret not in result.stdout + result.stderr


def test_query_and_tail_say_why_there_is_nothing_to_ask() -> None:
    env = cli_env("")
    unset = vlhook("query", "*", env=env)
    assert unset.returncode == 2 and "VICTORIALOGS_URL is not set" in unset.stderr
    invalid = vlhook("tail", env=cli_env("http://reader:pw-1@localhost:port"))
    assert invalid.returncode == 2
    assert (
        "VICTORIALOGS_URL item 'http://***@localhost:port' is not a valid URL: the port"
        in invalid.stderr
    )
    assert "VICTORIALOGS_URL is not valid" in invalid.stderr and "pw-1" not in invalid.stderr
    off = vlhook("query", "*", env=cli_env("http://127.0.0.1:1", VICTORIALOGS_DISABLE="1"))
    assert off.returncode == 2 and "VICTORIALOGS_DISABLE=1 turns vlhook off" in off.stderr


# --- listen --------------------------------------------------------------------------------


def test_listen_prints_what_arrives_as_tail_and_query_do(
    victorialogs: VictoriaLogs, script: Any, tmp_path: Path
) -> None:
    """The same program shipped to `vlhook listen` and to VictoriaLogs reads the same."""
    port = free_port()
    local = f"http://127.0.0.1:{port}"
    listen = subprocess.Popen(
        [PYTHON, "-m", "vlhook", "listen", "--port", str(port)], env=cli_env(local),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert listen.stdout is not None and listen.stderr is not None
        out, err = Reader(listen.stdout.fileno()), Reader(listen.stderr.fileno())
        err.wait(lambda text: "receiving on" in text)
        test_id = ship(script, tmp_path, local, PROGRAM)
        listened = out.wait(lambda text: text.count(test_id) >= 3)
    finally:
        listen.terminate()
        listen.wait(10)
        for stream in (listen.stdout, listen.stderr):
            if stream is not None:
                stream.close()
    ship(script, tmp_path, victorialogs.url, PROGRAM, test_id=test_id)
    victorialogs.rows(f"test_id:{test_id}", 3)
    queried = vlhook("query", f"test_id:{test_id}", env=cli_env(victorialogs.url)).stdout
    assert queried.count(test_id) == 3
    assert re.sub(CLOCK, "T", listened) == re.sub(CLOCK, "T", queried)
    assert "shop.checkout: payment failed" in listened
