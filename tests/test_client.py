"""Tests of the client, the transport and the HTTP layer, against local servers on loopback.

These tests must see raw requests (headers, encodings, how many requests were made, what a
redirect target received), so they use `vlhook listen`'s Receiver and small scripted servers
rather than VictoriaLogs; what the real server stores is checked by the end-to-end tests.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any, Callable
from urllib.parse import parse_qs

import pytest

from shipping import RawServer, Shipper
from vlhook._config import load
from vlhook._delivery.http import Connection, HttpError
from vlhook._delivery.transport import (
    GZIP_MIN_BYTES,
    FileTransport,
    HttpTransport,
    gzip_body,
    insert_path,
    make_transport,
    request_headers,
    retry_after,
)
from vlhook._entry import rfc3339
from vlhook._listen import Receiver

NOW_NS = time.time_ns()


def shipper(url: str, **env: str) -> Shipper:
    c = load({"VICTORIALOGS_URL": url, "VICTORIALOGS_SPOOL_DIR": "off", **env})
    assert c.warnings == (), c.warnings
    return Shipper(c)


def entry(msg: str, **fields: Any) -> dict[str, Any]:
    return {"_time": rfc3339(time.time_ns()), "_msg": msg, "level": "INFO", "stream": "stdout",
            **fields}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def recv() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


# -- a scripted server: each request answered by a function of (path, headers, body) -----------

Answer = tuple[int, dict[str, str], bytes]


class Scripted:
    def __init__(self, answer: Callable[[str, dict[str, str], bytes], Answer]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.stored: list[bytes] = []  # bodies answered 2xx
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.seen.append((self.path, headers, body))
                status, extra, text = outer.answer(self.path, headers, body)
                if 200 <= status < 300:
                    outer.stored.append(body)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def lines(self) -> list[str]:
        """Messages of the requests answered 2xx."""
        return [json.loads(x)["_msg"] for body in self.stored for x in body.splitlines()]

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok(path: str, headers: dict[str, str], body: bytes) -> Answer:
    return 200, {}, b""


def scripted_answers(*answers: Answer) -> Callable[[str, dict[str, str], bytes], Answer]:
    queue = list(answers)

    def answer(path: str, headers: dict[str, str], body: bytes) -> Answer:
        return queue.pop(0) if queue else (200, {}, b"")

    return answer


# -- request format -----------------------------------------------------------------------------


def test_http_request_format(recv: Receiver) -> None:
    s = shipper(recv.url, VICTORIALOGS_STREAM_FIELDS="container_name,job,env",
                VICTORIALOGS_FIELDS="env=test")  # fmt: skip
    s.add([entry("over http", k="v", padding="p" * GZIP_MIN_BYTES)])
    assert s.send().delivered == 1
    rows = recv.wait_for(1, timeout=5)
    assert [(r["_msg"], r["k"], r["env"]) for r in rows] == [("over http", "v", "test")]
    info = recv.requests[-1]
    assert (info.method, info.path) == ("POST", "/insert/jsonline")
    assert parse_qs(info.query) == {"_stream_fields": ["container_name,job,env"]}
    assert info.headers["content-type"] == "application/stream+json"
    assert info.headers["content-encoding"] == "gzip" and info.content_encoding == "gzip"
    assert info.headers["user-agent"].startswith("vlhook/")
    assert "authorization" not in info.headers
    assert "accountid" not in info.headers and "projectid" not in info.headers
    assert info.status == 200
    assert 'env="test"' in rows[0]["_stream"]
    s.close()


def test_http_without_compression(recv: Receiver) -> None:
    s = shipper(recv.url, VICTORIALOGS_COMPRESSION="none")
    s.add([entry("plain body")])
    assert s.send().delivered == 1
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5)] == ["plain body"]
    assert "content-encoding" not in recv.requests[-1].headers
    s.close()


def test_a_small_body_goes_uncompressed(recv: Receiver) -> None:
    """A body below GZIP_MIN_BYTES fits one packet anyway: sent as it is, labelled as such,
    and zlib is not even loaded for it (a one-line script's whole delivery)."""
    s = shipper(recv.url)
    s.add([entry("small")])
    assert s.send().delivered == 1
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5)] == ["small"]
    info = recv.requests[-1]
    assert "content-encoding" not in info.headers
    s.add([entry("large", padding="p" * GZIP_MIN_BYTES)])
    assert s.send().delivered == 1
    assert [r["_msg"] for r in recv.wait_for(2, timeout=5)] == ["small", "large"]
    assert recv.requests[-1].headers["content-encoding"] == "gzip"
    s.close()


