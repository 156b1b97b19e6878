"""What vlhook relies on in VictoriaLogs' `/insert/jsonline`, checked against the pinned release.

Each test posts to a real server and asserts on what it stored, not only on the status: many
mistakes answer 200 and store nothing. docs/design.md lists where this release differs from the
v1.26.0 observations in shared/spec/victorialogs-contract.md.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import pytest

from victorialogs import Cluster, Server

LINE_LIMIT = 262_143  # bytes without the newline; vlhook's SERVER_LINE_LIMIT
MISSING_MSG = "missing _msg field; see https://docs.victoriametrics.com/victorialogs/keyconcepts/#message-field"
Rows = list[dict[str, str]]


def _request(server: Server, method: str, path: str, body: bytes = b"",
             headers: Optional[dict[str, str]] = None) -> tuple[int, str, bytes]:  # fmt: skip
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


class Batch:
    """Lines of one test, told apart from every other test's by a `cid` field."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cid = uuid.uuid4().hex[:12]

    def line(self, **fields: Any) -> bytes:
        return json.dumps({"cid": self.cid, **fields}).encode() + b"\n"

    def sized(self, size: int) -> bytes:
        """A line of exactly `size` bytes (without its newline)."""
        pad = size - len(json.dumps({"cid": self.cid, "_msg": ""}))
        line = json.dumps({"cid": self.cid, "_msg": "x" * pad}).encode()
        assert len(line) == size
        return line + b"\n"

    def post(
        self,
        body: bytes,
        query: str = "",
        headers: Optional[dict[str, str]] = None,
        content_type: Optional[str] = "application/stream+json",
    ) -> tuple[int, str]:
        all_headers = {"Content-Type": content_type} if content_type else {}
        all_headers.update(headers or {})
        status, _, text = _request(self.server, "POST", f"/insert/jsonline{query}", body,
                                   all_headers)  # fmt: skip
        return status, text.decode()

    def stored(self, headers: Optional[dict[str, str]] = None) -> Rows:
        self.server.force_flush()
        query = urlencode({"query": f'cid:="{self.cid}" | sort by (_time)', "limit": "100000"})
        status, _, body = _request(self.server, "GET", f"/select/logsql/query?{query}",
                                   headers=headers)  # fmt: skip
        assert status == 200, body
        return [json.loads(line.decode("utf-8", "replace")) for line in body.splitlines()]

    def messages(self, headers: Optional[dict[str, str]] = None) -> list[str]:
        return [row["_msg"] for row in self.stored(headers)]


@pytest.fixture
def batch(victorialogs_server: Server) -> Batch:
    return Batch(victorialogs_server)


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the request ----------------------------------------------------------------------------------


def test_form_content_type_answers_200_and_stores_nothing(batch: Batch) -> None:
    assert batch.post(batch.line(_msg="m"), content_type="application/x-www-form-urlencoded") == (
        200, ""
    )  # fmt: skip
    assert batch.stored() == []


@pytest.mark.parametrize("content_type", ["application/stream+json", "text/plain", None])
def test_other_content_types_store_the_line(batch: Batch, content_type: Optional[str]) -> None:
    assert batch.post(batch.line(_msg="m"), content_type=content_type) == (200, "")
    assert batch.messages() == ["m"]


def test_stored_values_are_strings_and_empty_ones_are_dropped(batch: Batch) -> None:
    line = batch.line(_msg="m", num=1, flag=True, arr=[1, "a"], nested={"a": {"b": 2}},
                      empty="", none=None, obj={})  # fmt: skip
    batch.post(line + b'{"cid":"%s","_msg":"dup","k":"1","k":"2"}\n' % batch.cid.encode())
    first, dup = batch.stored()
    assert {k: v for k, v in first.items() if not k.startswith("_")} == {
        "cid": batch.cid, "num": "1", "flag": "true", "arr": '[1,"a"]', "nested.a.b": "2"
    }  # fmt: skip
    assert {"_time", "_stream", "_stream_id"} <= set(first)
    assert dup["k"] == "2"  # duplicate keys: the last wins


