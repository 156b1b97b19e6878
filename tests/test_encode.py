"""Tests of `vlhook._delivery.encode`: entries become JSON lines, below the line limit, with
the constant fields once and the program's own value winning."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vlhook._codec as codec
from vlhook._captures import line as make_line
from vlhook._config import SERVER_LINE_LIMIT, Config, load
from vlhook._delivery.encode import Encoder, constant_fields
from vlhook._entry import Entry, EntryBuilder, rfc3339
from vlhook._stats import Stats

NOW_NS = time.time_ns()


def config(**env: str) -> Config:
    return load({"VICTORIALOGS_URL": "http://127.0.0.1:9", "VICTORIALOGS_SPOOL_DIR": "off", **env})


def encoder(stats: Stats | None = None, **env: str) -> Encoder:
    return Encoder(constant_fields(config(**env)), stats or Stats())


def entry(msg: str = "hello", **fields: Any) -> Entry:
    return {"_time": rfc3339(NOW_NS), "_msg": msg, "level": "INFO", "stream": "stdout", **fields}


def test_constant_fields_then_entry_fields() -> None:
    enc = encoder(VICTORIALOGS_FIELDS="env=prod,team=core", VICTORIALOGS_CONTAINER_NAME="box",
                  VICTORIALOGS_JOB="jobname")  # fmt: skip
    line = enc.encode(entry("m"))
    assert line.startswith(enc.prefix)
    obj = json.loads(line)
    assert obj["container_name"] == "box" and obj["job"] == "jobname"
    assert obj["env"] == "prod" and obj["team"] == "core"
    assert obj["pid"] == os.getpid() and obj["_msg"] == "m"


@pytest.mark.parametrize("key", ["container_name", "job", "env", "host", "pid"])
def test_the_programs_own_field_wins_and_no_key_is_sent_twice(key: str) -> None:
    enc = encoder(VICTORIALOGS_FIELDS="env=prod")
    line = enc.encode(entry("m", **{key: "the program's"}))
    pairs = json.loads(line, object_pairs_hook=lambda items: items)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    assert dict(pairs)[key] == "the program's"


def _big_entries(builder: EntryBuilder) -> list[Entry]:
    bound = {
        "huge": "h" * 2_000_000,
        "list": ["x" * 100_000] * 5,
        "nested": {"deep": {"text": "n" * 500_000}},
        **{f"f{i:03d}": "v" * 16_000 for i in range(40)},
    }
    line = make_line(0, "the message " + "m" * 50_000, NOW_NS, ({"inv": 1}, bound))
    return builder.from_line(line)


def test_lines_never_reach_the_server_limit_even_with_enormous_fields() -> None:
    stats = Stats()
    enc = encoder(stats)
    entries = _big_entries(EntryBuilder(config(), stats))
    lines = [enc.encode(e) for e in [*entries, entry("after")]]
    assert len(lines) == 2
    assert all(len(x) < SERVER_LINE_LIMIT for x in lines)
    first = json.loads(lines[0])
    assert first["_msg"] == "the message " + "m" * 50_000 and first["level"] == "INFO"
    truncated = first["vlhook.truncated"].split(",")
    assert {"huge", "list", "nested", "f000", "f039", "inv"} <= set(truncated)
    assert json.loads(lines[1])["_msg"] == "after"
    assert stats.truncated == 1 and stats.dropped == {}  # shipped, shortened: not a loss


@pytest.mark.parametrize("char", ["x", "é", "😀", '"'])
def test_long_messages_are_split_and_every_line_fits(char: str) -> None:
    stats = Stats()
    enc = encoder(stats, VICTORIALOGS_MAX_LINE_BYTES="65536")
    message = char * 400_000
    builder = EntryBuilder(config(VICTORIALOGS_MAX_LINE_BYTES="65536"), stats)
    lines = [enc.encode(e) for e in builder.from_line(make_line(0, message, NOW_NS, None))]
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
def test_unencodable_values_are_stringified(name: str) -> None:
    line = encoder().encode(entry("m", value=_values()[name], plain=5))
    assert len(line) < SERVER_LINE_LIMIT
    obj = json.loads(line)
    assert obj["_msg"] == "m" and obj["plain"] == 5
    assert isinstance(obj["value"], str) and obj["value"]


def test_unprintable_value_gets_a_placeholder() -> None:
    obj = json.loads(encoder().encode(entry("m", value=_Unprintable())))
    assert obj["value"] == "<unprintable _Unprintable>"


def test_cyclic_value_is_shown_as_python_shows_it() -> None:
    cyclic: dict[str, Any] = {"a": 1}
    cyclic["me"] = cyclic
    obj = json.loads(encoder().encode(entry("m", value=cyclic)))
    assert obj["value"] == "{'a': 1, 'me': {...}}"


def test_lone_surrogates_at_any_depth_are_replaced_and_the_values_keep_their_shape() -> None:
    """Bytes a surrogateescape stream let through (a line, a file name) are lone surrogates,
    which orjson refuses: they become U+FFFD wherever they are, and the entry's objects and
    arrays stay objects and arrays (they were all written as Python's text of them)."""
    nested = {"id": 1, "n\udcff": ["a\ud800", {"x": 2.5, "ok": None}], "big": 2**70}
    obj = json.loads(encoder().encode(entry("caf\udce9", user=nested, tags=("t\udcff", 3))))
    assert obj["_msg"] == "caf\ufffd" and obj["tags"] == ["t\ufffd", 3]
    # A surrogate out of surrogateescape's range is its three bytes (UTF-8's form), each replaced.
    assert obj["user"] == {"id": 1, "n\ufffd": ["a" + "\ufffd" * 3, {"x": 2.5, "ok": None}],
                           "big": str(2**70)}  # fmt: skip


def test_names_that_become_one_once_their_surrogates_are_replaced_lose_no_value() -> None:
    """Two names that differ only in bytes no stream could decode are the same name once
    replaced: the object is written as text instead, both values in it."""
    files = dict(zip(["a\udcfe", "a\udcff"], [1, 2]))
    assert len(files) == 2
    obj = json.loads(encoder().encode(entry("m", files=files)))
    assert isinstance(obj["files"], str) and "1" in obj["files"] and "2" in obj["files"]
    # Two of the entry's own fields: the second keeps its escapes as its name.
    obj = json.loads(encoder().encode(entry("m", **files)))
    assert (obj["a\ufffd"], obj["a\\udcff"]) == (1, 2)


def test_append_writes_one_line_per_entry() -> None:
    body = bytearray()
    encoder().append([entry("a"), entry("b")], body)
    assert [json.loads(x)["_msg"] for x in body.splitlines()] == ["a", "b"]
    assert body.endswith(b"\n")


# -- the same bytes whichever encoder writes them ---------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.text(), st.sampled_from(["INFO", "ERROR", "DEBUG"]), st.sampled_from(["stdout", "stderr"])
)
def test_a_plain_entry_is_written_as_orjson_writes_it(
    message: str, level: str, stream: str
) -> None:
    """Plain lines are written without loading orjson in a short process, and with it in a long
    one: the server must get the same bytes either way."""
    enc = encoder(VICTORIALOGS_FIELDS="env=prod,é=ü")
    builder = EntryBuilder(config(), Stats())
    line = make_line(0 if stream == "stdout" else 1, f"{level} {message}", NOW_NS, None)
    as_dicts, as_written = bytearray(), bytearray()
    enc.append(builder.from_lines([line]), as_dicts)
    enc.append(builder.written_lines([line]), as_written)
    assert as_written == as_dicts