def test_gzip_body_round_trips() -> None:
    data = b'{"_msg":"x"}\n' * 1000
    packed = gzip_body(data)
    assert len(packed) < len(data) // 5 and gzip.decompress(packed) == data


def test_tenant_headers(recv: Receiver) -> None:
    s = shipper(recv.url, VICTORIALOGS_ACCOUNT_ID="12", VICTORIALOGS_PROJECT_ID="34")
    s.add([entry("tenant row")])
    assert s.send().delivered == 1
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5, account=12, project=34)] == [
        "tenant row"
    ]
    assert recv.entries() == []
    headers = recv.requests[-1].headers
    assert (headers["accountid"], headers["projectid"]) == ("12", "34")
    s.close()


def test_basic_auth_from_url(recv: Receiver) -> None:
    s = shipper(recv.url.replace("http://", "http://us%40er:p%3Ass@"))
    s.add([entry("auth")])
    assert s.send().delivered == 1
    expected = base64.b64encode(b"us@er:p:ss").decode()
    assert recv.requests[-1].headers["authorization"] == f"Basic {expected}"
    s.close()


def test_bearer_token_wins_over_basic_and_custom_headers_are_sent(recv: Receiver) -> None:
    s = shipper(recv.url.replace("http://", "http://user:pw@"), VICTORIALOGS_BEARER_TOKEN="tok-1",
                VICTORIALOGS_HEADERS="X-Scope=abc")  # fmt: skip
    s.add([entry("bearer")])
    assert s.send().delivered == 1
    headers = recv.requests[-1].headers
    assert headers["authorization"] == "Bearer tok-1" and headers["x-scope"] == "abc"
    s.close()


def test_a_header_of_the_users_replaces_vlhooks_of_that_name_in_any_case() -> None:
    """HTTP header names are not case-sensitive: `authorization=...` beside a bearer token
    was sent as a second Authorization header."""
    headers_set = "authorization=Token t,ACCOUNTID=7,user-agent=app"
    c = load({"VICTORIALOGS_URL": "http://h:1", "VICTORIALOGS_BEARER_TOKEN": "tok",
              "VICTORIALOGS_ACCOUNT_ID": "3", "VICTORIALOGS_HEADERS": headers_set})  # fmt: skip
    headers = request_headers(c.endpoints[0], c)
    assert len({name.lower() for name in headers}) == len(headers)
    lowered = {name.lower(): value for name, value in headers.items()}
    assert lowered["authorization"] == "Token t" and lowered["accountid"] == "7"
    assert lowered["user-agent"] == "app"


def test_a_bearer_token_pasted_with_its_scheme_goes_as_one_scheme(recv: Receiver) -> None:
    c = load({"VICTORIALOGS_URL": recv.url, "VICTORIALOGS_SPOOL_DIR": "off",
              "VICTORIALOGS_BEARER_TOKEN": "Bearer tok-2"})  # fmt: skip
    s = Shipper(c)
    s.add([entry("bearer")])
    assert s.send().delivered == 1
    assert recv.requests[-1].headers["authorization"] == "Bearer tok-2"
    s.close()


