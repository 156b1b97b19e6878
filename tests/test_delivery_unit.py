"""Tests of `vlhook._delivery.Delivery` and `vlhook._transport`: encoding within the server's
line limit, a file:// endpoint, and HTTP to the in-process receiver (loopback only)."""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from vlhook._config import SERVER_LINE_LIMIT, Config, load
from vlhook._delivery import Delivery, constant_prefix
from vlhook._entry import Entry, EntryBuilder, rfc3339
from vlhook._listen import Receiver
from vlhook._stats import Stats
from vlhook._transport import (
    FileTransport,
    HttpTransport,
    gzip_body,
    insert_path,
    make_transport,
    request_headers,
)

NOW_NS = time.time_ns()


@pytest.fixture
def recv() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def config(url: str, **env: str) -> Config:
    full = {"VICTORIALOGS_URL": url, "VICTORIALOGS_SPOOL_DIR": "off", **env}
    c = load(full)
    assert c.warnings == (), c.warnings
    return c


def make(url: str, **env: str) -> tuple[Delivery, EntryBuilder, Stats]:
    stats = Stats()
    c = config(url, **env)
    return Delivery(c, stats), EntryBuilder(c, stats), stats


def entry(msg: str = "hello", **fields: Any) -> Entry:
    return {"_time": rfc3339(NOW_NS), "_msg": msg, "level": "INFO", "stream": "stdout", **fields}


def read_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def free_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- encoding ---------------------------------------------------------------------------------


def test_constant_prefix_then_entry_fields(tmp_path: Path) -> None:
    c = config(
        f"file://{tmp_path}/o.jsonl",
        VICTORIALOGS_FIELDS="env=prod,team=core",
        VICTORIALOGS_CONTAINER_NAME="box",
        VICTORIALOGS_JOB="jobname",
    )
    prefix = constant_prefix(c)
    assert prefix.endswith(b",")
    d = Delivery(c, Stats())
    line = d.encode(entry("m", job="own job"))
    assert line.startswith(prefix)
    obj = json.loads(line)
    assert obj["container_name"] == "box"
    assert obj["job"] == "own job"  # the program's own field wins
    assert obj["env"] == "prod" and obj["team"] == "core"
    assert obj["pid"] == os.getpid()
    assert obj["_msg"] == "m"


def test_file_endpoint_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    d, b, stats = make(f"file://{path}")
    d.add(b.from_line((0, "first", NOW_NS, None, None, "")))
    d.add(
        b.from_line((1, '{"msg": "second", "level": "error", "k": [1, 2]}', NOW_NS, None, None, ""))
    )
    assert not path.exists()  # batched until sent
    assert d.send_batch(deadline=None) is True
    d.add([entry("third")])
    assert d.send_batch(deadline=None) is True
    rows = [json.loads(x) for x in read_lines(path)]
    assert [(r["_msg"], r["level"], r["stream"]) for r in rows] == [
        ("first", "INFO", "stdout"),
        ("second", "ERROR", "stderr"),
        ("third", "INFO", "stdout"),
    ]
    assert rows[1]["k"] == [1, 2]
    assert (stats.captured, stats.shipped, stats.batches) == (3, 3, 2)
    assert stats.dropped == {}
    assert os.stat(path).st_mode & 0o777 == 0o600
    d.close()