# -- Content-Encoding -----------------------------------------------------------------------------

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "identity": bytes,
    "none": bytes,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_accepted_content_encodings(batch: Batch, encoding: str) -> None:
    body = ENCODERS[encoding](batch.line(_msg="m"))
    assert batch.post(body, headers={"Content-Encoding": encoding}) == (200, "")
    assert batch.messages() == ["m"]


@pytest.mark.parametrize("encoding", ["GZIP", "x-gzip", "br", "gzip, identity"])
def test_other_content_encodings_answer_200_and_store_nothing(batch: Batch, encoding: str) -> None:
    body = gzip.compress(batch.line(_msg="m"))
    assert batch.post(body, headers={"Content-Encoding": encoding}) == (200, "")
    assert batch.stored() == []


def test_truncated_gzip_keeps_the_lines_before_the_break(batch: Batch) -> None:
    body = gzip.compress(b"".join(batch.line(_msg=f"n{i}") for i in range(2000)))
    assert batch.post(body[:-200], headers={"Content-Encoding": "gzip"})[0] == 200
    assert 0 < len(batch.stored()) < 2000


# -- tenancy --------------------------------------------------------------------------------------


def test_tenancy_headers_store_the_rows_apart(batch: Batch) -> None:
    tenant = {"AccountID": "7", "ProjectID": "3"}
    assert batch.post(batch.line(_msg="tenant"), headers=tenant) == (200, "")
    assert batch.messages(tenant) == ["tenant"]
    assert batch.stored() == []  # not in the default tenant (0:0)


@pytest.mark.parametrize(
    ("header", "value"),
    [("AccountID", "x"), ("ProjectID", "-1"), ("AccountID", "4294967296")],
)
def test_bad_tenancy_header_is_400(batch: Batch, header: str, value: str) -> None:
    status, text = batch.post(batch.line(_msg="m"), headers={header: value})
    assert status == 400 and "cannot parse" in text
    assert batch.stored() == []


def test_empty_tenancy_header_is_the_default_tenant(batch: Batch) -> None:
    assert batch.post(batch.line(_msg="m"), headers={"AccountID": ""}) == (200, "")
    assert batch.messages() == ["m"]


# -- parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [("?_time_field=ts", {}), ("", {"VL-Time-Field": "ts"})],
    ids=["query", "header"],
)
def test_time_field_is_used_and_removed(batch: Batch, query: str, headers: dict[str, str]) -> None:
    ts = _iso(-timedelta(hours=1))
    batch.post(batch.line(_msg="m", ts=ts), query, headers)
    (row,) = batch.stored()
    assert row["_time"][:19] == ts[:19] and "ts" not in row


def test_time_field_wins_over_a_literal_time_key(batch: Batch) -> None:
    ts = _iso(-timedelta(hours=1))
    batch.post(batch.line(_msg="m", ts=ts, _time="2020-01-01T00:00:00Z"), "?_time_field=ts")
    (row,) = batch.stored()
    assert row["_time"][:19] == ts[:19]


def test_msg_field_takes_the_first_non_empty_candidate(batch: Batch) -> None:
    batch.post(batch.line(message="", msg="second"), "?_msg_field=message,msg")
    batch.post(batch.line(log={"text": "nested"}), "?_msg_field=log.text")
    assert sorted(batch.messages()) == ["nested", "second"]


@pytest.mark.parametrize(
    ("query", "headers"),
    [("?_stream_fields=container_name,job", {}), ("", {"VL-Stream-Fields": "container_name,job"})],
    ids=["query", "header"],
)
def test_stream_fields(batch: Batch, query: str, headers: dict[str, str]) -> None:
    batch.post(batch.line(_msg="m", container_name="c", job="j", _stream="{x=1}"), query, headers)
    (row,) = batch.stored()
    assert row["_stream"] == '{container_name="c",job="j"}'  # a client's own _stream is ignored