def test_request_headers_and_path_helpers() -> None:
    c = load({"VICTORIALOGS_URL": "https://u:p@h:1/base", "VICTORIALOGS_COMPRESSION": "none",
              "VICTORIALOGS_STREAM_FIELDS": "a b,c"})  # fmt: skip
    endpoint = c.endpoints[0]
    assert insert_path(endpoint, c) == "/base/insert/jsonline?_stream_fields=a%20b,c"
    headers = request_headers(endpoint, c)
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert "Content-Encoding" not in headers
    assert "Authorization" not in request_headers(endpoint, c, credentials=False)
    assert isinstance(make_transport(endpoint, c), HttpTransport)
    f = load({"VICTORIALOGS_URL": "file:///tmp/x.jsonl"})
    assert isinstance(make_transport(f.endpoints[0], f), FileTransport)


# -- connections --------------------------------------------------------------------------------


def test_keep_alive_connection_is_reused_and_reopened_after_the_server_closed_it(
    recv: Receiver,
) -> None:
    s = shipper(recv.url)
    transport = s.client.transports[0]
    assert isinstance(transport, HttpTransport)
    s.add([entry("one")])
    assert s.send().delivered == 1
    sock = transport.connection._sock
    assert sock is not None
    s.add([entry("two")])
    assert s.send().delivered == 1
    assert transport.connection._sock is sock  # kept alive
    for _ in range(100):  # the server drops its open connections, as an idle timeout would
        with recv._cond:
            conns = list(recv._connections)
        if conns:
            break
        time.sleep(0.01)
    for conn in conns:
        conn.shutdown(socket.SHUT_RDWR)
    time.sleep(0.05)
    s.add([entry("three")])
    assert s.send().delivered == 1
    assert [r["_msg"] for r in recv.wait_for(3, timeout=5)] == ["one", "two", "three"]
    assert s.stats.retries == 0  # reopening is part of sending, not a retry
    s.close()
    assert transport.connection._sock is None