def test_batch_is_sent_when_batch_lines_reached(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    d, _, stats = make(f"file://{path}", VICTORIALOGS_BATCH_LINES="3")
    d.add([entry("1"), entry("2")])
    assert not path.exists()
    d.add([entry("3")])
    assert len(read_lines(path)) == 3
    assert d.pending_lines == 0
    assert stats.shipped == 3


def test_send_with_nothing_pending_is_true_and_sends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    d, _, stats = make(f"file://{path}")
    assert d.send_batch(deadline=None) is True
    assert not path.exists()
    assert stats.batches == 0


def _big_entries(builder: EntryBuilder) -> list[Entry]:
    bound = {
        "huge": "h" * 2_000_000,
        "list": ["x" * 100_000] * 5,
        "nested": {"deep": {"text": "n" * 500_000}},
        **{f"f{i:03d}": "v" * 16_000 for i in range(40)},
    }
    return builder.from_line((0, "the message " + "m" * 50_000, NOW_NS, {"inv": 1}, bound, ""))


def test_lines_never_reach_the_server_limit_even_with_enormous_fields(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    d, b, stats = make(f"file://{path}")
    entries = _big_entries(b)
    d.add(entries)
    d.add([entry("after")])
    assert d.send_batch(deadline=None)
    lines = read_lines(path)
    assert len(lines) == 2
    assert all(len(x) < SERVER_LINE_LIMIT for x in lines)
    first = json.loads(lines[0])
    assert first["_msg"] == "the message " + "m" * 50_000
    assert first["level"] == "INFO"
    truncated = first["vlhook.truncated"].split(",")
    assert {"huge", "list", "nested", "f000", "f039", "inv"} <= set(truncated)
    assert json.loads(lines[1])["_msg"] == "after"
    assert stats.dropped == {"fields_too_large_truncated": 1}


@pytest.mark.parametrize("char", ["x", "é", "😀", '"'])
def test_long_messages_are_split_and_every_line_fits(tmp_path: Path, char: str) -> None:
    path = tmp_path / "out.jsonl"
    d, b, _ = make(f"file://{path}", VICTORIALOGS_MAX_LINE_BYTES="65536")
    message = char * 400_000
    d.add(b.from_line((0, message, NOW_NS, None, None, "")))
    assert d.send_batch(deadline=None)
    lines = read_lines(path)
    assert all(len(x) < SERVER_LINE_LIMIT for x in lines)
    rows = [json.loads(x) for x in lines]
    assert [r["msg_part"] for r in rows] == list(range(1, len(rows) + 1))
    assert {r["msg_parts"] for r in rows} == {len(rows)}
    assert "".join(r["_msg"] for r in rows) == message


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"d": [value]}
    return value


def _values() -> dict[str, Any]:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    cyclic_list: list[Any] = [1]
    cyclic_list.append(cyclic_list)
    return {
        "cyclic": cyclic,
        "cyclic_list": cyclic_list,
        "deep": _deep(2000),
        "unprintable": _Unprintable(),
        "set": {3},
        "bytes": b"\x00\xff",
        "obj": object(),
    }


@pytest.mark.parametrize("name", list(_values()))
def test_unencodable_values_are_stringified(tmp_path: Path, name: str) -> None:
    d, _, _ = make(f"file://{tmp_path}/o.jsonl")
    value = _values()[name]
    line = d.encode(entry("m", value=value, plain=5))
    assert len(line) < SERVER_LINE_LIMIT
    obj = json.loads(line)
    assert obj["_msg"] == "m"
    assert obj["plain"] == 5
    assert isinstance(obj["value"], str)
    assert obj["value"]


def test_unprintable_value_gets_a_placeholder(tmp_path: Path) -> None:
    d, _, _ = make(f"file://{tmp_path}/o.jsonl")
    obj = json.loads(d.encode(entry("m", value=_Unprintable())))
    assert obj["value"] == "<unprintable _Unprintable>"


def test_cyclic_value_is_shown_as_python_shows_it(tmp_path: Path) -> None:
    d, _, _ = make(f"file://{tmp_path}/o.jsonl")
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["me"] = cyclic
    obj = json.loads(d.encode(entry("m", value=cyclic)))
    assert obj["value"] == "{'a': 1, 'me': {...}}"


def test_unreachable_file_without_spool_is_counted_as_lost(tmp_path: Path) -> None:
    d, _, stats = make(f"file://{tmp_path}/missing-dir/o.jsonl")
    d.add([entry("a"), entry("b")])
    start = time.monotonic()
    assert d.send_batch(deadline=time.monotonic() + 0.3) is False
    assert time.monotonic() - start < 3
    assert stats.dropped == {"undeliverable": 2}
    assert stats.shipped == 0


def test_unreachable_with_spool_keeps_the_batch_and_replays_it(tmp_path: Path) -> None:
    target = tmp_path / "later" / "o.jsonl"
    spool = tmp_path / "spool"
    stats = Stats()
    c = load({"VICTORIALOGS_URL": f"file://{target}", "VICTORIALOGS_SPOOL_DIR": str(spool)})
    d = Delivery(c, stats)
    d.add([entry("kept")])
    assert d.send_batch(deadline=time.monotonic() + 0.3) is False
    assert stats.spooled == 1
    assert stats.dropped == {}
    target.parent.mkdir()
    d.replay_spool()
    assert [json.loads(x)["_msg"] for x in read_lines(target)] == ["kept"]
    assert stats.replayed == 1


# -- HTTP -------------------------------------------------------------------------------------


def _query(info: Any) -> dict[str, list[str]]:
    return parse_qs(info.query, keep_blank_values=True)


def test_http_request_format(recv: Receiver) -> None:
    d, b, stats = make(
        recv.url,
        VICTORIALOGS_STREAM_FIELDS="container_name,job,env",
        VICTORIALOGS_FIELDS="env=test",
    )
    d.add(b.from_line((0, "over http", NOW_NS, None, {"k": "v"}, "")))
    assert d.send_batch(deadline=None)
    rows = recv.wait_for(1, timeout=5)
    assert [(r["_msg"], r["k"], r["env"]) for r in rows] == [("over http", "v", "test")]
    info = recv.requests[-1]
    assert info.method == "POST"
    assert info.path == "/insert/jsonline"
    assert _query(info) == {"_stream_fields": ["container_name,job,env"]}
    assert info.headers["content-type"] == "application/stream+json"
    assert info.headers["content-encoding"] == "gzip"
    assert info.content_encoding == "gzip"
    assert info.headers["user-agent"].startswith("vlhook/")
    assert "authorization" not in info.headers
    assert "accountid" not in info.headers and "projectid" not in info.headers
    assert info.status == 200
    assert rows[0]["_stream"].startswith("{container_name=")
    assert '"env"' not in rows[0]["_stream"] and 'env="test"' in rows[0]["_stream"]
    assert stats.shipped == 1 and stats.batches == 1
    assert stats.bytes_sent > 0
    d.close()


def test_http_without_compression(recv: Receiver) -> None:
    d, _, _ = make(recv.url, VICTORIALOGS_COMPRESSION="none")
    d.add([entry("plain body")])
    assert d.send_batch(deadline=None)
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5)] == ["plain body"]
    assert "content-encoding" not in recv.requests[-1].headers
    d.close()