@pytest.mark.parametrize("fields", ["stream=app", "level=high,team=a", "_msg=x", "_time=t"])
def test_a_constant_field_named_as_a_line_key_is_replaced_once_whichever_path(
    fields: str,
) -> None:
    """VICTORIALOGS_FIELDS may name a key every line has: the line's own value replaces the
    constant one, and no line carries the key twice."""
    enc = encoder(VICTORIALOGS_FIELDS=fields)
    builder = EntryBuilder(config(VICTORIALOGS_FIELDS=fields), Stats())
    lines = [make_line(0, f"line {n}", NOW_NS + n, None) for n in range(20)]
    as_dicts, as_written = bytearray(), bytearray()
    enc.append(builder.from_lines(lines), as_dicts)
    enc.append(builder.written_lines(lines), as_written)
    assert as_written == as_dicts
    for row in as_written.splitlines():
        pairs = json.loads(row, object_pairs_hook=list)
        assert len(pairs) == len({key for key, _ in pairs}), row
        assert dict(pairs)["_msg"].startswith("line ")


def test_constant_fields_are_written_as_orjson_writes_them() -> None:
    fields = constant_fields(config(VICTORIALOGS_FIELDS='env=prod,quote="x",tab=a\tb,ü=ß'))
    assert codec.simple(fields) == orjson.dumps(fields)