def test_ipv6_loopback() -> None:
    try:
        receiver = Receiver(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        s = shipper(receiver.url)
        s.add([entry("v6")])
        assert s.send().delivered == 1
        assert [r["_msg"] for r in receiver.wait_for(1, timeout=5)] == ["v6"]
        s.close()
    finally:
        receiver.stop()


def _dribbling_server(delay: float) -> tuple[socket.socket, threading.Thread]:
    """Reads a request, then answers one byte every `delay` seconds (forever, nearly)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
            for byte in answer:
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(delay)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_one_deadline_bounds_the_whole_request_even_byte_by_byte() -> None:
    listener, _ = _dribbling_server(0.05)  # the whole answer would take ~7 s
    with listener:
        port = listener.getsockname()[1]
        conn = Connection("127.0.0.1", port)
        started = time.monotonic()
        with pytest.raises(HttpError) as caught:
            conn.request("POST", "/insert/jsonline", {}, b"{}\n", started + 0.6)
        elapsed = time.monotonic() - started
        conn.close()
    assert caught.value.timeout and caught.value.sent_body
    assert 0.5 <= elapsed < 1.5


def test_connection_refused_is_not_a_request_under_way() -> None:
    conn = Connection("127.0.0.1", free_port())
    with pytest.raises(HttpError) as caught:
        conn.request("POST", "/", {}, b"x", time.monotonic() + 2)
    assert not caught.value.sent_body and not caught.value.timeout


def test_chunked_answer_is_read_and_the_connection_kept() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(2):
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")  # fmt: skip

    threading.Thread(target=serve, daemon=True).start()
    with listener:
        conn = Connection("127.0.0.1", listener.getsockname()[1])
        for _ in range(2):
            response = conn.request("POST", "/", {}, b"x", time.monotonic() + 5)
            assert (response.status, response.body) == (400, b"hello world")
            assert conn.is_open
        conn.close()


OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("answer", [
    [OK_EMPTY + b"\r\n"],  # one stray line end, in the same segment as the answer
    [OK_EMPTY, 0.05, b"\r\n"],  # ... or arriving a moment after it, before the next request
    [b"HTTP/1.1 204 No Content\r\n\r\n\r\n"],
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nxyz"],
], ids=["same-segment", "later-segment", "204", "chunked"])  # fmt: skip
def test_bytes_past_an_answer_never_make_a_request_sent_twice(answer: list[Any]) -> None:
    """Bytes no request asked for must not be read as the next request's answer: that
    answer would not parse, and the request, stored already, would be sent again."""
    server = RawServer(lambda index: answer)
    try:
        s = shipper(server.url)
        for name in ("one", "two", "three"):
            s.add([entry(name)])
            assert s.send().delivered == 1
            time.sleep(0.1)  # the later stray bytes have come
        assert [json.loads(body)["_msg"] for body in server.bodies] == ["one", "two", "three"]
        assert s.stats.retries == 0 and server.connections == 3  # each answer ended its own
        s.close()
    finally:
        server.close()


def test_an_answer_that_does_not_parse_is_an_answer_not_an_idle_close() -> None:
    """The server answered (it read the request): sending again is a retry, counted, not a
    silent resend as after a kept-alive connection's idle close."""
    server = RawServer(lambda index: [b"hello\r\n\r\n"] if index == 1 else [OK_EMPTY])
    try:
        s = shipper(server.url)
        s.add([entry("one")])
        assert s.send().delivered == 1
        s.add([entry("two")])
        assert s.send().delivered == 1
        assert s.stats.retries == 1  # "two" was sent twice: counted as a retry
        assert [json.loads(body)["_msg"] for body in server.bodies] == ["one", "two", "two"]
        s.close()
    finally:
        server.close()


# -- outcomes -----------------------------------------------------------------------------------


def test_rejection_is_counted_once_with_the_servers_reason() -> None:
    with Scripted(lambda p, h, b: (400, {}, b"cannot parse")) as server:
        s = shipper(server.url)
        s.add([entry("a"), entry("b"), entry("c")])
        outcome = s.send()
        assert outcome.rejected == {"rejected_http_400": 3} and outcome.delivered == 0
        assert "HTTP 400" in outcome.reason and "cannot parse" in outcome.reason
        assert len(server.seen) == 1 and s.stats.retries == 0
        s.close()


@pytest.mark.parametrize(
    "body",
    [b"Client sent an HTTP request to an HTTPS server.\n",  # Go's: VictoriaLogs, vmauth
     b"<html><center>The plain HTTP request was sent to HTTPS port</center></html>"],  # nginx
)  # fmt: skip
def test_plain_http_to_a_server_of_https_is_kept_not_rejected(body: bytes) -> None:
    with Scripted(lambda p, h, b: (400, {}, body)) as server:
        s = shipper(server.url)
        s.add([entry("a"), entry("b")])
        outcome = s.send()
        assert outcome.rejected == {} and sum(count for _, count in outcome.kept) == 2
        assert len(server.seen) == 1
        s.close()


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"<html>404 Not Found</html>"),  # a proxy's: nothing at that path
     (400, b'unsupported path requested: "/vlogs/insert/jsonline"')],  # VictoriaLogs'
)  # fmt: skip
def test_a_url_whose_path_names_no_insert_endpoint_is_kept_not_rejected(
    status: int, body: bytes
) -> None:
    with Scripted(lambda p, h, b: (status, {}, body)) as server:
        s = shipper(server.url)
        s.add([entry("a"), entry("b")])
        outcome = s.send()
        assert outcome.rejected == {} and sum(count for _, count in outcome.kept) == 2
        s.close()


@pytest.mark.parametrize(
    ("headers", "body"),
    [({"Content-Type": "text/html; charset=utf-8"}, b"<h1>Welcome</h1>"),  # a web app's
     ({}, b"\n  <!DOCTYPE html><html><body>Sign in</body></html>")],  # no type: by its text
)  # fmt: skip
def test_a_web_page_answered_with_200_is_kept_not_taken_for_delivery(
    headers: dict[str, str], body: bytes
) -> None:
    """VictoriaLogs answers a stored batch with 200 and an empty body. A 200 carrying a web
    page is another server's (a catch-all web app, a sign-in page, a port mixed up): the
    batch was counted as delivered and lost without a word."""
    with Scripted(lambda p, h, b: (200, headers, body)) as server:
        s = shipper(server.url)
        s.add([entry("a"), entry("b")])
        outcome = s.send()
        assert outcome.delivered == 0 and outcome.rejected == {}
        assert sum(count for _, count in outcome.kept) == 2
        assert "a web page" in outcome.reason, outcome.reason
        s.close()