def test_bad_extra_fields_is_400(batch: Batch) -> None:
    assert batch.post(batch.line(_msg="m"), "?extra_fields=k")[0] == 400


# -- lines and fields -----------------------------------------------------------------------------


def test_line_at_the_limit_is_stored(batch: Batch) -> None:
    assert batch.post(batch.sized(LINE_LIMIT) + batch.line(_msg="after")) == (200, "")
    assert sorted(len(m) for m in batch.messages())[-1] > 262_000
    assert "after" in batch.messages()


@pytest.mark.parametrize("following", [0, 1, 10, 1000])
def test_longer_line_is_skipped_and_the_lines_after_it_are_lost(
    batch: Batch, following: int
) -> None:
    body = batch.line(_msg="before") + batch.sized(LINE_LIMIT + 1)
    body += b"".join(batch.line(_msg=f"after {i}") for i in range(following))
    assert batch.post(body) == (200, "")
    assert batch.messages() == ["before"]


@pytest.mark.parametrize(("fields", "kept"), [(1000, True), (1001, False)])
def test_more_than_1000_fields_drops_the_row(batch: Batch, fields: int, kept: bool) -> None:
    many = {f"f{i}": i for i in range(fields - 2)}  # + cid and _msg
    batch.post(batch.line(_msg="many", **many) + batch.line(_msg="next"))
    assert batch.messages() == (["many", "next"] if kept else ["next"])


def test_top_level_key_over_128_bytes_drops_the_row(batch: Batch) -> None:
    batch.post(batch.line(_msg="128", **{"k" * 128: "v"}))
    batch.post(batch.line(_msg="129", **{"k" * 129: "v"}) + batch.line(_msg="next"))
    assert sorted(batch.messages()) == ["128", "next"]


def test_nested_key_path_over_128_bytes_stores_that_object_as_text(batch: Batch) -> None:
    batch.post(batch.line(_msg="m", a={"k" * 130: "v"}))
    (row,) = batch.stored()
    assert json.loads(row["a"]) == {"k" * 130: "v"}


@pytest.mark.parametrize("line", ['{"_msg": ""}', "{}"], ids=["empty", "missing"])
def test_empty_or_missing_msg_gets_the_server_text(batch: Batch, line: str) -> None:
    batch.post(batch.line(**json.loads(line)))
    assert batch.messages() == [MISSING_MSG]


def test_bad_lines_are_skipped_and_all_bad_is_400(batch: Batch) -> None:
    assert batch.post(b"1\n[2]\n" + batch.line(_msg="good") + b"\n\r\n") == (200, "")
    assert batch.messages() == ["good"]
    status, text = batch.post(b"1\n[2]\nnull\n")
    assert status == 400 and "cannot process jsonline request" in text
    assert batch.post(b"\n\n") == (200, "")


def test_invalid_utf8_is_stored_and_read_back_as_sent(batch: Batch) -> None:
    """Readers must decode query results leniently: the bytes come back as they were sent."""
    batch.post(b'{"cid":"%s","_msg":"a\xff b"}\n' % batch.cid.encode())
    batch.server.force_flush()
    query = urlencode({"query": f'cid:="{batch.cid}"'})
    _, _, body = _request(batch.server, "GET", f"/select/logsql/query?{query}")
    assert b'"_msg":"a\xff b"' in body


def test_query_results_are_one_row_per_newline_byte(batch: Batch) -> None:
    """U+2028 and U+0085 come back raw (valid in JSON): a reader that splits text at every line
    break Python knows (str.splitlines) cuts such a row in two."""
    batch.post(batch.line(_msg="a\u2028b\x85c"))
    batch.server.force_flush()
    query = urlencode({"query": f'cid:="{batch.cid}"'})
    _, _, body = _request(batch.server, "GET", f"/select/logsql/query?{query}")
    assert "a\u2028b\x85c".encode() in body and body.count(b"\n") == 1
    assert batch.messages() == ["a\u2028b\x85c"]