def test_a_short_process_loads_neither_orjson_nor_json_nor_re(script: Any, sink: Any) -> None:
    """A process that prints a plain line needs none of them (re: ~8 ms with enum and
    functools; the redaction patterns compile only when a line may hold a secret)."""
    from conftest import run_python

    code = (
        "import sys, vlhook\n"
        "print('one line')\n"
        "vlhook.flush(10)\n"
        "print(sorted(m for m in ('orjson', 'json', 'threading', 're', 'urllib.parse', 'random')"
        " if m in sys.modules))\n"
    )
    run = run_python(script(code), sink.env())
    loaded = run.out.splitlines()[-1]
    assert "orjson" not in loaded and "'json'" not in loaded and "urllib.parse" not in loaded
    assert "random" not in loaded and "'re'" not in loaded, loaded
    if sys.version_info >= (3, 11):  # 3.9, 3.10: threading is imported first on purpose (_sender)
        assert "threading" not in loaded, loaded


@pytest.mark.parametrize(("text", "huge"), [
    ("", False),
    ('{"n": 9223372036854775807, "m": -9223372036854775808}', False),  # 64 bits, signed
    ('{"n": 18446744073709551615}', False),  # 64 bits, unsigned: orjson keeps it
    ('{"ns": 1780000000123456789, "id": "4e1f9c2a7b"}', False),  # a time in nanoseconds
    ('{"n": -9223372036854775809}', True),
    ('{"n": 18446744073709551616}', True),
    ("-9223372036854775809", True),  # a run at the very start and end of the text
    ('{"n": 100000000000000000000}', True),  # 21 digits: always past
    ('{"a": 1234567890123456789, "é\udcff": [0, 99999999999999999999]}', True),  # the second
    ('{"s": "12345678901234567890123"}', True),  # a string's digits: read again, to no change
    ("1" * 18, False),
])  # fmt: skip
def test_integers_orjson_reads_as_floats_are_told_by_their_digits(text: str, huge: bool) -> None:
    assert codec.huge_integer_in(text) is huge
    if huge and text.startswith("{") and "\udcff" not in text:
        # Every one of them read by orjson is a float, or a string: told rightly.
        assert codec.loads_exact(text) == json.loads(text)


def test_a_text_too_deep_for_the_scanner_keeps_what_orjson_read() -> None:
    """The standard library's scanner meets the recursion limit before orjson's own depth
    limit: what orjson read is kept (the integer as a float) rather than nothing."""
    depth = sys.getrecursionlimit()
    text = '{"a":' * depth + str(2**64) + "}" * depth
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        pytest.skip("orjson refuses this depth too")
    obj = codec.loads_exact(text)
    for _ in range(depth):  # walked: comparing such objects meets the limit too
        obj = obj["a"]
    assert obj == float(2**64)
