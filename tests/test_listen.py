"""Tests of `vlhook listen`, the local VictoriaLogs stand-in: every contract behaviour a client
can trip over, exercised over real HTTP on loopback."""

from __future__ import annotations

import argparse
import gzip
import http.client
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from vlhook import _listen
from vlhook._listen import MISSING_MSG, Receiver

JSONLINE = "/insert/jsonline"
NOW = datetime.now(timezone.utc)
BASE = NOW.replace(microsecond=0) - timedelta(hours=1)  # a second well inside retention
BASE_S = int(BASE.timestamp())
BASE_ISO = BASE.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture
def recv() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def port_of(receiver: Receiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1])


def request(
    receiver: Receiver,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(receiver), timeout=5)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def post(
    receiver: Receiver,
    lines: list[str] | bytes,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    body = lines if isinstance(lines, bytes) else "".join(x + "\n" for x in lines).encode()
    all_headers = {"Content-Type": "application/stream+json", **(headers or {})}
    return request(receiver, "POST", JSONLINE + query, body, all_headers)


def js(**fields: Any) -> str:
    return json.dumps(fields)


def stored_one(receiver: Receiver, line: str, query: str = "", **headers: str) -> dict[str, str]:
    status, text = post(receiver, [line], query, headers)
    assert status == 200, text
    rows = receiver.entries()
    assert len(rows) == 1, (rows, receiver.stats())
    return rows[0]


def parse_stored_time(row: dict[str, str]) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", row["_time"]), row["_time"]
    return datetime.strptime(row["_time"][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)


# --- endpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/health", 200, "OK"),
        ("GET", "/insert/ready", 200, None),
        ("GET", "/ping", 204, ""),
        ("GET", "/internal/force_flush", 200, None),
        ("GET", JSONLINE, 405, None),
        ("PUT", JSONLINE, 405, None),
        ("DELETE", JSONLINE, 405, None),
        ("POST", "/insert/jsonline/", 400, None),
        ("POST", "/insert/elasticsearch/_bulk", 400, None),
        ("GET", "/", 400, None),
    ],
)
def test_endpoints_answer_like_victorialogs(
    recv: Receiver, method: str, path: str, status: int, body: str | None
) -> None:
    got_status, got_body = request(recv, method, path)
    assert got_status == status
    if body is not None:
        assert got_body == body
    assert recv.entries() == []


def test_unknown_path_is_plain_text_400(recv: Receiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(recv), timeout=5)
    conn.request("GET", "/select/nothing")
    resp = conn.getresponse()
    assert resp.status == 400
    assert resp.getheader("Content-Type", "").startswith("text/plain")
    assert "/select/nothing" in resp.read().decode()
    conn.close()


def test_head_probe_has_no_body(recv: Receiver) -> None:
    assert request(recv, "HEAD", "/health") == (200, "")


# --- storing rows --------------------------------------------------------------------------


def test_stores_a_row_with_normalised_time_and_stream(recv: Receiver) -> None:
    line = js(_msg="hello", _time=BASE_ISO + "Z", app="web", host="h1", _stream="x", _stream_id="y")
    row = stored_one(recv, line, "?_stream_fields=host,app,absent")
    assert row["_msg"] == "hello"
    assert row["_time"] == BASE_ISO + ".000000000Z"
    assert row["_stream"] == '{app="web",host="h1"}'
    assert row["_stream_id"] != "y"
    assert re.fullmatch(r"[0-9a-f]{40}", row["_stream_id"])
    assert row["app"] == "web"
    assert row["host"] == "h1"
    assert set(row) == {"_msg", "_time", "_stream", "_stream_id", "app", "host"}


def test_stream_id_follows_stream_and_tenant(recv: Receiver) -> None:
    lines = [js(_msg="a", app="x"), js(_msg="b", app="x"), js(_msg="c", app="y")]
    assert post(recv, lines, "?_stream_fields=app")[0] == 200
    assert post(recv, lines[:1], "?_stream_fields=app", {"AccountID": "1"})[0] == 200
    a, b, c = recv.entries()
    assert a["_stream_id"] == b["_stream_id"] != c["_stream_id"]
    assert recv.entries(1)[0]["_stream_id"] != a["_stream_id"]