def test_a_200_with_a_body_that_is_no_web_page_is_a_delivery() -> None:
    """A receiver that answers 200 with JSON (`{"status":"ok"}`) stored the batch."""
    with Scripted(
        lambda p, h, b: (200, {"Content-Type": "application/json"}, b'{"ok":1}')
    ) as server:
        s = shipper(server.url)
        s.add([entry("a")])
        assert s.send().delivered == 1
        s.close()


@pytest.mark.parametrize("status", [401, 403])
def test_client_errors_are_rejected_once(status: int) -> None:
    with Scripted(lambda p, h, b: (status, {}, b"no")) as server:
        s = shipper(server.url)
        s.add([entry("a"), entry("b")])
        assert s.send().rejected == {f"rejected_http_{status}": 2}
        assert len(server.seen) == 1
        s.close()


def test_retryable_status_is_retried_honouring_retry_after_seconds_and_dates() -> None:
    date = formatdate(time.time() + 2, usegmt=True)  # 1 to 2 s ahead (whole seconds)
    answers = scripted_answers((503, {"Retry-After": "0"}, b""), (429, {"Retry-After": date}, b""))
    with Scripted(answers) as server:
        s = shipper(server.url)
        s.add([entry("eventually")])
        started = time.monotonic()
        outcome = s.send()
        elapsed = time.monotonic() - started
        assert outcome.delivered == 1 and s.stats.retries == 2
        assert 0.8 < elapsed < 5  # the date was honoured
        assert server.lines() == ["eventually"] and len(server.seen) == 3
        s.close()


def test_retry_after_forms() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("-3") == 0.0
    assert retry_after(None) is None and retry_after("soon") is None
    later = retry_after(formatdate(time.time() + 100, usegmt=True))
    assert later is not None and 95 < later <= 100


@pytest.mark.parametrize("value", ["0", "-5", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_retry_after_of_no_time_still_backs_off(value: str) -> None:
    """0, a negative number or a past date must not make the retries a busy loop."""
    with Scripted(lambda p, h, b: (503, {"Retry-After": value}, b"")) as server:
        s = shipper(server.url, VICTORIALOGS_TIMEOUT_MS="500")  # retried for 1 s, then kept
        s.add([entry("a")])
        outcome = s.send()
        # Backoff from 0.1 s, doubling: tries at ~0, 0.1, 0.3, 0.7 s (jittered ±20 %).
        assert outcome.kept_lines == 1 and 3 <= len(server.seen) <= 6, len(server.seen)
        s.close()


def test_unreachable_server_is_retried_then_kept_for_the_spool() -> None:
    s = shipper(f"http://127.0.0.1:{free_port()}", VICTORIALOGS_TIMEOUT_MS="250")
    s.add([entry("x")])
    started = time.monotonic()
    outcome = s.send()
    assert time.monotonic() - started < 3  # the retry budget: twice the timeout, at least 1 s
    assert outcome.kept_lines == 1 and outcome.delivered == 0 and not outcome.rejected
    assert s.stats.retries >= 1 and "Connection refused" in outcome.reason
    s.close()


def test_fails_over_to_the_next_endpoint_without_retrying(recv: Receiver) -> None:
    s = shipper(f"http://127.0.0.1:{free_port()},{recv.url}")
    s.add([entry("failover")])
    assert s.send().delivered == 1
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5)] == ["failover"]
    assert s.stats.retries == 0
    s.close()