# -- time -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "kept"),
    [(timedelta(days=-8), False), (timedelta(days=-6), True), (timedelta(days=3), False)],
    ids=["8d-old", "6d-old", "3d-ahead"],
)
def test_rows_outside_retention_answer_200_and_are_not_stored(
    batch: Batch, offset: timedelta, kept: bool
) -> None:
    body = batch.line(_msg="timed", _time=_iso(offset)) + batch.line(_msg="now")
    assert batch.post(body) == (200, "")
    assert sorted(batch.messages()) == (["now", "timed"] if kept else ["now"])


@pytest.mark.parametrize(
    "value", ["2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00z", "2026-01-01"]
)
def test_unparsable_time_skips_the_line(batch: Batch, value: str) -> None:
    batch.post(batch.line(_msg="bad time", _time=value) + batch.line(_msg="ok"))
    assert batch.messages() == ["ok"]


@pytest.mark.parametrize("value", [0, "0", "", None], ids=["0", "'0'", "empty", "null"])
def test_times_meaning_now(batch: Batch, value: Any) -> None:
    before = _iso(timedelta())[:10]
    batch.post(batch.line(_msg="m", _time=value))
    (row,) = batch.stored()
    assert row["_time"][:10] in (before, _iso(timedelta())[:10])  # midnight may come between


@pytest.mark.parametrize("unit", [1, 1000, 1_000_000_000], ids=["s", "ms", "ns"])
def test_unix_times_as_numbers(batch: Batch, unit: int) -> None:
    hour_ago = int(time.time()) - 3600
    batch.post(batch.line(_msg="m", _time=hour_ago * unit))
    (row,) = batch.stored()
    expected = datetime.fromtimestamp(hour_ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    assert row["_time"].startswith(expected)


# -- endpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/health", 200), ("GET", "/insert/ready", 200), ("GET", "/ping", 204),
     ("GET", "/insert/jsonline", 405), ("GET", "/no/such/path", 400),
     ("GET", "/internal/force_flush", 200)],
)  # fmt: skip
def test_endpoints(victorialogs_server: Server, method: str, path: str, status: int) -> None:
    assert _request(victorialogs_server, method, path)[0] == status


def test_no_request_size_limit(batch: Batch) -> None:
    body = b"".join(batch.line(_msg="y" * 1000, n=i) for i in range(20_000))  # ~20 MB
    assert batch.post(body) == (200, "")
    assert len(batch.stored()) == 20_000


# -- cluster --------------------------------------------------------------------------------------


def _post_to(node: Server, batch: Batch, prefix: str) -> None:
    for i in range(10):
        status, _, _ = _request(node, "POST", "/insert/jsonline", batch.line(_msg=f"{prefix}{i}"),
                                {"Content-Type": "application/stream+json"})  # fmt: skip
        assert status == 200


def _stored_within(batch: Batch, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(batch.stored()) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return sorted(batch.messages())


def test_a_vlinsert_node_stopped_gracefully_drops_what_it_had_not_forwarded(
    vl_cluster: Cluster,
) -> None:
    """A vlinsert node forwards rows to the storage nodes about once a second. On SIGTERM it
    stops its client to them before the last send ("dropping N bytes of data, since there are no
    available storage nodes"): rows it answered 200 for in that last second are lost. What it
    had forwarded is kept. A client cannot see this; docs/design.md says what follows."""
    batch = Batch(vl_cluster)
    front = vl_cluster.front[1]
    _post_to(front, batch, "early")
    assert len(_stored_within(batch, 10, timeout=10)) == 10  # forwarded within the bound
    _post_to(front, batch, "late")
    front.stop()  # SIGTERM right after the last 200
    time.sleep(2)  # longer than the forwarding interval
    assert _stored_within(batch, 20, timeout=0) == sorted(f"early{i}" for i in range(10))