def test_gzip_body_round_trips() -> None:
    data = b'{"_msg":"x"}\n' * 1000
    packed = gzip_body(data)
    assert len(packed) < len(data) // 5
    assert gzip.decompress(packed) == data


def test_tenant_headers(recv: Receiver) -> None:
    d, _, _ = make(recv.url, VICTORIALOGS_ACCOUNT_ID="12", VICTORIALOGS_PROJECT_ID="34")
    d.add([entry("tenant row")])
    assert d.send_batch(deadline=None)
    rows = recv.wait_for(1, timeout=5, account=12, project=34)
    assert [r["_msg"] for r in rows] == ["tenant row"]
    assert recv.entries() == []
    headers = recv.requests[-1].headers
    assert headers["accountid"] == "12"
    assert headers["projectid"] == "34"
    d.close()


def test_basic_auth_from_url(recv: Receiver) -> None:
    url = recv.url.replace("http://", "http://us%40er:p%3Ass@")
    d, _, _ = make(url)
    d.add([entry("auth")])
    assert d.send_batch(deadline=None)
    expected = base64.b64encode(b"us@er:p:ss").decode()
    assert recv.requests[-1].headers["authorization"] == f"Basic {expected}"
    d.close()


def test_bearer_token_wins_over_basic_and_custom_headers_are_sent(recv: Receiver) -> None:
    url = recv.url.replace("http://", "http://user:pw@")
    d, _, _ = make(url, VICTORIALOGS_BEARER_TOKEN="tok-1", VICTORIALOGS_HEADERS="X-Scope=abc")
    d.add([entry("bearer")])
    assert d.send_batch(deadline=None)
    headers = recv.requests[-1].headers
    assert headers["authorization"] == "Bearer tok-1"
    assert headers["x-scope"] == "abc"
    d.close()


def test_request_headers_and_path_helpers() -> None:
    c = config(
        "https://u:p@h:1/base",
        VICTORIALOGS_STREAM_FIELDS="a b,c",
        VICTORIALOGS_COMPRESSION="none",
    )
    endpoint = c.endpoints[0]
    assert insert_path(endpoint, c) == "/base/insert/jsonline?_stream_fields=a%20b,c"
    headers = request_headers(endpoint, c)
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert "Content-Encoding" not in headers
    assert headers["Content-Type"] == "application/stream+json"
    assert isinstance(make_transport(endpoint, c), HttpTransport)
    file_config = config("file:///tmp/x.jsonl")
    assert isinstance(make_transport(file_config.endpoints[0], file_config), FileTransport)


def test_rejection_is_counted_and_not_retried(recv: Receiver) -> None:
    # A base path the server does not serve: it answers 400.
    d, _, stats = make(recv.url + "/no/such/base")
    d.add([entry("a"), entry("b"), entry("c")])
    start = time.monotonic()
    assert d.send_batch(deadline=None) is False
    assert time.monotonic() - start < 2
    assert len(recv.requests) == 1
    assert recv.requests[0].status == 400
    assert stats.dropped == {"rejected_http_400": 3}
    assert stats.retries == 0
    assert stats.shipped == 0
    assert "HTTP 400" in stats.rejected_message
    assert "/no/such/base/insert/jsonline" in stats.rejected_message
    d.add([entry("d")])
    assert d.send_batch(deadline=None) is False
    assert stats.dropped == {"rejected_http_400": 4}
    d.close()