def test_no_stream_fields_gives_empty_stream(recv: Receiver) -> None:
    assert stored_one(recv, js(_msg="m", app="x"))["_stream"] == "{}"


def test_rows_kept_in_arrival_order(recv: Receiver) -> None:
    for start in (0, 5):
        assert post(recv, [js(_msg=str(i)) for i in range(start, start + 5)])[0] == 200
    assert [r["_msg"] for r in recv.entries()] == [str(i) for i in range(10)]


def test_form_content_type_stores_nothing_but_answers_200(recv: Receiver) -> None:
    for ctype in ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; a=b"):
        assert post(recv, [js(_msg="m")], headers={"Content-Type": ctype}) == (200, "")
    assert recv.entries() == []
    assert recv.stats()["form_content_type"] == 2


def test_urllib_default_content_type_is_the_silent_form_trap(recv: Receiver) -> None:
    req = urllib.request.Request(recv.url + JSONLINE, data=js(_msg="m").encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    assert recv.entries() == []
    assert recv.stats()["form_content_type"] == 1


def test_absent_content_type_is_not_a_form(recv: Receiver) -> None:
    status, _ = request(recv, "POST", JSONLINE, js(_msg="m").encode())
    assert status == 200
    assert len(recv.entries()) == 1


# --- Content-Encoding ----------------------------------------------------------------------

LINES = [js(_msg=f"line {i}", i=i) for i in range(3)]
RAW = "".join(x + "\n" for x in LINES).encode()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(RAW)),
        ("gzip", gzip.compress(RAW[:20]) + gzip.compress(RAW[20:])),
        ("deflate", zlib.compress(RAW)),
        ("identity", RAW),
        ("none", RAW),
        (None, RAW),
    ],
)
def test_accepted_encodings(recv: Receiver, encoding: str | None, body: bytes) -> None:
    headers = {} if encoding is None else {"Content-Encoding": encoding}
    assert post(recv, body, headers=headers) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["line 0", "line 1", "line 2"]
    assert recv.requests[-1].content_encoding == (encoding or "")


@pytest.mark.parametrize("encoding", ["GZIP", "x-gzip", "br", "gzip, identity", "compress"])
def test_unknown_encoding_answers_200_and_stores_nothing(recv: Receiver, encoding: str) -> None:
    body = gzip.compress(RAW) if "gzip" in encoding.lower() else RAW
    assert post(recv, body, headers={"Content-Encoding": encoding}) == (200, "")
    assert recv.entries() == []
    assert recv.stats()["unknown_encoding"] == 1


