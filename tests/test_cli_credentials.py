"""The CLI keeps the promise of docs/security.md: credentials (the URL's user:password,
VICTORIALOGS_BEARER_TOKEN, VICTORIALOGS_HEADERS values) go only to the configured server and
never appear in what it prints. Real `vlhook` processes against small loopback servers that
redirect elsewhere, or echo the request's credentials back in an error."""

from __future__ import annotations

import base64
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from conftest import PYTHON, SRC, base_env, self_signed_certificate

TOKEN = "SuperSecretToken123"
PASSWORD = "BasicPass999"
HEADER = "HdrSecretValue1234567890abcdef"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
SECRETS = (TOKEN, PASSWORD, HEADER, BASIC)

#: (status, headers, body) for one request.
Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Server:
    """A loopback HTTP(S) server answering each request with `reply(request)`, recording all."""

    reply: Callable[[Seen], Reply]
    host: str = "127.0.0.1"
    tls: Optional[ssl.SSLContext] = None
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                request = Seen(self.command, self.path, dict(self.headers), self.rfile.read(size))
                server.seen.append(request)
                status, headers, body = server.reply(request)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.http = ThreadingHTTPServer((self.host, 0), Handler)
        except OSError as exc:
            pytest.skip(f"cannot listen on {self.host}: {exc}")
        if self.tls is not None:
            self.http.socket = self.tls.wrap_socket(self.http.socket, server_side=True)
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://{self.host}:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(reply: Callable[[Seen], Reply], **kwargs: Any) -> Server:
        started.append(Server(reply, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


def vlhook(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = base_env()
    full.update(PYTHONPATH=str(SRC), VICTORIALOGS_URL=url, PYTHONIOENCODING="utf-8",
                VICTORIALOGS_SPOOL_DIR="off", **env)  # fmt: skip
    return subprocess.run(
        [PYTHON, "-m", "vlhook", *args], env=full, capture_output=True, text=True, timeout=60
    )


def with_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://alice:{PASSWORD}@{rest}"


#: Each way to give credentials: (a function of the server's URL, extra environment).
CREDENTIALS: dict[str, tuple[Callable[[str], str], dict[str, str]]] = {
    "bearer": (lambda url: url, {"VICTORIALOGS_BEARER_TOKEN": TOKEN}),
    "basic": (with_password, {}),
    "header": (lambda url: url, {"VICTORIALOGS_HEADERS": f"X-Api-Key={HEADER}"}),
}


def assert_no_secret(text: str) -> None:
    """Neither a secret nor any 8-character piece of one."""
    for secret in SECRETS:
        for start in range(len(secret) - 7):
            piece = secret[start : start + 8]
            assert piece not in text, f"{piece!r} (of a credential) in: {text}"


def assert_nothing_carries_credentials(requests: list[Seen]) -> None:
    for request in requests:
        assert "authorization" not in {name.lower() for name in request.headers}, request
        assert_no_secret(f"{request.path} {request.headers} {request.body!r}")


def redirecting(status: int, location: str) -> Callable[[Seen], Reply]:
    """Takes the probe (`vlhook check` needs it accepted), redirects everything else."""

    def reply(request: Seen) -> Reply:
        if request.path.startswith("/insert/"):
            return 204, {}, b""
        return status, {"Location": location + request.path}, b""

    return reply


def not_found(_: Seen) -> Reply:
    return 404, {}, b"not here"


def echo_credentials(padding: int = 0) -> Callable[[Seen], Reply]:
    """400 with the request's credentials in the body, after `padding` characters."""

    def reply(request: Seen) -> Reply:
        if request.path.startswith("/insert/"):
            return 204, {}, b""
        key, auth = request.headers.get("X-Api-Key"), request.headers.get("Authorization")
        return 400, {}, f"{'x' * padding}bad key {key} auth {auth}".encode()

    return reply


# --- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
@pytest.mark.parametrize("status", [302, 307])
def test_check_sends_no_credentials_where_a_redirect_points(
    servers: Callable[..., Server], kind: str, status: int
) -> None:
    url_of, env = CREDENTIALS[kind]
    trap = servers(not_found, host="127.0.0.2")
    server = servers(redirecting(status, f"{trap.url}/steal"))
    result = vlhook("check", "--timeout", "3", url=url_of(server.url), **env)
    assert "probe accepted" in result.stdout, result.stdout + result.stderr
    assert_nothing_carries_credentials(trap.seen)
    assert_no_secret(result.stdout + result.stderr)
    if status == 302:  # shipping follows 307 and 308 only: a 302 is reported, not followed
        assert trap.seen == []
        assert f"redirects (HTTP 302) to '{trap.url}/steal" in result.stdout
        assert "not followed" in result.stdout
    else:  # followed as shipping follows it, without the credentials
        assert "read-back not available here (HTTP 404)" in result.stdout, result.stdout


@pytest.mark.parametrize("command", [("query", "*"), ("tail",)])
@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
def test_query_and_tail_send_no_credentials_to_another_host(
    servers: Callable[..., Server], command: tuple[str, ...], kind: str
) -> None:
    url_of, env = CREDENTIALS[kind]
    trap = servers(not_found, host="127.0.0.2")
    server = servers(redirecting(307, f"{trap.url}/steal"))
    result = vlhook(*command, url=url_of(server.url), **env)
    assert result.returncode == 1
    assert [r.method for r in trap.seen] == ["POST"], result.stderr  # the 307 kept its method
    assert_nothing_carries_credentials(trap.seen)
    assert_no_secret(result.stdout + result.stderr)
    assert f"HTTP 404 from {trap.url}/steal/select/logsql/" in result.stderr
    assert f"(where {server.url} redirects; sent without credentials)" in result.stderr


def test_a_redirect_within_the_server_keeps_the_credentials(
    servers: Callable[..., Server],
) -> None:
    def reply(request: Seen) -> Reply:
        if request.path.startswith("/moved/"):
            ok = request.headers.get("Authorization") == f"Bearer {TOKEN}"
            return (200, {}, b'{"_msg":"found it"}\n') if ok else (401, {}, b"who?")
        return 308, {"Location": "/moved" + request.path}, b""

    server = servers(reply)
    result = vlhook("query", "*", url=server.url, VICTORIALOGS_BEARER_TOKEN=TOKEN)
    assert result.returncode == 0 and "found it" in result.stdout, result.stderr
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize("command", [("check", "--timeout", "3"), ("query", "*"), ("tail",)])
def test_no_redirect_from_https_to_plain_http(
    servers: Callable[..., Server], tmp_path: Path, command: tuple[str, ...]
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # Even to the same host: over plain http anyone on the way reads the token.
    trap = servers(not_found)
    server = servers(redirecting(307, f"{trap.url}/steal"), tls=context)
    result = vlhook(*command, url=server.url, VICTORIALOGS_BEARER_TOKEN=TOKEN,
                    VICTORIALOGS_CA_BUNDLE=str(cert))  # fmt: skip
    output = result.stdout + result.stderr
    assert trap.seen == [], output
    assert "redirects (HTTP 307)" in output and "not followed" in output, output
    assert_no_secret(output)


# --- the server's error text ---------------------------------------------------------------


@pytest.mark.parametrize("command", [("query", "*"), ("tail",), ("check", "--timeout", "3")])
@pytest.mark.parametrize("padding", [0, 480, 4080])
def test_a_servers_error_never_shows_the_credentials(
    servers: Callable[..., Server], command: tuple[str, ...], padding: int
) -> None:
    """`padding` puts the credentials where a cut would split them: at the 500 characters
    shown, and at the 4 KiB once read."""
    server = servers(echo_credentials(padding))
    env = {"VICTORIALOGS_HEADERS": f"X-Api-Key={HEADER}"}
    basic = vlhook(*command, url=with_password(server.url), **env)
    bearer = vlhook(*command, url=server.url, VICTORIALOGS_BEARER_TOKEN=TOKEN, **env)
    for result in (basic, bearer):
        output = result.stdout + result.stderr
        assert result.returncode == 1 or "read-back not available" in output, output
        assert_no_secret(output)
    if command[0] != "check" and padding == 0:  # the rest of the server's text is shown
        assert "bad key *** auth Basic ***" in basic.stderr, basic.stderr
        assert "bad key *** auth Bearer ***" in bearer.stderr, bearer.stderr


def test_tail_masks_what_the_server_says_inside_the_stream(
    servers: Callable[..., Server],
) -> None:
    def reply(request: Seen) -> Reply:
        auth = request.headers.get("Authorization")
        return 200, {}, f'{{"_msg":"an entry"}}\nerror: cannot go on for {auth}\n'.encode()

    server = servers(reply)
    result = vlhook("tail", url=server.url, VICTORIALOGS_BEARER_TOKEN=TOKEN)
    assert "the server says: error: cannot go on for Bearer ***" in result.stderr, result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_a_header_value_http_cannot_carry_is_said_without_it(
    servers: Callable[..., Server],
) -> None:
    server = servers(not_found)
    token = "Super\nSecretToken123"
    result = vlhook("query", "*", url=server.url, VICTORIALOGS_BEARER_TOKEN=token)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot ask {server.url}" in result.stderr
    assert "SecretTo" not in result.stderr and server.seen == []