def test_reconnects_after_the_server_closed_a_keep_alive_connection(recv: Receiver) -> None:
    d, _, stats = make(recv.url)
    d.add([entry("one")])
    assert d.send_batch(deadline=None)
    transport = d.transports[0]
    assert isinstance(transport, HttpTransport)
    first_conn = transport._conn
    assert first_conn is not None  # kept alive
    # The server side drops every open connection, as an idle timeout would.
    for _ in range(100):
        with recv._cond:
            conns = list(recv._connections)
        if conns:
            break
        time.sleep(0.01)
    assert conns
    for conn in conns:
        conn.shutdown(socket.SHUT_RDWR)
    time.sleep(0.05)
    d.add([entry("two")])
    assert d.send_batch(deadline=None)
    assert [r["_msg"] for r in recv.wait_for(2, timeout=5)] == ["one", "two"]
    assert stats.retries == 0
    assert stats.shipped == 2
    assert transport._conn is not first_conn
    assert [i.status for i in recv.requests] == [200, 200]
    d.close()


def test_keep_alive_connection_is_reused(recv: Receiver) -> None:
    d, _, _ = make(recv.url)
    d.add([entry("one")])
    assert d.send_batch(deadline=None)
    transport = d.transports[0]
    assert isinstance(transport, HttpTransport)
    conn = transport._conn
    d.add([entry("two")])
    assert d.send_batch(deadline=None)
    assert transport._conn is conn
    d.close()
    assert transport._conn is None


def test_fails_over_to_the_next_endpoint_without_retrying(recv: Receiver) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    d, _, stats = make(f"{dead},{recv.url}")
    d.add([entry("failover")])
    assert d.send_batch(deadline=None)
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5)] == ["failover"]
    assert stats.retries == 0
    d.add([entry("sticks")])
    assert d.send_batch(deadline=None)
    assert len(recv.requests) == 2
    d.close()


def test_unreachable_server_is_retried_until_the_deadline_then_lost() -> None:
    d, _, stats = make(f"http://127.0.0.1:{free_port()}")
    d.add([entry("x")])
    start = time.monotonic()
    assert d.send_batch(deadline=time.monotonic() + 0.5) is False
    elapsed = time.monotonic() - start
    assert elapsed < 3
    assert stats.retries >= 1
    assert stats.dropped == {"undeliverable": 1}
    d.close()


def test_ipv6_loopback() -> None:
    try:
        receiver = Receiver(host="::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        d, _, _ = make(receiver.url)
        assert d.config.endpoints[0].host == "::1"
        d.add([entry("v6")])
        assert d.send_batch(deadline=None)
        assert [r["_msg"] for r in receiver.wait_for(1, timeout=5)] == ["v6"]
        d.close()
    finally:
        receiver.stop()


def test_enormous_entry_is_accepted_by_the_receiver_with_the_lines_after_it(
    recv: Receiver,
) -> None:
    d, b, stats = make(recv.url)
    d.add([entry("before")])
    d.add(_big_entries(b))
    d.add([entry("after")])
    assert d.send_batch(deadline=None)
    rows = recv.wait_for(3, timeout=5)
    assert [r["_msg"][:11] for r in rows] == ["before", "the message", "after"]
    assert recv.stats()["too_long"] == 0
    assert recv.stats()["lost_after_too_long"] == 0
    assert stats.shipped == 3
    d.close()


# -- retries against a scripted server --------------------------------------------------------


class _Scripted(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    answers: list[tuple[int, dict[str, str]]] = []
    seen: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(body)
        status, headers = type(self).answers.pop(0) if type(self).answers else (204, {})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"answers": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_retryable_status_is_retried_honouring_retry_after(
    scripted: tuple[str, type[_Scripted]],
) -> None:
    url, handler = scripted
    handler.answers[:] = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0.1"})]
    d, _, stats = make(url, VICTORIALOGS_COMPRESSION="none")
    d.add([entry("eventually")])
    start = time.monotonic()
    assert d.send_batch(deadline=None) is True
    assert time.monotonic() - start < 3
    assert stats.retries == 2
    assert stats.shipped == 1
    assert len(handler.seen) == 3
    assert handler.seen[0] == handler.seen[2]
    assert json.loads(handler.seen[2])["_msg"] == "eventually"
    d.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_rejected_once(
    scripted: tuple[str, type[_Scripted]], status: int
) -> None:
    url, handler = scripted
    handler.answers[:] = [(status, {})]
    d, _, stats = make(url)
    d.add([entry("a"), entry("b")])
    assert d.send_batch(deadline=None) is False
    assert len(handler.seen) == 1
    assert stats.dropped == {f"rejected_http_{status}": 2}
    assert stats.retries == 0
    d.close()


def test_retry_budget_is_bounded(
    scripted: tuple[str, type[_Scripted]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = scripted
    handler.answers[:] = [(503, {"Retry-After": "0"})] * 1000
    d, _, stats = make(url)
    d.retry_budget = 0.5  # twice a 250 ms request timeout
    d.add([entry("never")])
    start = time.monotonic()
    assert d.send_batch(deadline=None) is False
    assert time.monotonic() - start < 3
    assert stats.retries >= 2
    assert stats.dropped == {"undeliverable": 1}
    d.close()