def test_413_splits_the_batch_down_to_single_lines() -> None:
    """A proxy refusing bodies over 300 bytes: halves until they pass; a line that is still
    too big alone is dropped with the server's reason, the others delivered."""

    def limit(path: str, headers: dict[str, str], body: bytes) -> Answer:
        return (413, {}, b"body too large") if len(body) > 300 else (200, {}, b"")

    with Scripted(limit) as server:
        s = shipper(server.url, VICTORIALOGS_COMPRESSION="none")
        s.add([entry(f"line {i}") for i in range(10)] + [entry("x" * 400)])
        outcome = s.send()
        assert outcome.delivered == 10
        assert outcome.rejected == {"rejected_http_413": 1} and "body too large" in outcome.reason
        assert sorted(server.lines()) == sorted(f"line {i}" for i in range(10))
        assert s.stats.batches_split >= 3
        # What the 413 taught is kept: the next batch is cut before it is sent.
        before = len(server.seen)
        s.add([entry(f"again {i}") for i in range(6)])
        assert s.send().delivered == 6
        assert all(status_ok for status_ok in [len(b) <= 300 for _, _, b in server.seen[before:]])
        s.close()


def test_307_and_308_are_followed_with_credentials_only_to_the_same_host() -> None:
    with Scripted(ok) as other, Scripted(ok) as same_host:
        hops = {"n": 0}

        def redirect(path: str, headers: dict[str, str], body: bytes) -> Answer:
            hops["n"] += 1
            if hops["n"] == 1:  # to another path of this host
                return 307, {"Location": "/moved/insert/jsonline"}, b""
            if path.startswith("/moved"):
                return 308, {"Location": f"{other.url}/insert/jsonline"}, b""
            return 200, {}, b""

        with Scripted(redirect) as first:
            s = shipper(first.url.replace("http://", "http://user:secret@"))
            s.add([entry("moved")])
            assert s.send().delivered == 1
            paths = [p.partition("?")[0] for p, _, _ in first.seen]
            assert paths == ["/insert/jsonline", "/moved/insert/jsonline"]
            assert all("authorization" in h for _, h, _ in first.seen)
            assert other.lines() == ["moved"]
            assert "authorization" not in other.seen[0][1]  # another host: no credentials
            s.close()
        assert not same_host.seen


def test_a_redirect_to_this_host_written_as_a_whole_url_keeps_the_urls_credentials() -> None:
    """A Location naming this same host and port in full is a redirect within the server, as
    a path alone is: the URL's user and password go along (before, only a path kept them, and
    such a server answered 401 to every batch)."""

    def redirect(path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.startswith("/moved"):
            return (200, {}, b"") if "authorization" in headers else (401, {}, b"who?")
        return 307, {"Location": f"{first.url}/moved/insert/jsonline"}, b""

    with Scripted(redirect) as first:
        s = shipper(first.url.replace("http://", "http://user:secret@"))
        s.add([entry("moved")])
        assert s.send().delivered == 1
        assert [h.get("authorization") for _, h, _ in first.seen] == [
            "Basic dXNlcjpzZWNyZXQ="] * 2  # fmt: skip
        s.close()


def test_endless_redirects_keep_the_batch() -> None:
    with Scripted(lambda p, h, b: (307, {"Location": "/again"}, b"")) as server:
        s = shipper(server.url)
        s.add([entry("loop")])
        outcome = s.send()
        assert outcome.kept_lines == 1 and outcome.delivered == 0
        assert len(server.seen) == 4  # the request and three hops
        s.close()


@pytest.mark.parametrize("status", [301, 302, 303])
def test_permanent_redirect_is_a_configuration_error_the_batch_is_kept(
    status: int, capfd: pytest.CaptureFixture[str]
) -> None:
    from vlhook import _diag

    _diag.configure(None, False)
    _diag._last_shown.clear()
    with Scripted(lambda p, h, b: (status, {"Location": "http://new-host:9428/"}, b"")) as s1:
        s = shipper(s1.url)
        s.add([entry("a")])
        outcome = s.send()
        assert outcome.kept_lines == 1 and len(s1.seen) == 1
        s.close()
    err = capfd.readouterr().err
    assert "http://new-host:9428/" in err and "VICTORIALOGS_URL" in err


# -- deadlines: a flush or the exit waiting -------------------------------------------------------


def test_a_retry_wait_longer_than_the_flush_deadline_means_keep_now() -> None:
    with Scripted(lambda p, h, b: (503, {"Retry-After": "30"}, b"")) as server:
        s = shipper(server.url)
        s.add([entry("a")])
        started = time.monotonic()
        outcome = s.send(timeout=1.0)
        assert time.monotonic() - started < 0.8  # not waited for: kept at once
        assert outcome.kept_lines == 1 and len(server.seen) == 1
        s.close()


def test_a_flush_arriving_during_a_retry_wait_ends_it_at_once() -> None:
    with Scripted(lambda p, h, b: (503, {"Retry-After": "30"}, b"")) as server:
        s = shipper(server.url)
        s.add([entry("a")])
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(outcome=s.send()))
        worker.start()
        time.sleep(0.3)  # in its 30 s wait now
        s.cancel.deadline = time.monotonic() + 1.0
        s.cancel.poke()
        worker.join(2)
        assert not worker.is_alive()
        assert result["outcome"].kept_lines == 1
        s.close()