def test_truncated_gzip_keeps_the_lines_before_the_break(recv: Receiver) -> None:
    msgs = [os.urandom(40).hex() for _ in range(400)]  # incompressible, so the output streams
    packed = gzip.compress("".join(js(_msg=m) + "\n" for m in msgs).encode(), compresslevel=1)
    status, text = post(recv, packed[: len(packed) // 2], headers={"Content-Encoding": "gzip"})
    assert status == 400
    assert "truncated" in text
    kept = [r["_msg"] for r in recv.entries()]
    assert 0 < len(kept) < len(msgs)
    assert kept == msgs[: len(kept)]


def test_corrupt_gzip_is_400(recv: Receiver) -> None:
    status, text = post(recv, b"not gzip at all", headers={"Content-Encoding": "gzip"})
    assert status == 400
    assert "decompress" in text
    assert recv.entries() == []


@pytest.mark.parametrize(("encoding", "module"), [("zstd", "zstandard"), ("snappy", "snappy")])
def test_optional_encoding_without_module_is_400(
    recv: Receiver, monkeypatch: pytest.MonkeyPatch, encoding: str, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    status, text = post(recv, RAW, headers={"Content-Encoding": encoding})
    assert status == 400
    assert "cannot decode" in text
    assert module in text
    assert recv.entries() == []


def test_optional_encodings_decode_when_module_importable(
    recv: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def decompressobj() -> Any:
        return types.SimpleNamespace(decompress=lambda body: body[::-1])

    fake_zstd = types.SimpleNamespace(
        ZstdDecompressor=lambda: types.SimpleNamespace(decompressobj=decompressobj)
    )
    monkeypatch.setitem(sys.modules, "zstandard", fake_zstd)
    fake_snappy = types.SimpleNamespace(uncompress=lambda body: body[4:])
    monkeypatch.setitem(sys.modules, "snappy", fake_snappy)
    assert post(recv, RAW[::-1], headers={"Content-Encoding": "zstd"})[0] == 200
    assert post(recv, b'junk{"_msg":"x"}\n', headers={"Content-Encoding": "snappy"})[0] == 200
    assert [r["_msg"] for r in recv.entries()] == ["line 0", "line 1", "line 2", "x"]


# --- parameters ----------------------------------------------------------------------------


def test_msg_field_from_query_header_and_nested(recv: Receiver) -> None:
    assert stored_one(recv, js(message="q"), "?_msg_field=message")["_msg"] == "q"
    recv.clear()
    assert stored_one(recv, js(message="h"), **{"VL-Msg-Field": "message"})["_msg"] == "h"
    recv.clear()
    row = stored_one(recv, js(log={"msg": "n"}), "?_msg_field=log.msg")
    assert row["_msg"] == "n"
    assert "log.msg" not in row


def test_query_wins_over_header(recv: Receiver) -> None:
    line = js(a="from a", b="from b")
    row = stored_one(recv, line, "?_msg_field=a", **{"VL-Msg-Field": "b"})
    assert row["_msg"] == "from a"
    assert row["b"] == "from b"


def test_msg_field_first_non_empty_candidate(recv: Receiver) -> None:
    row = stored_one(recv, js(a="", b="second", c="third"), "?_msg_field=missing,a,b,c")
    assert row["_msg"] == "second"
    assert row["c"] == "third"


@pytest.mark.parametrize("line", [js(level="info"), js(_msg=""), js(_msg=None), "{}"])
def test_missing_or_empty_msg_gets_server_text(recv: Receiver, line: str) -> None:
    assert stored_one(recv, line)["_msg"] == MISSING_MSG


def test_ignore_fields_exact_and_prefix(recv: Receiver) -> None:
    line = js(_msg="m", secret="s", tmp_a="1", tmp_b="2", keep="k", nested={"tmp": "x"})
    row = stored_one(recv, line, "?ignore_fields=secret,tmp*,nested.tmp")
    assert {k: v for k, v in row.items() if not k.startswith("_")} == {"keep": "k"}
    recv.clear()
    row = stored_one(recv, line, **{"VL-Ignore-Fields": "keep"})
    assert "keep" not in row
    assert row["secret"] == "s"


def test_underscore_ignore_fields_is_not_a_parameter(recv: Receiver) -> None:
    row = stored_one(recv, js(_msg="m", secret="s"), "?_ignore_fields=secret")
    assert row["secret"] == "s"


def test_decolorize_fields(recv: Receiver) -> None:
    line = js(_msg="\x1b[31mred\x1b[0m", other="\x1b[1mbold\x1b[0m")
    row = stored_one(recv, line, "?decolorize_fields=_msg")
    assert row["_msg"] == "red"
    assert row["other"] == "\x1b[1mbold\x1b[0m"
    recv.clear()
    assert stored_one(recv, line, **{"VL-Decolorize-Fields": "other"})["other"] == "bold"


def test_extra_fields_override_and_join_the_stream(recv: Receiver) -> None:
    line = js(_msg="m", env="line", app="a")
    row = stored_one(recv, line, "?extra_fields=env=prod,zone=z1&_stream_fields=env,zone")
    assert row["env"] == "prod"
    assert row["zone"] == "z1"
    assert row["_stream"] == '{env="prod",zone="z1"}'
    recv.clear()
    assert stored_one(recv, line, **{"VL-Extra-Fields": "env=hdr"})["env"] == "hdr"


@pytest.mark.parametrize("extra", ["k", "k=", "a=1,k", "=v"])
def test_bad_extra_fields_is_400(recv: Receiver, extra: str) -> None:
    status, text = post(recv, [js(_msg="m")], "?extra_fields=" + extra)
    assert status == 400
    assert "extra_fields" in text
    assert recv.entries() == []


@pytest.mark.parametrize(("query", "headers"), [("?debug=1", {}), ("", {"VL-Debug": "true"})])
def test_debug_rows_are_not_stored(recv: Receiver, query: str, headers: dict[str, str]) -> None:
    assert post(recv, [js(_msg="a"), js(_msg="b")], query, headers) == (200, "")
    assert recv.entries() == []
    assert recv.stats()["debug"] == 2
    assert post(recv, [js(_msg="c")], "?debug=false")[0] == 200
    assert len(recv.entries()) == 1


def test_bad_debug_value_is_400(recv: Receiver) -> None:
    assert post(recv, [js(_msg="a")], "?debug=maybe")[0] == 400


# --- tenancy -------------------------------------------------------------------------------


def test_rows_are_stored_per_tenant(recv: Receiver) -> None:
    assert post(recv, [js(_msg="t")], headers={"AccountID": "3", "ProjectID": "7"})[0] == 200
    assert post(recv, [js(_msg="a")], headers={"AccountID": "4294967295"})[0] == 200
    assert post(recv, [js(_msg="q")], "?AccountID=5&ProjectID=5")[0] == 200  # headers only
    assert [r["_msg"] for r in recv.entries(3, 7)] == ["t"]
    assert [r["_msg"] for r in recv.entries(4294967295, 0)] == ["a"]
    assert [r["_msg"] for r in recv.entries()] == ["q"]
    assert recv.entries(5, 5) == []


@pytest.mark.parametrize("value", ["-1", "abc", "4294967296", "1.5", "0x1", "+1"])
@pytest.mark.parametrize("header", ["AccountID", "ProjectID"])
def test_bad_tenant_is_400(recv: Receiver, header: str, value: str) -> None:
    status, text = post(recv, [js(_msg="m")], headers={header: value})
    assert status == 400
    assert header in text
    assert recv.stats()["rows_stored"] == 0


# --- lines ---------------------------------------------------------------------------------


def test_crlf_and_empty_lines(recv: Receiver) -> None:
    body = b'\n{"_msg":"a"}\r\n\r\n\n{"_msg":"b"}\r\n{"_msg":"c"}'
    assert post(recv, body) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["a", "b", "c"]
    assert recv.stats()["bad_json"] == 0


@pytest.mark.parametrize(
    "bad",
    [b"42", b'"str"', b"[1,2]", b"null", b'{"_msg":"x"} junk', b'{"a":1}{"b":2}',
     b'\xef\xbb\xbf{"_msg":"bom"}', b"   ", b"{bad", b'{"n":NaN}', b'{"a":1,}'],
)  # fmt: skip
def test_non_object_lines_are_skipped_and_counted(recv: Receiver, bad: bytes) -> None:
    assert post(recv, b'{"_msg":"good"}\n' + bad + b"\n") == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["good"]
    assert recv.stats()["bad_json"] == 1


def test_all_lines_bad_is_400_with_last_error(recv: Receiver) -> None:
    status, text = post(recv, b'[1]\n\n{"a":1} trailing\n')
    assert status == 400
    assert "Extra data" in text
    assert "not a JSON object" not in text
    assert recv.stats()["bad_json"] == 2


def test_only_empty_lines_is_200(recv: Receiver) -> None:
    assert post(recv, b"\n\r\n\n") == (200, "")
    assert post(recv, b"") == (200, "")
    assert recv.entries() == []


def padded(length: int, msg: str) -> bytes:
    line = js(_msg=msg, pad="")
    return line.replace('"pad": ""', '"pad": "' + "x" * (length - len(line)) + '"').encode()


def test_line_at_the_limit_is_accepted(recv: Receiver) -> None:
    line = padded(262_143, "max")
    assert len(line) == 262_143
    assert post(recv, line + b"\n") == (200, "")
    assert recv.entries()[0]["_msg"] == "max"


def test_too_long_line_loses_the_lines_after_it(recv: Receiver) -> None:
    line = padded(262_144, "long")
    body = b"\n".join([b'{"_msg":"before"}', line, b'{"_msg":"x"}', b"", b'{"_msg":"y"}'])
    assert post(recv, body) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["before"]
    stats = recv.stats()
    assert (stats["too_long"], stats["lost_after_too_long"]) == (1, 2)


def test_too_long_alone_is_200(recv: Receiver) -> None:
    assert post(recv, padded(300_000, "long")) == (200, "")
    assert recv.stats()["too_long"] == 1


# --- values --------------------------------------------------------------------------------


def test_flattening_and_literal_values(recv: Receiver) -> None:
    raw = (
        '{"_msg":"m","a":{"b":{"c":"deep"},"n":1.50},"arr":[1, 2.0e1, "s", null, true, {"k":[]}],'
        '"i":-7,"f":1e3,"t":true,"no":false,"z":null,"e":"","o":{},"dup":"first","dup":"last",'
        '"x.y":"flat","x":{"y":"nested"}}'
    )
    row = stored_one(recv, raw)
    fields = {k: v for k, v in row.items() if not k.startswith("_")}
    assert fields == {
        "a.b.c": "deep",
        "a.n": "1.50",
        "arr": '[1,2.0e1,"s",null,true,{"k":[]}]',
        "i": "-7",
        "f": "1e3",
        "t": "true",
        "no": "false",
        "dup": "last",
        "x.y": "nested",
    }


def test_more_than_1000_fields_drops_the_row(recv: Receiver) -> None:
    ok = {"_msg": "ok", **{f"f{i}": "v" for i in range(999)}}
    too_many = {"_msg": "too many", **{f"f{i}": "v" for i in range(1000)}}
    assert post(recv, [json.dumps(ok), json.dumps(too_many)]) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["ok"]
    assert recv.stats()["too_many_fields"] == 1


def test_long_top_level_key_stores_raw_line_in_msg(recv: Receiver) -> None:
    line = json.dumps({"_msg": "m", "k" * 129: 1, "_time": "2001-01-01T00:00:00Z"})
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    row = stored_one(recv, line, "?_stream_fields=app&extra_fields=app=x&ignore_fields=_msg")
    assert row["_msg"] == line
    assert row["_stream"] == "{}"
    assert set(row) == {"_msg", "_time", "_stream", "_stream_id"}
    assert parse_stored_time(row) >= before
    recv.clear()
    assert stored_one(recv, json.dumps({"_msg": "m", "k" * 128: 1}))["k" * 128] == "1"


def test_long_nested_key_path_stores_that_object_as_text(recv: Receiver) -> None:
    row = stored_one(recv, json.dumps({"_msg": "m", "a": {"ok": 1, "b" * 127: {"c": 2}}}))
    assert row["a"] == '{"ok":1,"' + "b" * 127 + '":{"c":2}}'
    assert "a.ok" not in row


def test_row_over_size_limit_is_dropped(recv: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 MB cannot be reached through a 256 KiB line, so the limit is lowered to reach the check.
    monkeypatch.setattr(_listen, "MAX_ROW_BYTES", 500)
    assert post(recv, [js(_msg="x" * 600), js(_msg="small")]) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["small"]
    assert recv.stats()["too_large"] == 1


def test_invalid_utf8_and_lone_surrogates_become_replacement_char(recv: Receiver) -> None:
    assert post(recv, b'{"_msg":"bad \xff\xfe byte","s":"\\ud800x"}\n')[0] == 200
    row = recv.entries()[0]
    assert row["_msg"] == "bad \ufffd\ufffd byte"
    assert row["s"] == "\ufffdx"


# --- timestamps ----------------------------------------------------------------------------

SHIFTED = (BASE + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
WEST = (BASE - timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
EXPECT = BASE_ISO + ".{}Z"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BASE_ISO + "Z", EXPECT.format("000000000")),
        (BASE_ISO + ".5Z", EXPECT.format("500000000")),
        (BASE_ISO + ".123456789Z", EXPECT.format("123456789")),
        (SHIFTED + "+02:00", EXPECT.format("000000000")),
        (WEST + ".25-05:30", EXPECT.format("250000000")),
        (BASE_S, EXPECT.format("000000000")),
        (str(BASE_S), EXPECT.format("000000000")),
        (BASE_S * 1000 + 123, EXPECT.format("123000000")),
        (BASE_S * 10**6 + 123456, EXPECT.format("123456000")),
        (str(BASE_S * 10**9 + 123456789), EXPECT.format("123456789")),
        (BASE_S * 10**9 + 7, EXPECT.format("000000007")),
        (BASE_S + 0.25, EXPECT.format("250000000")),
        (f"{BASE_S}.75", EXPECT.format("750000000")),
        (f"{BASE_S // 10**9}.{BASE_S % 10**9:09d}e9", EXPECT.format("000000000")),
        (f"{BASE_S // 10**9}.{BASE_S % 10**9:09d}5e12", EXPECT.format("500000000")),
    ],
)
def test_accepted_timestamps(recv: Receiver, value: object, expected: str) -> None:
    assert stored_one(recv, js(_msg="m", _time=value))["_time"] == expected


@pytest.mark.parametrize(
    "value",
    [BASE_ISO + ".1234567890Z", BASE_ISO + "+0200", BASE_ISO + "z", BASE_ISO[:10],
     BASE_ISO, "2025-02-30T00:00:00Z", "yesterday", True, [1], "1e", "NaN"],
)  # fmt: skip
def test_rejected_timestamps_skip_the_line(recv: Receiver, value: object) -> None:
    assert post(recv, [js(_msg="ok"), js(_msg="bad", _time=value)]) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["ok"]
    assert recv.stats()["bad_time"] == 1
    recv.clear()
    status, text = post(recv, [js(_msg="bad", _time=value)])
    assert status == 400
    assert "timestamp" in text


@pytest.mark.parametrize("line", ['{"_time":0}', '{"_time":"0"}', '{"_time":""}',
                                  '{"_time":"-"}', '{"_time":null}', '{"a":1}'])  # fmt: skip
def test_timestamps_meaning_now(recv: Receiver, line: str) -> None:
    before = datetime.now(timezone.utc) - timedelta(milliseconds=1)
    row = stored_one(recv, line)
    after = datetime.now(timezone.utc) + timedelta(milliseconds=1)
    assert before <= parse_stored_time(row) <= after


def test_time_field_is_used_and_removed(recv: Receiver) -> None:
    row = stored_one(recv, js(_msg="m", ts=BASE_ISO + "Z"), "?_time_field=ts")
    assert row["_time"] == EXPECT.format("000000000")
    assert "ts" not in row
    recv.clear()
    row = stored_one(recv, js(_msg="m", t={"s": BASE_S}), **{"VL-Time-Field": "t.s"})
    assert row["_time"] == EXPECT.format("000000000")
    assert "t.s" not in row


def test_first_present_time_field_wins_even_if_empty(recv: Receiver) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    row = stored_one(recv, js(_msg="m", a="", b=BASE_S), "?_time_field=missing,a,b")
    assert parse_stored_time(row) >= before
    assert row["b"] == str(BASE_S)
    recv.clear()
    row = stored_one(recv, js(_msg="m", b=BASE_S), "?_time_field=missing,a,b")
    assert row["_time"] == EXPECT.format("000000000")


def test_literal_time_key_with_time_field_hides_the_real_time(recv: Receiver) -> None:
    row = stored_one(recv, js(_msg="m", ts=BASE_S, _time="literal"), "?_time_field=ts")
    assert row["_time"] == "literal"


def test_retention_window_drops_rows_but_answers_200(recv: Receiver) -> None:
    # The window's edges are whole days: taken now, not when the module was collected (a
    # suite that crosses midnight UTC would otherwise move them by a day).
    now = datetime.now(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    stamps = {
        "old": now - timedelta(days=8),
        "recent": now - timedelta(days=6),
        "ahead": day + timedelta(days=2, hours=23, minutes=59),
        "too far": day + timedelta(days=3, seconds=1),
    }
    lines = [js(_msg=k, _time=v.strftime("%Y-%m-%dT%H:%M:%SZ")) for k, v in stamps.items()]
    assert post(recv, lines) == (200, "")
    assert [r["_msg"] for r in recv.entries()] == ["recent", "ahead"]
    assert recv.stats()["out_of_retention"] == 2


def test_only_out_of_retention_rows_is_still_200(recv: Receiver) -> None:
    assert post(recv, [js(_msg="old", _time="2001-01-01T00:00:00Z")]) == (200, "")
    assert recv.entries() == []


# --- API, control endpoints, robustness ------------------------------------------------------


def test_requests_are_recorded(recv: Receiver) -> None:
    post(recv, gzip.compress(RAW), "?a=1", {"Content-Encoding": "gzip", "X-Custom": "v"})
    request(recv, "GET", "/health")
    request(recv, "GET", "/vlhook/stats")  # control endpoints are not recorded
    first, probe = recv.requests
    assert (first.method, first.path, first.query, first.status) == ("POST", JSONLINE, "a=1", 200)
    assert first.headers["x-custom"] == "v"
    assert first.content_encoding == "gzip"
    assert first.lines_stored == 3
    assert (probe.path, probe.status, probe.lines_stored) == ("/health", 200, 0)
    assert recv.stats()["requests"] == 1
    assert recv.stats()["rows_stored"] == 3


def test_control_endpoints(recv: Receiver) -> None:
    post(recv, [js(_msg="zero")])
    post(recv, [js(_msg="one"), js(_msg="two")], headers={"AccountID": "1", "ProjectID": "2"})
    status, text = request(recv, "GET", "/vlhook/entries?account=1&project=2")
    assert status == 200
    assert [json.loads(x)["_msg"] for x in text.splitlines()] == ["one", "two"]
    text = request(recv, "GET", "/vlhook/entries")[1]
    assert [json.loads(x)["_msg"] for x in text.splitlines()] == ["zero"]
    stats = json.loads(request(recv, "GET", "/vlhook/stats")[1])
    assert stats == recv.stats()
    assert stats["rows_stored"] == 3
    assert request(recv, "POST", "/vlhook/clear")[0] == 200
    assert recv.entries(1, 2) == []
    assert recv.stats()["rows_stored"] == 0
    assert request(recv, "GET", "/vlhook/entries?account=x")[0] == 400
    assert request(recv, "GET", "/vlhook/clear")[0] == 400


def test_clear_resets_everything(recv: Receiver) -> None:
    post(recv, [js(_msg="m"), "bad"])
    recv.clear()
    assert recv.entries() == []
    assert recv.requests == []
    assert set(recv.stats().values()) == {0}


def test_wait_for_returns_when_rows_arrive(recv: Receiver) -> None:
    sender = threading.Timer(0.2, post, (recv, [js(_msg="late"), js(_msg="later")]))
    sender.start()
    try:
        rows = recv.wait_for(2, timeout=5)
    finally:
        sender.join(5)
    assert [r["_msg"] for r in rows] == ["late", "later"]


def test_wait_for_is_bounded(recv: Receiver) -> None:
    start = time.monotonic()
    assert recv.wait_for(1, timeout=0.2) == []
    assert 0.15 <= time.monotonic() - start < 2


def test_max_stored_evicts_oldest() -> None:
    with Receiver(max_stored=3) as receiver:
        post(receiver, [js(_msg=str(i)) for i in range(5)])
        assert [r["_msg"] for r in receiver.entries()] == ["2", "3", "4"]
        stats = receiver.stats()
        assert (stats["rows_stored"], stats["evicted"]) == (5, 2)


def test_chunked_body(recv: Receiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(recv), timeout=5)
    chunks = iter([b'{"_msg":"a"}\n{"_ms', b'g":"b"}\n'])
    headers = {"Content-Type": "application/stream+json", "Transfer-Encoding": "chunked"}
    conn.request("POST", JSONLINE, chunks, headers, encode_chunked=True)
    assert conn.getresponse().status == 200
    conn.close()
    assert [r["_msg"] for r in recv.entries()] == ["a", "b"]


def test_keep_alive_and_stop_breaks_connections() -> None:
    receiver = Receiver().start()
    port = port_of(receiver)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Content-Type": "application/stream+json"}
    for i in range(3):
        conn.request("POST", JSONLINE, js(_msg=str(i)).encode(), headers)
        resp = conn.getresponse()
        assert resp.status == 200
        resp.read()
    assert len(receiver.entries()) == 3
    receiver.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("POST", JSONLINE, js(_msg="after").encode(), headers)
        conn.getresponse()
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert len(receiver.entries()) == 3


def raw_exchange(receiver: Receiver, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port_of(receiver)), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        for _ in range(100):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /insert/jsonline HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /insert/jsonline HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /insert/jsonline HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_bad_http_never_kills_the_receiver(recv: Receiver, data: bytes) -> None:
    answer = raw_exchange(recv, data)  # the answer, if any, is a client error
    assert answer == b"" or b"400" in answer.split(b"\n", 1)[0] or b"400" in answer
    assert request(recv, "GET", "/health") == (200, "OK")
    assert post(recv, [js(_msg="still alive")])[0] == 200


def test_client_gone_mid_body_keeps_the_complete_lines(recv: Receiver) -> None:
    head = b"POST /insert/jsonline HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"
    raw_exchange(recv, head + b'{"_msg":"kept"}\n{"_msg":"cu')
    assert [r["_msg"] for r in recv.wait_for(1, timeout=5)] == ["kept"]


def test_pathological_json_is_a_bad_line(recv: Receiver) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = ('{"a":' * 5000 + "1" + "}" * 5000).encode()
    assert post(recv, deep + b"\n" + nested + b'\n{"_msg":"ok"}\n')[0] == 200
    assert [r["_msg"] for r in recv.entries()] == ["ok"]


# --- echo ----------------------------------------------------------------------------------


def test_echo_prints_one_readable_line_per_row() -> None:
    out = io.StringIO()
    with Receiver(echo=out) as receiver:
        request(receiver, "GET", "/health")
        lines = [js(_msg="first\nsecond\r\nthird", level="ERROR", app="web", extra="hidden"),
                 js(_msg="plain")]  # fmt: skip
        post(receiver, lines, "?_stream_fields=app")
        post(receiver, [js(_msg="debug only")], "?debug=1")
    printed = out.getvalue().splitlines()
    assert len(printed) == 2
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} ERROR \[web\] first⏎second⏎third  extra=hidden", printed[0]
    )
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} -     plain", printed[1])
    assert "\x1b[" not in out.getvalue()  # not a terminal: no colour


def test_echo_survives_narrow_and_closed_streams() -> None:
    raw = io.BytesIO()
    narrow = io.TextIOWrapper(raw, encoding="ascii")
    with Receiver(echo=narrow) as receiver:
        assert post(receiver, [js(_msg="caf\u00e9\nnext")])[0] == 200
        assert raw.getvalue().decode("ascii").endswith("caf\\xe9\\u23cenext\n")
    closed = io.StringIO()
    closed.close()
    with Receiver(echo=closed) as receiver:
        assert post(receiver, [js(_msg="m")])[0] == 200
        assert len(receiver.entries()) == 1


# --- CLI glue ------------------------------------------------------------------------------


def test_listen_arguments_defaults() -> None:
    from vlhook.cli import build_parser

    args = build_parser().parse_args(["listen"])
    assert (args.host, args.port, args.quiet, args.max_stored) == (
        "127.0.0.1", 9428, False, 2_000_000,
    )  # fmt: skip
    assert build_parser().parse_args(["listen", "--quiet", "--max-stored", "5"]).max_stored == 5


def test_run_reports_a_busy_port(recv: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(host="127.0.0.1", port=port_of(recv), quiet=True, max_stored=10)
    assert _listen.run(args) == 1
    assert "cannot listen" in capsys.readouterr().err


def read_line(stream: Any, timeout: float = 10) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no output in time"
    return str(stream.readline().decode())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_signal(sig: signal.Signals) -> None:
    code = "import sys; from vlhook.cli import main; sys.exit(main(['listen', *sys.argv[1:]]))"
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        banner = read_line(proc.stderr)
        match = re.fullmatch(
            r"vlhook listen: receiving on (http://127\.0\.0\.1:\d+)/insert/jsonline\n", banner
        )
        assert match, banner
        req = urllib.request.Request(
            match.group(1) + JSONLINE,
            data=js(_msg="via cli", level="INFO").encode(),
            headers={"Content-Type": "application/stream+json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        assert read_line(proc.stdout).endswith(" INFO  via cli\n")
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()