def test_at_exit_an_unanswered_request_is_reported_not_sent_again() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts (the kernel does), never answers: a frozen server
    with listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        s = shipper(url, VICTORIALOGS_TIMEOUT_MS="300")
        s.add([entry("a"), entry("b")])
        s.cancel.final = True
        outcome = s.send(timeout=2.0)
        assert outcome.maybe == 2 and not outcome.kept and outcome.delivered == 0
        s.close()


def test_a_hung_endpoint_gets_no_new_batch_when_a_flush_cannot_wait(recv: Receiver) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    with listener:
        frozen = f"http://127.0.0.1:{listener.getsockname()[1]}"
        s = shipper(f"{frozen},{recv.url}", VICTORIALOGS_TIMEOUT_MS="400")
        s.health._next = 0  # the frozen one first
        s.add([entry("first")])
        assert s.send().delivered == 1  # timed out there, then delivered by the other
        s.health._next = 0
        s.add([entry("second")])
        started = time.monotonic()
        assert s.send(timeout=0.3).delivered == 1  # the hung one skipped: no wait for it
        assert time.monotonic() - started < 0.3
        assert sorted(r["_msg"] for r in recv.wait_for(2, timeout=5)) == ["first", "second"]
        s.close()


def test_a_flush_that_cannot_try_the_hung_endpoint_keeps_its_batch_at_once(
    recv: Receiver,
) -> None:
    """After a request left unanswered, a flush that cannot afford a whole request timeout
    skips that endpoint until NODE_DOWN_S has passed. It still slept through its retries'
    backoff within its budget (0.1 + 0.2 + 0.4 + 0.8 s of a Lambda invocation's 2 s) before
    keeping the batch, sending nothing: every invocation of those seconds billed for it."""
    from fault_proxy import FaultProxy

    with FaultProxy(recv.url, ["stall"] * 10, stall_s=5) as proxy:
        s = shipper(proxy.url, VICTORIALOGS_TIMEOUT_MS="1000")
        s.add([entry("first")])
        assert s.send().kept_lines == 1  # unanswered, again and again: the endpoint is hung
        tried = len(proxy.requests)
        s.add([entry("second")])
        started = time.monotonic()
        outcome = s.send(timeout=0.9)  # a flush: less time left than a request may take
        elapsed = time.monotonic() - started
        assert outcome.kept_lines == 1 and outcome.delivered == 0
        assert elapsed < 0.3, elapsed
        assert "unanswered" in outcome.reason, outcome.reason
        assert len(proxy.requests) == tried  # the hung endpoint was not tried again
        s.close()
