"""A run of whole plain lines is made into entries with a few calls for the whole run
(LineAssembler.whole_lines, EntryBuilder.written_run): it must write exactly what the write-by-
write path writes (feed_many, written_lines), and step aside wherever that path does more."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections import OrderedDict
from contextvars import Context, ContextVar, copy_context
from datetime import date
from typing import Any, Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import as_without_vlhook, run_python
from vlhook._capture_logging import message_of
from vlhook._captures import Line, event, record, text
from vlhook._captures import line as make_line
from vlhook._config import SERVER_LINE_LIMIT, load
from vlhook._context import source_keys
from vlhook._delivery.encode import Encoder, constant_fields
from vlhook._entry import EntryBuilder
from vlhook._integrations.structlog_context import fields_of, snapshot_key
from vlhook._levels import Hay, detect_level
from vlhook._lines import MIN_RUN, LineAssembler
from vlhook._objects import object_fields, record_object, record_taken, taken
from vlhook._redact import MASK
from vlhook._stats import Stats

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECOND = 1_000_000_000
T0 = 1_780_000_000 * SECOND + 999_000_000  # close to a second's end: runs cross it


def span_ids(span: str) -> dict[str, str]:
    return {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": span, "trace_flags": "01"}


CONTEXTS = [
    None,
    ({"aws_request_id": "c6af9ac6-7b61-11e6-9a41-93e812345678", "cold_start": True},),
    ((span_ids, "b7ad6b7169203331"),),
    ({"trace_id": "1" * 32, "span_id": "2" * 16}, (span_ids, "00f067aa0ba902b7")),
    ({"user": "bob"},),  # bound by the program: made whole
    ({"trace_id": "1" * 32, "trace_state": "k=AKIA0123456789ABCDEF"},),  # not vlhook's own
    ({"aws_request_id": "AKIA0123456789ABCDEF"},),  # vlhook's own field, yet a secret's form
]
# Fields of the program's own, as vlhook.bind(), structlog and loguru give them: examined once
# for the lines that share them, or (a secret, a fold, a constant's name) made whole per line.
BOUND = {"user": "bob", "request_id": "r-1", "n": 1.5, "ok": True, "none": None}
PROGRAM_CONTEXTS = [
    (BOUND,),
    ({"trace_id": "1" * 32, "span_id": "2" * 16}, BOUND),
    ((span_ids, "b7ad6b7169203331"), {"user": "ann"}),
    ({"user": {"id": 1, "roles": ["admin", "dev"], "deep": [[[[{"x": 1}]]]]}},),
    ({"password": "hunter2", "user": "bob"},),  # a secret's name
    ({"note": "token AKIA0123456789ABCDEF"},),  # a secret's form
    ({"level": "debug", "_msg": "bound", "": 1, "stream": "x"},),  # named as vlhook's own
    ({"k" * 200: 1, "tags": {"a", "b"}},),  # a long key, a set
    ({"big": "v" * 10_000},),
    ({"bigger": "v" * 17_000},),  # cut to 16 Ki characters: too long to be written here
    ({f"f{i}": i for i in range(60)},),  # more than 40 fields, far from a fold
    ({"many": {str(i): i for i in range(1_000)}},),  # folded
    ({"surrogate": "\ud800 lone"},),
    ({"env": "bound env", "user": "bob"},),  # a constant field's name, with VICTORIALOGS_FIELDS
    ({"host": "bound host", "pid": 1, "job": "j", "container_name": "c"},),  # vlhook's constants
]


#: Redaction settings: the built-ins (twice as often), off, and names and a pattern that meet
#: the message's own field name (`_msg`), which is never masked or renamed by them.
REDACTIONS: list[dict[str, str]] = [
    {}, {}, {"VICTORIALOGS_REDACT_KEYS": "msg"}, {"VICTORIALOGS_REDACT_KEYS": "g,user"},
    {"VICTORIALOGS_REDACT": "sg"}, {"VICTORIALOGS_REDACT": "off"},
]  # fmt: skip


def fresh(context: Any) -> Any:
    """A context tuple of its own, of the same sources, as a capture reads it."""
    return context and (*context,)


def copied(context: Any) -> Any:
    """A context of sources of its own with the same fields, as structlog's snapshots are."""
    return context and tuple(dict(s) if isinstance(s, dict) else s for s in context)


# structlog's shape: a context variable per bound key, created on its first bind, holding `...`
# once unbound; each capture a snapshot of the writer's context (see structlog_context).
STRUCTLOG_PREFIX = "structlog_"
STRUCTLOG_VARIABLES: dict[str, ContextVar[Any]] = {}
expand_structlog = fields_of(STRUCTLOG_VARIABLES, STRUCTLOG_PREFIX)
source_keys[expand_structlog] = snapshot_key(STRUCTLOG_VARIABLES)


def structlog_bind(fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        key = STRUCTLOG_PREFIX + name
        if key not in STRUCTLOG_VARIABLES:
            STRUCTLOG_VARIABLES[key] = ContextVar(key, default=...)
        STRUCTLOG_VARIABLES[key].set(value)


def structlog_snapshot(fields: dict[str, Any]) -> Context:
    """A snapshot of a context in which only `fields` were bound (the same objects)."""

    def bound() -> Context:
        structlog_bind(fields)
        return copy_context()

    return Context().run(bound)


def snapshots(context: Any) -> Any:
    """The context with its program's fields bound through structlog: a snapshot per capture,
    holding the same values."""
    return context and tuple((expand_structlog, structlog_snapshot(s)) if isinstance(s, dict)
                             else s for s in context)  # fmt: skip


def builder(**env: str) -> EntryBuilder:
    return EntryBuilder(load({"VICTORIALOGS_URL": "http://127.0.0.1:9", **env}), Stats())


def items(
    writes: list[tuple[int, str]], step_ns: int = 100_000, context: Any = None,
    contexts: Optional[list[Any]] = None,
) -> list[Any]:  # fmt: skip
    return [text(kind, data, T0 + index * step_ns, 7, contexts[index] if contexts else context)
            for index, (kind, data) in enumerate(writes)]  # fmt: skip


def by_run(captures: list[Any], b: EntryBuilder) -> Optional[list[Union[dict[str, Any], str]]]:
    run = LineAssembler().whole_lines(captures)
    return None if run is None else b.written_run(run)


def by_write(captures: list[Any], b: EntryBuilder) -> list[Union[dict[str, Any], str]]:
    lines: list[Line] = []
    LineAssembler().feed_many(captures, lines)
    return b.written_lines(lines)


def encoded(entries: list[Any], **env: str) -> bytes:
    """As the encoder writes them, with the constant fields of a process of that environment."""
    body = bytearray()
    config = load({"VICTORIALOGS_URL": "http://127.0.0.1:9", **env})
    Encoder(constant_fields(config, pid=7), Stats()).append(entries, body)
    return bytes(body)


# Lines as programs print them: words, levels, secrets, JSON, quotes, escapes, colours, any
# character at all.
LINE = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=40),
    st.sampled_from([
        "plain words", "ERROR: boom", "[warn] disk", "level=debug x", "Total: 3", "The end",
        '{"msg": "json", "level": "error"}', "{not json", "say \"hi\" \\ back\\slash\ttab",
        "token AKIA0123456789ABCDEF", "Authorization: Bearer abcdefghijk", "\x1b[31mred\x1b[0m",
        "  indented", "\tTabbed", "é ü 日本 \u2028 sep", "x" * 300, "Traceback-like: no",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "db postgres://app:hunter2@db/x",
        "SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYab", "bell\x07 nul\x00 esc\x1b",
        "user=bob Password=pw1 tokens=3", "{'api_key': 'k1'}", "Cookie: sid=1", "key: value",
        "pem=-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----",
        # A secret's literal or name found, and nothing to mask: written as any plain line.
        'HTTP Request: GET https://api.example.com/v1/x?page=2 "HTTP/1.1 200 OK"',
        "the monkey's author", "git https://ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5@github.com/o",
        "https://b.s3.amazonaws.com/k?X-Amz-Signature=0a1b&X-Amz-Expires=60",
        "caf\udce9 bytes no stream could decode",  # a lone surrogate (surrogateescape)
        # A Lambda handler's error as awslambdaric prints it: made whole, its exception read.
        "[ERROR] ValueError: bad\rTraceback (most recent call last):\r\u00a0\u00a0File \"a.py\"",
    ]),
)  # fmt: skip


@PROPS
@given(st.lists(st.tuples(st.sampled_from([0, 1]), LINE), min_size=1, max_size=60),
       st.sampled_from([1, 10_000_000, 400_000_000]),
       st.one_of(st.none(), st.lists(st.sampled_from(CONTEXTS + PROGRAM_CONTEXTS),
                                     min_size=60, max_size=60)),
       st.sampled_from(["", "span_id=x", "env=prod"]),
       st.sampled_from([fresh, copied, snapshots]),
       st.sampled_from(REDACTIONS))  # fmt: skip
def test_a_run_writes_exactly_what_the_write_by_write_path_writes(
    writes: list[tuple[int, str]],
    step_ns: int,
    contexts: Optional[list[Any]],
    fields: str,
    read: Any,
    redaction: dict[str, str],
) -> None:
    # A tuple of its own per capture, of shared sources or of copies, as captures read theirs.
    contexts = list(map(read, contexts)) if contexts else None
    captures = items([(kind, line + "\n") for kind, line in writes], step_ns, contexts=contexts)
    # The 300-char line is split at 1 KiB; a constant field may share a context field's name.
    env = {"VICTORIALOGS_MAX_LINE_BYTES": "1024", "VICTORIALOGS_FIELDS": fields, **redaction}
    b, again = builder(**env), builder(**env)
    run = by_run(captures, b)
    expected = by_write(captures, again)
    if run is None:  # stepped aside: only where whole_lines or written_run must
        return
    if not contexts:
        assert run == expected
    assert encoded(run, **env) == encoded(expected, **env)
    assert b.stats.as_dict() == again.stats.as_dict()  # redactions, folds, splits: as many


def test_lines_with_fields_of_the_programs_own_are_written_at_once() -> None:
    """Lines sharing bound fields (each capture a tuple of its own) are written in the run,
    with their fields examined once; a secret among them makes each line whole."""
    plain = [(0, f"line {i}\n") for i in range(8)]
    b = builder()
    for context, written in ((BOUND,), True), (({"password": "x"},), False):
        run = by_run(items(plain, contexts=[(*context,) for _ in plain]), b)
        assert run is not None and len(run) == 8
        assert all(isinstance(entry, str) == written for entry in run)
        if written:
            assert json.loads("{" + str(run[0]))["request_id"] == "r-1"
    assert b.stats.redacted == 8  # one per line made whole, as each line's entry counts it


@PROPS
@given(st.lists(st.tuples(st.sampled_from([0, 1]), LINE), min_size=1, max_size=60),
       st.sampled_from([1, 10_000_000, 400_000_000]))  # fmt: skip
def test_a_run_writes_each_line_as_that_line_made_by_itself_and_examined_whole(
    writes: list[tuple[int, str]], step_ns: int
) -> None:
    """Against the path that searches nothing over the group: each line redacted, its level
    read and its text escaped by itself (what the group's searches may only narrow down)."""
    captures = items([(kind, line + "\n") for kind, line in writes], step_ns)
    b = builder(VICTORIALOGS_MAX_LINE_BYTES="1024")
    run = by_run(captures, b)
    if run is None:
        return
    lines: list[Line] = []
    LineAssembler().feed_many(captures, lines)
    alone = [entry for line in lines for entry in b.from_line(line)]
    assert encoded(run) == encoded(alone)


def test_a_line_a_search_flags_that_redaction_leaves_alone_is_written_in_the_run() -> None:
    """A secret's literal or name found in a line that holds no secret (a URL: `://`; `key` in
    `monkey`) does not make the line whole: it is written with the others. One that does hold
    a secret is made whole, and counted."""
    writes = [(0, f'HTTP Request: GET https://api.example.com/v1/o/{n} "HTTP/1.1 200 OK"\n')
              for n in range(6)]  # fmt: skip
    writes += [(0, "the monkey's author\n"), (0, "git https://u:hunter2@h/r\n")]
    b = builder()
    run = by_run(items(writes), b)
    assert run is not None
    assert [isinstance(entry, str) for entry in run] == [True] * 7 + [False]
    assert json.loads("{" + str(run[0]))["_msg"] == writes[0][1].rstrip("\n")
    assert "hunter2" not in str(run[7]) and b.stats.redacted == 1
    assert run == by_write(items(writes), builder())


def test_a_run_with_lone_surrogates_is_encoded_as_its_lines_one_by_one() -> None:
    """Bytes a surrogateescape stream let through are not escaped by JSON: written as they are,
    the encoder replaces them, as it does for an entry made whole."""
    writes = [(0, f"line {n} " + ("caf\udce9" if n % 3 == 0 else "ok") + "\n") for n in range(12)]
    captures = items(writes)
    b = builder()
    run = by_run(captures, b)
    assert run is not None
    lines: list[Line] = []
    LineAssembler().feed_many(captures, lines)
    alone = [entry for line in lines for entry in b.from_line(line)]
    assert encoded(run) == encoded(alone)
    assert encoded(run).count("caf\ufffd".encode()) == 4


@pytest.mark.parametrize("redaction", [{}, {"VICTORIALOGS_REDACT": "off"}])
def test_a_line_with_a_lone_surrogate_keeps_its_nested_fields_as_objects(
    redaction: dict[str, str],
) -> None:
    """A line holding bytes no stream could decode, with nested bound fields: written in the
    run, its fields are objects; made whole, they were Python's text of them (the encoder
    refused the surrogate, and made every value text)."""
    writes = [(0, "caf\udce9\n")] + [(0, f"line {n}\n") for n in range(7)]
    context = ({"user": {"id": 1, "roles": ["admin"]}},)
    captures = items(writes, contexts=[fresh(context) for _ in writes])
    run = by_run(captures, builder(**redaction))
    assert run is not None
    written = encoded(run, **redaction)
    whole = encoded(by_write(captures, builder(**redaction)), **redaction)
    assert written == whole
    first = json.loads(whole.splitlines()[0])
    assert first["_msg"] == "caf\ufffd" and first["user"] == {"id": 1, "roles": ["admin"]}


def test_a_typical_run_takes_the_run_path_and_keeps_its_times_and_streams() -> None:
    writes = [(index % 2, f"request {index} handled in 3 ms\n") for index in range(300)]
    captures = items(writes, step_ns=7_000_000)  # crosses two second boundaries
    b = builder()
    run = by_run(captures, b)
    assert run is not None
    assert run == by_write(captures, b)
    assert run[1] == ('"_time":"2026-05-28T20:26:41.006000000Z","_msg":"request 1 handled in '
                      '3 ms","level":"INFO","stream":"stderr"}')  # fmt: skip


def test_lines_that_need_more_than_writing_are_made_in_place() -> None:
    writes = [(0, "ok 1\n"), (0, "ERROR boom\n"), (0, '{"msg": "j", "n": 1}\n'),
              (0, "pw postgres://u:hunter2@db/x\n"), (1, "ok 2\n"),
              *[(0, f"more {n}\n") for n in range(4)]]  # fmt: skip
    b = builder()
    run = by_run(items(writes), b)
    assert run is not None
    assert run == by_write(items(writes), b)
    assert '"_msg":"j","level":"INFO","stream":"stdout","n":1}' in str(run[2])
    assert "hunter2" not in str(run[3]) and '"level":"ERROR"' in str(run[1])


def test_what_only_the_write_by_write_path_handles_is_left_to_it() -> None:
    assembler = LineAssembler()
    cases: list[list[Union[str, bytes]]] = [
        ["a\n", "b"],  # a write without its newline
        ["a\nb\n"],  # two lines in one write
        ["a\n", "\n"],  # an empty line (dropped)
        ["a\n", "   \n"],  # a blank line (dropped)
        ["a\r\n"],  # a carriage return
        ["Traceback (most recent call last):\n", '  File "x", line 1\n'],
        ["  + Exception Group Traceback (most recent call last):\n"],
        ["a\n", b"bytes\n"],  # through .buffer
    ]
    plain: list[Union[str, bytes]] = [f"line {n}\n" for n in range(MIN_RUN)]
    assert assembler.whole_lines([text(0, data, T0, 7, None) for data in plain]) is not None
    for writes in cases:
        captures = [text(0, data, T0, 7, None) for data in [*plain, *writes]]
        assert assembler.whole_lines(captures) is None, writes
    assert assembler.whole_lines([text(0, data, T0, 7, None) for data in plain[1:]]) is None
    half: list[Line] = []
    assembler.feed_many([text(0, "unfinished", T0, 7, None)], half)
    captures = [text(0, data, T0, 8, None) for data in plain]
    assert assembler.whole_lines(captures) is None  # one is pending


CHUNK_LINE = st.one_of(
    st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1, max_size=20).map(
        lambda t: t.encode("utf-8")),
    st.sampled_from([b"ERROR x", b"caf\xc3\xa9", b"cut \xe2\x82", b'{"k": 1}', b"\xff\xfe"]),
)  # fmt: skip


@PROPS
@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.lists(CHUNK_LINE, min_size=2, max_size=12)),
                min_size=2, max_size=6))  # fmt: skip
def test_chunks_of_whole_lines_make_what_they_make_one_by_one(
    chunks: list[tuple[int, list[bytes]]],
) -> None:
    """The fd helper's chunks (bytes, many whole lines each, any bytes at all)."""
    captures = [text(kind, b"\n".join(lines) + b"\n", T0 + n, 0, None)
                for n, (kind, lines) in enumerate(chunks)]  # fmt: skip
    b = builder()
    run = by_run(captures, b)
    if run is not None:
        assert encoded(run) == encoded(by_write(captures, b))


def test_a_chunk_after_a_character_cut_in_two_is_left_to_the_write_by_write_path() -> None:
    assembler = LineAssembler()
    lines: list[Line] = []
    assembler.feed(text(0, b"ends with \xe2\x82", T0, 0, None), lines)  # "€" cut in two
    chunk = b"\xac and goes on\n" + b"".join(b"line %d\n" % n for n in range(MIN_RUN))
    assert assembler.whole_lines([text(0, chunk, T0, 0, None)]) is None
    assembler.feed(text(0, chunk, T0, 0, None), lines)
    assert lines[0].text == "ends with \u20ac and goes on"
    whole = b"".join(b"line %d\n" % n for n in range(MIN_RUN))
    run = LineAssembler().whole_lines([text(0, whole, T0, 0, None)])
    assert run is not None and run.texts[-1] == f"line {MIN_RUN - 1}"


def test_lines_in_a_span_or_an_invocation_are_written_with_its_ids() -> None:
    b = builder()
    for context in CONTEXTS[1:4]:
        captures = items([(0, f"line {n}\n") for n in range(10)], context=context)
        out = by_run(captures, b)
        assert out is not None and all(isinstance(entry, str) for entry in out), context
        assert encoded(out) == encoded(by_write(captures, b))
        fields = json.loads("{" + str(out[3]))
        assert fields["_msg"] == "line 3" and ("span_id" in fields or "aws_request_id" in fields)
    bound = items([(0, f"line {n}\n") for n in range(10)], context=CONTEXTS[4])
    made = by_run(bound, b)  # the program's own fields: examined once, written with each line
    assert made is not None and all(json.loads("{" + str(entry))["user"] == "bob" for entry in made)
    assert encoded(made) == encoded(by_write(bound, b))


# -- logging records written as JSON --------------------------------------------------------

LOGGER = logging.getLogger("runs")
TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
ASCII_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


def capture_of(
    msg: Any, args: Any, name: str, func: str, extra: Optional[dict[str, Any]], failing: bool,
    printed: list[str], context: Any = None, level: int = logging.INFO, t_ns: int = T0,
) -> Any:  # fmt: skip
    exc_info = None
    if failing:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = LOGGER.makeRecord(name, level, "/app/x.py", 12, msg, args, exc_info, func, extra)
    return record(rec, t_ns, 7, context, level, message_of(rec), printed)


def encoded_records(items: list[Any], b: EntryBuilder) -> tuple[bytes, bytes]:
    whole = [entry for item in items for entry in b.from_item(item)]
    return encoded(b.written_records(items)), encoded(whole)


def assert_written_as_made_whole(items: list[Any], env: dict[str, str]) -> None:
    """The records written by the run or record paths are the bytes the general path makes,
    and leave the same counts (redactions, folds) in a builder of their own."""
    b, again = builder(**env), builder(**env)
    written = encoded(b.written_records(items), **env)
    whole = encoded([entry for item in items for entry in again.from_item(item)], **env)
    assert written == whole
    assert b.stats.as_dict() == again.stats.as_dict()


@PROPS
@given(st.lists(st.tuples(
    st.one_of(TEXT, st.sampled_from(["order %s", "token AKIA0123456789ABCDEF", '{"a": 1}',
                                     "pw postgres://u:hunter2@db/x", "é\x00\x1f\"\\"]),
              st.fixed_dictionaries({"k": TEXT})),
    st.sampled_from([(), (1,), ("x",)]),
    st.sampled_from(["app", "app.db", "é", "token", "a\"b"]),
    st.sampled_from(["handler", "<module>", "f\\g"]),
    st.one_of(st.none(), st.fixed_dictionaries({"user": TEXT})),
    st.booleans(),
    st.sampled_from([[], ["plain\n"], ['{"k": 1}\n']]),
    st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, 50]),
), min_size=1, max_size=12))  # fmt: skip
def test_records_are_written_exactly_as_the_general_path_writes_them(cases: list[Any]) -> None:
    items = []
    for msg, args, name, func, extra, failing, printed, level in cases:
        if isinstance(msg, dict) or msg.count("%") != len(args):
            args = ()
        items.append(capture_of(msg, args, name, func, extra, failing, printed, level=level))
    written, whole = encoded_records(items, builder())
    assert written == whole


@PROPS
@given(st.lists(st.tuples(
    st.one_of(TEXT.filter(lambda t: t[:1] != "{"),
              st.sampled_from(["order 7", "token AKIA0123456789ABCDEF", "é\x00\x1f\"\\",
                               "two\nlines",
                               "pw postgres://u:hunter2@db/x", "",
                               "GET https://api.example.com/v1/x?page=2", "the author",
                               "https://h/k?X-Amz-Signature=0a1b&X-Amz-Expires=60",
                               "key -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA\n"
                               "-----END EC PRIVATE KEY-----"])),
    st.sampled_from(["app", "app.db", "é", "a\"b"]),
    st.sampled_from(["handler", "<module>", "f\\g"]),
    st.sampled_from([[], ["plain\n"]]),
    st.sampled_from([logging.DEBUG, logging.INFO, 25, logging.WARNING, logging.ERROR, 50]),
    st.integers(0, 3_000_000_000),
), min_size=1, max_size=12), st.sampled_from(range(4)))  # fmt: skip
def test_a_run_of_plain_records_is_written_at_once_as_one_by_one(
    cases: list[Any], context: int
) -> None:
    """Records with nothing to examine but their message (a secret in it is found and the
    record made whole in its place), sharing a context: written at once, and exactly as one by
    one."""
    items = [capture_of(msg.replace("%", ""), (), name, func, None, False, printed,
                        context=CONTEXTS[context], level=level, t_ns=T0 + offset)
             for msg, name, func, printed, level, offset in cases]  # fmt: skip
    b = builder()
    # A message holding escape sequences is read without them, record by record.
    escapes = any("\x1b" in item.message for item in items)
    assert (b._written_record_run(items) is None) == escapes
    written, whole = encoded_records(items, b)
    assert written == whole


@pytest.mark.parametrize("odd", [
    {"extra": {"user": {"password": "x"}}}, {"extra": {"password": "x"}}, {"failing": True},
    {"printed": ['{"k": 1}\n']}, {"msg": '{"a": 1}'}, {"msg": {"k": "v"}},
    {"context": CONTEXTS[1]}, {"msg": "x" * 100_000},
    {"name": "AKIA0123456789ABCDEF"},  # a location to examine
    {"msg": "\x1b[35mGET /\x1b[0m 200"},  # colours, read without
])  # fmt: skip
def test_a_run_with_one_record_not_plain_is_written_one_by_one(odd: dict[str, Any]) -> None:
    plain: dict[str, Any] = {"msg": "order 1", "args": (), "name": "app", "func": "f",
                             "extra": None, "failing": False, "printed": []}  # fmt: skip
    items = [capture_of(**plain), capture_of(**{**plain, **odd}), capture_of(**plain)]
    b = builder()
    assert b._written_record_run(items) is None
    written, whole = encoded_records(items, b)
    assert written == whole


class Unequal:
    """A value a program may bind (an array, say) that cannot be compared."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value is ambiguous")

    __hash__ = object.__hash__


def test_records_whose_bound_values_cannot_be_compared_are_written_one_by_one() -> None:
    items = [capture_of("order 1", (), "app", "f", None, False, [], context=({"v": Unequal()},))
             for _ in range(3)]  # fmt: skip
    b = builder()
    assert b._written_record_run(items) is None
    out = b.written_records(items)  # record by record, each with its fields examined once
    assert [json.loads("{" + str(entry))["_msg"] for entry in out] == ["order 1"] * 3
    assert encoded(out) == encoded([entry for item in items for entry in b.from_item(item)])


def test_a_plain_record_is_written_and_the_others_are_made_whole() -> None:
    b = builder()
    items = [
        capture_of("order %s", (1,), "app", "f", None, False, ["order 1\n"]),
        capture_of("with extra", (), "app", "f", {"user": "bob"}, False, []),
        capture_of("failed", (), "app", "f", None, True, []),
        capture_of("bound", (), "app", "f", None, False, [], context=({"user": "amy"},)),
        capture_of("token AKIA0123456789ABCDEF", (), "app", "f", None, False, []),
        capture_of("GET https://h/v1/o", (), "httpx", "f", None, False, []),  # nothing to mask
    ]
    out = b.written_records(items)
    # The plain ones, the one with a plain `extra=` field and the one with bound fields.
    assert [isinstance(entry, str) for entry in out] == [True, True, False, True, False, True]
    assert json.loads("{" + str(out[0]))["code.line"] == 12
    assert json.loads("{" + str(out[3]))["user"] == "amy"
    written, whole = encoded_records(items, b)
    assert written == whole


@PROPS
@given(st.lists(st.tuples(st.sampled_from(range(len(CONTEXTS))), TEXT), min_size=1, max_size=8),
       st.sampled_from([{}, {"VICTORIALOGS_REDACT_KEYS": "span"},
                        {"VICTORIALOGS_FIELDS": "cold_start=x"}]))  # fmt: skip
def test_records_with_context_are_written_as_the_general_path_writes_them(
    cases: list[tuple[int, str]], env: dict[str, str]
) -> None:
    items = [capture_of(message.replace("%", ""), (), "app", "f", None, False, [],
                        context=CONTEXTS[index]) for index, message in cases]  # fmt: skip
    written, whole = encoded_records(items, builder(**env))
    assert written == whole


RECORD_CONTEXTS = [
    *CONTEXTS, *PROGRAM_CONTEXTS,
    ({"logger": "bound", "thread": "t", "user": "bob"},),  # a record's own keys win
    ({"n": 1},), ({"n": True},), ({"n": 1.0},), ({"n": -0.0},), ({"n": 0.0},),  # equal
    ({"n": [1]},), ({"n": [True]},),
]  # fmt: skip


@PROPS
@given(st.lists(st.tuples(st.sampled_from(range(len(RECORD_CONTEXTS))), TEXT), min_size=1,
                max_size=12),
       st.booleans(),
       st.sampled_from([{}, {"VICTORIALOGS_REDACT_KEYS": "user"},
                        {"VICTORIALOGS_FIELDS": "env=x"}]),
       st.sampled_from([fresh, copied, snapshots]))  # fmt: skip
def test_records_with_bound_fields_are_written_as_the_general_path_writes_them(
    cases: list[tuple[int, str]], shared: bool, env: dict[str, str], read: Any
) -> None:
    """Each record a context tuple of its own, of shared sources or of copies, as captures
    read them; or (`shared`) every record the first one's context, as one request's are."""
    first = cases[0][0]
    items = [capture_of(message.replace("%", ""), (), "app", "f", None, False, [],
                        context=read(RECORD_CONTEXTS[first if shared else index]))
             for index, message in cases]  # fmt: skip
    assert_written_as_made_whole(items, env)


# `extra=` fields as programs pass them: plain values written as they are, and each kind of
# field that finish() changes, keeps apart or drops (the record is then made whole).
# ("_private" is not shipped: a record may have no field of its `extra=` left.)
EXTRA_NAMES = ["user", "request_id", "n", "password", "level", "logger", "code.line",
               "trace_id", "trace_flags", "env", "cold_start", "k" * 200, "é ü",
               "_private", "host", "pid", "job", "container_name"]  # fmt: skip
EXTRA_SCALAR = st.one_of(
    TEXT, st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["token AKIA0123456789ABCDEF", "v" * 17_000, "\ud800", -0.0, "X-Api-Key"]),
)  # fmt: skip
# What a program passes in `extra=`: its objects, nested, with what the redactor changes or
# makes text at any depth (a secret's name, a (name, value) pair, a set, a date, a key that
# is no text, a subclass of dict) and what the walk stops at (too deep, too many values).
EXTRA_VALUES = st.one_of(
    EXTRA_SCALAR,
    st.recursive(
        EXTRA_SCALAR,
        lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.sampled_from(["id", "user", "password", "X-Api-Key", "é", "n",
                                           "api", "key"]),  # `api.key`: a secret's name
                          inner, max_size=3),
        max_leaves=8,
    ),
    st.sampled_from([{1: "key of no text"}, {"s": {1, 2}}, {"d": date(2026, 12, 5)},
                     OrderedDict(a=1), json.loads("[" * 40 + "]" * 40), {"many": [0] * 2_500},
                     [("X-Api-Key", "k1")], {"api": {"key": "k1", "n": 1}}]),
)  # fmt: skip


@PROPS
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(EXTRA_NAMES), EXTRA_VALUES, max_size=4),
                          st.sampled_from(range(len(RECORD_CONTEXTS)))), min_size=1, max_size=8),
       st.sampled_from([{}, {"VICTORIALOGS_REDACT_KEYS": "user"},
                        {"VICTORIALOGS_FIELDS": "env=x"}]))  # fmt: skip
def test_records_with_extra_fields_are_written_as_the_general_path_writes_them(
    cases: list[tuple[dict[str, Any], int]], env: dict[str, str]
) -> None:
    items = [capture_of("order", (), "app", "f", extra or None, False, [],
                        context=fresh(RECORD_CONTEXTS[index]))
             for extra, index in cases]  # fmt: skip
    assert_written_as_made_whole(items, env)


@PROPS
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(["user", "order", "n", "tags"]),
                                          EXTRA_VALUES, min_size=1, max_size=3),
                          st.sampled_from(range(len(RECORD_CONTEXTS)))),
                min_size=1, max_size=6),
       st.sampled_from([{}, {"VICTORIALOGS_REDACT_KEYS": "id"},
                        {"VICTORIALOGS_REDACT": "off"}]))  # fmt: skip
def test_records_with_nested_extra_fields_are_written_as_the_general_path_writes_them(
    cases: list[tuple[dict[str, Any], int]], env: dict[str, str]
) -> None:
    items = [capture_of("order", (), "app", "f", extra, False, [],
                        context=fresh(RECORD_CONTEXTS[index]))
             for extra, index in cases]  # fmt: skip
    assert_written_as_made_whole(items, env)


@pytest.mark.parametrize("extra", [
    {"order": {"id": "o-1", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}},
    {"user": {"id": 7, "roles": ("admin", "dev")}, "n": 1},
    {"tags": ["a", "b"], "deep": json.loads('{"a":' * 32 + "1" + "}" * 32)},  # MAX_DEPTH
])  # fmt: skip
def test_records_with_nested_extra_fields_are_written_at_once(extra: dict[str, Any]) -> None:
    items = [capture_of(f"order {n}", (), "app", "f", extra, False, []) for n in range(3)]
    out = builder().written_records(items)
    assert all(isinstance(entry, str) for entry in out)
    assert_written_as_made_whole(items, {})


@pytest.mark.parametrize("extra", [
    {"user": {"id": 7, "password": "p"}},  # a secret's name, nested
    {"headers": [("X-Api-Key", "k1")]},  # a (name, value) pair
    {"user": {"note": "token AKIA0123456789ABCDEF"}},  # a secret's literal, nested
    {"deep": json.loads('{"a":' * 33 + "1" + "}" * 33)},  # past MAX_DEPTH
    {"many": [0] * 2_500},  # more values than are walked
    {"when": {"d": date(2026, 12, 5)}},  # written the encoder's way
    {"keys": {1: "one"}},  # a name that is no text
    {"ordered": OrderedDict(a=1)},  # no dict of its own class
])  # fmt: skip
def test_records_with_nested_extra_fields_that_need_more_are_made_whole(
    extra: dict[str, Any],
) -> None:
    items = [capture_of("order", (), "app", "f", extra, False, [])]
    assert not any(isinstance(entry, str) for entry in builder().written_records(items))
    assert_written_as_made_whole(items, {})


@pytest.mark.parametrize("count", [888, 889, 890, 891, 892])
def test_records_with_many_nested_extra_fields_are_folded_as_made_whole(count: int) -> None:
    """Fields the server makes of nested `extra=` values count (a list is one): around the
    limit, the entry is folded just as when it is made whole."""
    extra = {"big": {f"k{n}": n for n in range(count)}, "tags": [1, 2, 3]}
    items = [capture_of("order", (), "app", "f", extra, False, [])]
    written = builder().written_records(items)
    assert isinstance(written[0], str) is (count + 1 + 9 <= 900)  # the record's own 9 fields
    assert_written_as_made_whole(items, {})


def test_a_record_with_an_extra_value_inside_itself_is_made_whole() -> None:
    loop: dict[str, Any] = {"id": 1}
    loop["self"] = loop
    items = [capture_of("order", (), "app", "f", {"loop": loop}, False, [])]
    assert not any(isinstance(entry, str) for entry in builder().written_records(items))
    assert_written_as_made_whole(items, {})


# structlog through logging (`ProcessorFormatter.wrap_for_formatter`): the record's message is
# the event dict, and the formatter prints it rendered (JSONRenderer, with a time, perhaps the
# logger's name), or as text; every key and value from_record maps, keeps apart or examines.
EVENT_KEY = st.sampled_from([
    "event", "message", "msg", "_msg", "level", "timestamp", "logger", "exc_info", "stack_info",
    "_record", "_from_structlog", "user", "order_id", "password", "exception", "stream",
    "code.file", "thread", "trace_id", "job", "k" * 40, "é", "", "n",
])  # fmt: skip
EVENT_VALUE = st.one_of(
    ASCII_TEXT, ASCII_TEXT, TEXT, st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["app", "order placed", "token AKIA0123456789ABCDEF", "v" * 17_000, "",
                     "y" * 3_000, "\x01" * 200, {"a": 1}, [1, "x"], ("t",)]),
)  # fmt: skip


#: Settings that change what a record's entry is (made whole or written at once).
RECORD_SETTINGS: list[dict[str, str]] = [
    {}, {"VICTORIALOGS_REDACT_KEYS": "user"}, {"VICTORIALOGS_REDACT": "off"},
    {"VICTORIALOGS_FIELDS": "env=x"}, {"VICTORIALOGS_MAX_LINE_BYTES": "1024"},
    {"VICTORIALOGS_REDACT_KEYS": "msg"}, {"VICTORIALOGS_REDACT": "_m"},
]  # fmt: skip
#: An index into RECORD_CONTEXTS, its first ones (none, an invocation's, a span's) as often.
A_RECORD_CONTEXT = st.one_of(st.sampled_from([0, 1, 2, 3]),
                             st.sampled_from(range(len(RECORD_CONTEXTS))))  # fmt: skip


@st.composite
def event_dicts(draw: Any) -> dict[Any, Any]:
    event: dict[Any, Any] = {}
    if draw(st.integers(0, 9)):
        event["event"] = draw(st.one_of(ASCII_TEXT.filter(bool), ASCII_TEXT, EVENT_VALUE))
    plain = st.one_of(ASCII_TEXT, st.integers(), st.sampled_from(["app", "other"]))
    event.update(draw(st.dictionaries(st.sampled_from(["user", "order_id", "n", "é", "logger"]),
                                      plain, max_size=3)))  # fmt: skip
    if draw(st.booleans()):
        event.update(draw(st.dictionaries(EVENT_KEY, EVENT_VALUE, max_size=2)))
    if draw(st.booleans()):
        event["level"] = "info"
    if not draw(st.integers(0, 19)):
        event[7] = "a key that is no text"
    return event


def rendered(event: dict[Any, Any], how: int) -> list[str]:
    """What a ProcessorFormatter prints of an event dict: nothing (another handler), its
    JSON with a time and the logger's name, with values of its own, text, or two lines."""
    shown = {str(k): v for k, v in event.items() if str(k)[:1] != "_"}
    as_json = json.dumps({**shown, "timestamp": "2026-12-05T05:13:12.123456Z"}, default=repr)
    return [[], [as_json + "\n"], [json.dumps({**shown, "logger": "app"}, default=repr) + "\n"],
            [json.dumps({"user": "from the formatter", "n": 2}) + "\n"],
            ["2026-12-05 order placed [info] user=amy\n"], ["{not json\n", as_json + "\n"],
            [json.dumps({"event": "x", "exception": "Traceback (most recent call last): x"})],
            [json.dumps({"event": "x", "stream": "mine", "nested": {"a": 1}})]][how]  # fmt: skip


@PROPS
@given(st.lists(st.tuples(event_dicts(), st.sampled_from([0, 1, 1, 2, 3, 4, 5, 6, 7]),
                          st.sampled_from(["app", "app", "other"]),
                          st.sampled_from([(), (), (), (1,)]),
                          st.sampled_from([None, None, None, {"x": 1}]),
                          A_RECORD_CONTEXT), min_size=1, max_size=8),
       st.sampled_from([*RECORD_SETTINGS, {"VICTORIALOGS_REDACT": "hunter"}]))  # fmt: skip
def test_structlog_event_dicts_are_written_as_the_general_path_writes_them(
    cases: list[Any], env: dict[str, str]
) -> None:
    items = [capture_of(event, args, name, "f", extra, False, rendered(event, how),
                        context=fresh(RECORD_CONTEXTS[index]))
             for event, how, name, args, extra, index in cases]  # fmt: skip
    assert_written_as_made_whole(items, env)


def test_escape_sequences_in_a_structlog_event_are_read_as_in_a_records_message() -> None:
    """Found by the property above: an event written at once was read without its escape
    sequences, made whole it kept them; one that holds nothing else keeps them both ways (an
    empty message would be stored as the server's "missing _msg field")."""
    events = [{"event": "\x1b0"}, {"event": "\x1b[31mred\x1b[0m", "user": "amy"}]
    items = [capture_of(event, (), "app", "f", None, False, rendered(event, 1),
                        context=fresh(RECORD_CONTEXTS[0])) for event in events]  # fmt: skip
    assert_written_as_made_whole(items, {})
    made = [entry for item in items for entry in builder().from_item(item)]
    assert [entry["_msg"] for entry in made] == ["\x1b0", "red"]


STRUCTLOG_EVENT: dict[Any, Any] = {
    "order_id": 7, "user": "amy", "event": "order placed", "level": "info", "logger": "app",
}  # fmt: skip


@pytest.mark.parametrize("printed", [
    [json.dumps({**STRUCTLOG_EVENT, "timestamp": "2026-12-05T05:13:12.123456Z"}) + "\n"],
    [],  # printed by no handler of the program's (or as text)
    ["2026-12-05 05:13:12 [info     ] order placed   order_id=7 user=amy\n"],
])  # fmt: skip
def test_structlog_event_dicts_through_logging_are_written_at_once(printed: list[str]) -> None:
    items = [capture_of(dict(STRUCTLOG_EVENT), (), "app", "handle", None, False, printed,
                        context=fresh(CONTEXTS[2]))] * 3  # fmt: skip
    out = builder().written_records(items)
    assert all(isinstance(entry, str) for entry in out)
    fields = json.loads("{" + str(out[0]))
    assert (fields["_msg"], fields["logger"], fields["order_id"], fields["user"]) == (
        "order placed", "app", 7, "amy")  # fmt: skip
    assert "event" not in fields and "timestamp" not in fields and fields["level"] == "INFO"
    assert_written_as_made_whole(items, {})


@pytest.mark.parametrize(("event", "env"), [
    ({**STRUCTLOG_EVENT, "logger": "another"}, {}),  # not the record's logger: it wins
    ({**STRUCTLOG_EVENT, "logger": None}, {}),
    ({**STRUCTLOG_EVENT, "user": {"id": 1, "token": "t"}}, {}),  # a secret's name, nested
    ({**STRUCTLOG_EVENT, "password": "hunter2"}, {}),  # a secret's name
    ({**STRUCTLOG_EVENT, "event": "token AKIA0123456789ABCDEF"}, {}),  # a secret's literal
    ({**STRUCTLOG_EVENT, "event": ""}, {}),  # the next message key, or the dict's text
    ({**STRUCTLOG_EVENT, "event": "\x01" * 200}, {"VICTORIALOGS_MAX_LINE_BYTES": "1024"}),
    ({**STRUCTLOG_EVENT, "stream": "mine"}, {}),  # kept apart
    ({**STRUCTLOG_EVENT, "exception": "Traceback (most recent call last): x"}, {}),
    ({**STRUCTLOG_EVENT, "job": "mine"}, {}),  # a constant field's name
    ({**STRUCTLOG_EVENT, "thread": "mine"}, {}),  # a record's own field
    ({"order_id": 7, "level": "info"}, {}),  # no message key
    ({**STRUCTLOG_EVENT, 7: "a key that is no text"}, {}),
])  # fmt: skip
def test_structlog_event_dicts_that_need_more_are_made_whole(
    event: dict[Any, Any], env: dict[str, str]
) -> None:
    item = capture_of(event, (), "app", "handle", None, False, [])
    assert not any(isinstance(entry, str) for entry in builder(**env).written_records([item]))
    assert_written_as_made_whole([item], env)


@PROPS
@given(event_dicts(), st.booleans())
def test_taken_is_how_object_fields_takes_an_object(event: dict[Any, Any], record: bool) -> None:
    """record_taken and taken tell what record_object and object_fields make of an object of
    those keys, when its message key holds text (what _structured writes from them)."""
    if not record:
        event = {str(key): value for key, value in event.items()}
    shape = record_taken(tuple(event)) if record else taken(tuple(event), False)
    if shape is None:
        return
    obj = record_object(event, (), "") if record else dict(event)
    assert obj is not None
    if shape.msg is not None and not (isinstance(obj[shape.msg], str) and obj[shape.msg]):
        return
    expected = {"_msg": obj[shape.msg]} if shape.msg is not None else {}
    expected.update((key, obj[key]) for key in shape.kept)
    made = object_fields(dict(obj), keep_message=record)
    assert list(made.items()) == list(expected.items())


@pytest.mark.parametrize("count", [860, 870, 871, 872, 880])
def test_records_with_extra_fields_and_a_large_context_are_folded_as_made_whole(
    count: int,
) -> None:
    """A record's entry is its fields, its `extra=` and its context's fields once the server
    flattens them: around the limit, folded just as when it is made whole (the context's
    nested fields count), one record or a run."""
    context = ({"big": {f"k{n}": n for n in range(count)}},)
    for size in (1, 3):
        items = [capture_of(f"order {n}", (), "app", "f", {f"e{i}": i for i in range(20)}, False,
                            [], context=context) for n in range(size)]  # fmt: skip
        assert_written_as_made_whole(items, {})


# loguru's records (captured at its console sink: vlhook._integrations.loguru), as loguru makes
# them: a message, `bind()` fields of every kind, an exception.
def loguru_records(cases: list[tuple[str, dict[str, Any], bool, int]]) -> list[dict[str, Any]]:
    from loguru import logger

    made = _loguru_sink()
    made.clear()
    for message, bound, failing, level in cases:
        try:
            if failing:
                raise ValueError("boom")
        except ValueError:
            logger.bind(**bound).opt(exception=True).log(level, message)
        else:
            logger.bind(**bound).log(level, message)
    return made[:]


@functools.cache
def _loguru_sink() -> list[Any]:
    """The records loguru makes, kept by the one sink of this process. Only records are
    compared, and a record is the same whatever its sinks do: loguru's default stderr sink,
    which shows an exception with its variables (`diagnose`), and a sink added for each
    example (each reads the interpreter's paths) were most of the property tests' time. No
    other test in this process uses loguru."""
    from loguru import logger

    made: list[Any] = []
    logger.remove()
    logger.add(lambda message: made.append(message.record), level=0, backtrace=False,
               diagnose=False)  # fmt: skip
    return made


LOGURU_BOUND = st.dictionaries(
    st.sampled_from(["user", "request_id", "n", "password", "logger", "thread", "stream", "level",
                     "job", "trace_id", "k" * 40, "é", ""]),
    st.one_of(ASCII_TEXT, st.integers(), st.booleans(), st.none(),
              st.sampled_from(["token AKIA0123456789ABCDEF", {"a": 1}, [1], "v" * 17_000])),
    max_size=3,
)  # fmt: skip


@PROPS
@given(st.lists(st.tuples(
    st.one_of(ASCII_TEXT, TEXT, st.sampled_from(["token AKIA0123456789ABCDEF", "\x01" * 200,
                                                  "order {placed}", "two\nlines\n"])),
    st.one_of(st.just({}), LOGURU_BOUND), st.booleans(), st.sampled_from([10, 20, 25, 30, 40, 50]),
    A_RECORD_CONTEXT,
), min_size=1, max_size=8),
       st.sampled_from([*RECORD_SETTINGS, {"VICTORIALOGS_REDACT_KEYS": "code.file"}]))  # fmt: skip
def test_loguru_records_are_written_as_the_general_path_writes_them(
    cases: list[Any], env: dict[str, str]
) -> None:
    from vlhook._integrations.loguru import entry_fields

    made = loguru_records([(message, bound, failing, level)
                           for message, bound, failing, level, _ in cases])  # fmt: skip
    items = [event(entry_fields, (made_record, ""), T0 + n, 7, fresh(RECORD_CONTEXTS[index]),
                   made_record["level"].no)
             for n, (made_record, (*_, index)) in enumerate(zip(made, cases))]  # fmt: skip
    assert_written_as_made_whole(items, env)


def test_loguru_records_are_written_at_once() -> None:
    from vlhook._integrations.loguru import entry_fields

    made = loguru_records([("order placed", {"user": "amy", "n": 1}, False, 20)] * 3)
    items: list[Any] = [event(entry_fields, (made_record, ""), T0, 7, fresh(CONTEXTS[2]), 20)
                        for made_record in made]  # fmt: skip
    out = builder().written_records(items)
    assert all(isinstance(entry, str) for entry in out)
    fields = json.loads("{" + str(out[0]))
    assert (fields["_msg"], fields["user"], fields["n"], fields["trace_id"]) == (
        "order placed", "amy", 1, "0af7651916cd43dd8448eb211c80319c")  # fmt: skip
    assert_written_as_made_whole(items, {})


@pytest.mark.parametrize(("message", "env"), [
    ("\x01" * 200, {"VICTORIALOGS_MAX_LINE_BYTES": "1024"}),  # split in parts
    ("token AKIA0123456789ABCDEF", {}),  # redacted
])  # fmt: skip
def test_loguru_records_that_need_more_are_made_whole(message: str, env: dict[str, str]) -> None:
    from vlhook._integrations.loguru import entry_fields

    made = loguru_records([(message, {}, False, 20)])
    items: list[Any] = [event(entry_fields, (made[0], ""), T0, 7, None, 20)]
    assert not any(isinstance(entry, str) for entry in builder(**env).written_records(items))
    assert_written_as_made_whole(items, env)


def _failing_fields(data: Any) -> dict[str, Any]:
    raise RuntimeError("the integration failed")


HEAD = {
    "_time": "2026-12-05T05:13:12.123456000Z",
    "_msg": "m",
    "level": "INFO",
    "logger": "app",
    "code.file": "/app/x.py",
    "code.line": 3,
    "code.function": "f",
    "thread": "MainThread",
}


@pytest.mark.parametrize("fields", [
    lambda data: {"_msg": "no location", "level": "INFO"},
    lambda data: {**HEAD, "stream": "its own"},  # kept apart
    lambda data: {**HEAD, "": 1},
    lambda data: dict(reversed(HEAD.items())),  # another order
    lambda data: {**HEAD, "_time": 1780000000.5},
    _failing_fields,  # said in the entry, as from_event says it
])  # fmt: skip
def test_an_integrations_record_of_another_shape_is_made_whole(fields: Any) -> None:
    """Another integration's fields (only loguru's exist) are written at once only in a
    record's layout; anything else is made whole by from_event, never raised."""
    items: list[Any] = [event(fields, None, T0, 7, None, 20)]
    assert not any(isinstance(entry, str) for entry in builder().written_records(items))
    assert_written_as_made_whole(items, {})


def test_a_record_naming_a_trace_field_in_extra_takes_none_of_its_contexts() -> None:
    """As the general path has it: an entry that names a trace field keeps it, and takes
    none of its context's trace fields (never one trace's id with another's span)."""
    context = ({"trace_id": "1" * 32, "span_id": "2" * 16}, BOUND)
    item = capture_of("done", (), "app", "f", {"trace_flags": "00"}, False, [], context=context)
    b, again = builder(), builder()
    written = encoded(b.written_records([item]))
    assert written == encoded(again.from_item(item))
    fields = json.loads(written)
    assert fields["trace_flags"] == "00" and "trace_id" not in fields and fields["user"] == "bob"


def test_a_run_of_records_with_plain_extra_fields_is_written_at_once() -> None:
    items = [capture_of("order %s", (n,), "app", "f", {"user_id": n} if n % 2 else None,
                        False, []) for n in range(6)]  # fmt: skip
    out = builder()._written_record_run(items)
    assert out is not None
    assert [json.loads("{" + str(entry)).get("user_id") for entry in out] == [
        None, 1, None, 3, None, 5]  # fmt: skip
    assert_written_as_made_whole(items, {})


def test_a_record_whose_extra_fields_are_large_is_made_whole_and_fits_the_server() -> None:
    """Each field below the cut, together past the server's line limit: the encoder shrinks
    what it writes itself, so such a record is not written here."""
    extra = {f"field{n}": "v" * 15_000 for n in range(20)}
    item = capture_of("big", (), "app", "f", extra, False, [])
    assert all(isinstance(entry, dict) for entry in builder().written_records([item]))
    assert_written_as_made_whole([item], {})
    assert len(encoded(builder().written_records([item]))) <= SERVER_LINE_LIMIT


def test_a_record_whose_extra_fields_are_all_private_is_written_without_them() -> None:
    item = capture_of("done", (), "app", "f", {"_private": 1}, False, [])
    out = builder().written_records([item])
    assert json.loads("{" + str(out[0]))["_msg"] == "done"
    assert_written_as_made_whole([item], {})


def test_a_record_with_plain_extra_fields_is_written() -> None:
    extra = {"user_id": 42, "path": "/api/items", "ms": 1.5, "ok": True, "none": None}
    out = builder().written_records([capture_of("done", (), "app", "f", extra, False, [])])
    assert isinstance(out[0], str)
    fields = json.loads("{" + out[0])
    assert {key: fields[key] for key in extra} == extra and fields["code.line"] == 12


EQUAL = (1, True, 1.0, -0.0, 0.0, [1], [True])  # equal, and each written as it is


@pytest.mark.parametrize("read", [fresh, snapshots])
def test_records_whose_bound_values_are_equal_are_each_written_with_their_own(read: Any) -> None:
    """A run of records is written with one context only when every record has the same
    sources (or fields of the same plain values and types), not merely equal ones."""
    items = [capture_of("order", (), "app", "f", None, False, [], context=read(({"n": value},)))
             for value in EQUAL]  # fmt: skip
    out = builder().written_records(items)
    assert [str(entry).split('"n":')[1][:-1] for entry in out] == [
        "1", "true", "1.0", "-0.0", "0.0", "[1]", "[true]"]  # fmt: skip


@pytest.mark.parametrize("read", [fresh, snapshots])
def test_lines_whose_bound_values_are_equal_are_each_written_with_their_own(read: Any) -> None:
    values = [*EQUAL, 1]  # a run has 8 lines at least
    captures = items([(0, f"line {n}\n") for n in range(len(values))],
                     contexts=[read(({"n": value},)) for value in values])  # fmt: skip
    out = by_run(captures, builder())
    assert out is not None
    assert [str(entry).split('"n":')[1][:-1] for entry in out] == [
        "1", "true", "1.0", "-0.0", "0.0", "[1]", "[true]", "1"]  # fmt: skip


class Counted:
    """structlog's fields of a snapshot, counting how many snapshots were read."""

    def __init__(self) -> None:
        self.reads = 0
        source_keys[self] = snapshot_key(STRUCTLOG_VARIABLES)

    def __call__(self, snapshot: Context) -> dict[str, Any]:
        self.reads += 1
        return expand_structlog(snapshot)


def test_lines_and_records_of_one_structlog_context_are_written_with_it_read_once() -> None:
    """structlog's context is a snapshot per capture: the lines and records of one request
    hold the same values, and are written with their fields read and examined once."""
    fields = {"request_id": "r-1", "user_id": 42, "path": "/api/items"}
    span = {"trace_id": "1" * 32, "span_id": "2" * 16}  # one span's: the same source
    for make in ("lines", "records"):
        expand = Counted()
        contexts = [(span, (expand, structlog_snapshot(fields))) for _ in range(8)]
        if make == "lines":
            captures = items([(0, f"line {n}\n") for n in range(8)], contexts=contexts)
            out: Any = by_run(captures, builder())
        else:
            captures = [capture_of("order", (), "app", "f", None, False, [], context=context)
                        for context in contexts]  # fmt: skip
            out = builder()._written_record_run(captures)
        # Records: read once more, to tell that the run's context is the program's.
        assert expand.reads == (1 if make == "lines" else 2), make
        assert out is not None and all(isinstance(entry, str) for entry in out), make
        assert [json.loads("{" + entry)["user_id"] for entry in out] == [42] * 8
        if make == "records":
            assert_written_as_made_whole(captures, {})


def test_a_structlog_key_unbound_or_bound_later_is_not_on_the_lines() -> None:
    """A snapshot taken before a key's first bind does not have it; one taken after the key
    was unbound holds `...`: neither line carries it, both carry the rest."""
    before = structlog_snapshot({"request_id": "r-1"})
    late = structlog_snapshot({"request_id": "r-1", "late_key": ...})
    contexts = [((expand_structlog, snapshot),) for snapshot in [before, late] * 4]
    out = by_run(items([(0, f"line {n}\n") for n in range(8)], contexts=contexts), builder())
    assert out is not None
    assert all("late_key" not in json.loads("{" + str(entry)) for entry in out)
    assert all(json.loads("{" + str(entry))["request_id"] == "r-1" for entry in out)


def test_structlog_variables_made_anew_are_told_apart_from_the_old_ones() -> None:
    """A program that empties structlog's variables (between tests, say) makes new ones: a
    snapshot holding the same value under another key has other fields."""
    variables: dict[str, ContextVar[Any]] = {}
    expand = fields_of(variables, "structlog_")
    source_keys[expand] = snapshot_key(variables)
    b, value = builder(), "v-1"
    for name in ("first", "second"):
        variables.clear()
        variable = variables["structlog_" + name] = ContextVar("structlog_" + name, default=...)
        snapshot = Context().run(lambda: (variable.set(value), copy_context())[1])
        captures = items([(0, f"line {n}\n") for n in range(8)],
                         contexts=[((expand, snapshot),)] * 8)  # fmt: skip
        out = by_run(captures, b)  # one builder: the first run's context is held
        assert out is not None
        assert all(json.loads("{" + str(entry)).get(name) == value for entry in out), name


def test_a_record_in_a_span_or_an_invocation_is_written() -> None:
    b = builder()
    for context in CONTEXTS[1:4]:
        out = b.written_records([capture_of("in a span", (), "app", "f", None, False, [],
                                            context=context)])  # fmt: skip
        assert isinstance(out[0], str), context
        fields = json.loads("{" + out[0])
        assert fields["_msg"] == "in a span" and ("span_id" in fields or "aws_request_id" in fields)


@pytest.mark.parametrize("env", [{"VICTORIALOGS_FIELDS": "logger=x"},
                                 {"VICTORIALOGS_REDACT_KEYS": "function"}])  # fmt: skip
def test_records_are_not_written_here_when_a_setting_touches_their_keys(
    env: dict[str, str],
) -> None:
    b = builder(**env)
    items = [capture_of("order %s", (1,), "app", "f", None, False, [])]
    assert all(isinstance(entry, dict) for entry in b.written_records(items))
    written, whole = encoded_records(items, b)
    assert written == whole


# -- through a real process, to a real VictoriaLogs -----------------------------------------

BURST = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
log = logging.getLogger("burst")
for i in range(3000):
    if i % 500 == 0:
        log.info("record %d", i)
    elif i % 250 == 0:
        log.warning("with extra %d", i, extra={"order": i})
    if i % 97 == 0:
        print(f"key AKIA0123456789ABCDEF in line {i}")
    elif i % 131 == 0:
        print(json.dumps({"msg": f"json {i}", "k": i}))
    elif i % 50 == 0:
        print(f"ERROR failed {i}")
    elif i % 7 == 0:
        print(f"to stderr {i}", file=sys.stderr)
    else:
        print(f"line {i} done")
"""


def test_a_burst_of_mixed_lines_and_records_is_stored_once_as_written(
    script: Any, sink: Any
) -> None:
    """Thousands of lines at once make runs: each line and record is stored once, with the
    level it names, its secret masked, its JSON keys, its stream; records with their location
    (plain ones) and their extra fields (the others); the program's output is unchanged."""
    path = script(BURST)
    as_without_vlhook(path, sink.env(), timeout=60)
    expected = 3000 + 6 + 6  # lines, plain records (every 500th), records with extra
    rows = sink.settle(expected, timeout=30)
    assert len(rows) == expected
    by_msg = {row["_msg"]: row for row in rows}
    assert len(by_msg) == expected  # each once
    assert by_msg["line 1 done"]["level"] == "INFO" and by_msg["line 1 done"]["stream"] == "stdout"
    assert by_msg["ERROR failed 100"]["level"] == "ERROR"
    assert by_msg["to stderr 7"]["stream"] == "stderr"
    assert by_msg["json 131"]["k"] == "131"
    assert "AKIA0123456789ABCDEF" not in str(rows)
    assert by_msg["key [REDACTED] in line 97"]["level"] == "INFO"
    plain = by_msg["record 500"]
    assert (plain["stream"], plain["level"], plain["logger"]) == ("logging", "INFO", "burst")
    assert plain["code.function"] == "<module>" and plain["code.line"] == "7"
    extra = by_msg["with extra 250"]
    assert (extra["level"], extra["order"], extra["logger"]) == ("WARNING", "250", "burst")


JSON_LOGGER = """
import json
for n in range(200):
    print(json.dumps({"event": f"order {n}", "request_id": f"r-{n % 7}", "level": "warning",
                      "timestamp": f"2026-12-05T05:13:{n % 60:02d}.{n:06d}Z", "n": n}))
print(json.dumps({"msg": "mine", "job": "worker", "host": "h1", "pid": 5}))
for n in range(50):  # pino-like, nested
    print(json.dumps({"level": "info", "msg": f"request {n}", "tags": ["api", "v2"],
                      "req": {"method": "GET", "headers": {"accept": "*/*"}, "n": n}}))
print(json.dumps({"msg": "login", "user": {"name": "amy", "password": "hunter2"}}))
"""


def test_json_lines_of_a_json_logger_are_stored_once_as_printed(script: Any, sink: Any) -> None:
    """On a real VictoriaLogs: each line once, at its own time and level, with its fields and
    the trace of TRACEPARENT; the program's job, host and pid in place of vlhook's, once."""
    path = script(JSON_LOGGER)
    run = run_python(path, sink.env(
        TRACEPARENT="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))  # fmt: skip
    assert run.rc == 0, run.stderr
    rows = sink.settle(252)
    assert len(rows) == 252
    by_msg = {row["_msg"]: row for row in rows}
    for n in range(50):  # flattened by the server; a list is kept as JSON text
        row = by_msg[f"request {n}"]
        fields = (row["level"], row["req.method"], row["req.headers.accept"], row["req.n"])
        assert fields == ("INFO", "GET", "*/*", str(n)) and json.loads(row["tags"]) == ["api", "v2"]
    assert (by_msg["login"]["user.name"], by_msg["login"]["user.password"]) == ("amy", MASK)
    for n in range(200):
        row = by_msg[f"order {n}"]
        fraction = f".{n:06d}".rstrip("0").rstrip(".")  # as the server writes it back
        assert row["_time"] == f"2026-12-05T05:13:{n % 60:02d}{fraction}Z", row
        assert (row["level"], row["request_id"], row["n"]) == ("WARNING", f"r-{n % 7}", str(n))
        assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    mine = by_msg["mine"]
    assert (mine["job"], mine["host"], mine["pid"]) == ("worker", "h1", "5")
    assert 'job="worker"' in mine["_stream"]


# -- JSON lines the group's search found clean --------------------------------------------

JSON_KEY = st.sampled_from(["msg", "message", "level", "user", "password", "api_key", "ms",
                            "k" * 40, "trace_id", "tags", "ts", "é", "code.line"])  # fmt: skip
JSON_VALUE = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=12), st.integers(), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["AKIA0123456789ABCDEF", "Bearer abcdefghijkl", "a\\\\b", "x" * 20_000]),
    st.lists(st.integers(), max_size=2), st.dictionaries(JSON_KEY, st.integers(), max_size=2),
)  # fmt: skip


@PROPS
@given(st.dictionaries(JSON_KEY, JSON_VALUE, min_size=1, max_size=6),
       st.sampled_from([{}, {"VICTORIALOGS_REDACT_KEYS": "user"},
                        {"VICTORIALOGS_REDACT_KEYS": "code.line"}]))  # fmt: skip
def test_a_json_line_found_clean_is_made_as_when_every_field_is_examined(
    obj: dict[str, Any], env: dict[str, str]
) -> None:
    b = builder(VICTORIALOGS_MAX_LINE_BYTES="100000", **env)
    text = json.dumps(obj, ensure_ascii=False)
    clean = not b._lines_with_secrets(Hay([text]))  # what the group's search tells
    made = make_line(0, text, T0, None)
    assert b.from_line(made, clean) == b.from_line(made, False)


# What JSON logging libraries print (structlog's JSONRenderer, python-json-logger, pino-like
# shapes), and every kind of key and value the JSON path maps, keeps apart or examines: a
# message key first, mostly, then perhaps a level and a time, then other keys.
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(("extra", "stored"), [
    ({"n": NAN}, {"n": "NaN"}),
    ({"n": INF, "m": 1}, {"n": "Infinity", "m": 1}),
    ({"n": -INF, "o": None}, {"n": "-Infinity", "o": None}),
    ({"big": 2**70}, {"big": str(2**70)}),
    ({"nested": {"r": NAN, "b": 2**64}}, {"nested": {"r": "NaN", "b": str(2**64)}}),
    ({"nested": {"r": NAN, "s": "x"}}, {"nested": {"r": "NaN", "s": "x"}}),
    ({"l": [1, -INF]}, {"l": [1, "-Infinity"]}),
    ({"l": [1, -(2**64) + 1, -INF]}, {"l": [1, str(-(2**64) + 1), "-Infinity"]}),
    ({"n": None, "m": 1.5, "u": 2**64 - 1}, {"n": None, "m": 1.5, "u": 2**64 - 1}),
])  # fmt: skip
def test_records_with_numbers_json_cannot_carry_are_written_as_text(
    extra: dict[str, Any], stored: dict[str, Any]
) -> None:
    """NaN, the infinities and integers past 64 bits, at the top of `extra=` or nested: the
    run path leaves them to the general path, which writes them as text (orjson would write
    NaN as null, which the server stores as nothing, and refuses such an integer)."""
    items = [capture_of("order", (), "app", "f", extra, False, [],
                        context=fresh(RECORD_CONTEXTS[0]))]  # fmt: skip
    assert_written_as_made_whole(items, {})
    line = json.loads(encoded([e for item in items for e in builder().from_item(item)]))
    assert {key: line[key] for key in stored} == stored


# Integers orjson reads as floats (past its 64 bits: above 2**64 - 1, below -2**63), as a
# program prints them: a 128-bit trace id, a big id, in a flat line (written at once) and
# nested (examined); each must keep every digit. Next to them what stays as it was read.
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


@pytest.mark.parametrize(("text", "stored"), [
    (f'{{"msg": "m", "trace_id": {TRACE_ID}}}', {"trace_id": str(TRACE_ID)}),
    (f'{{"event": "m", "id": {2**70}, "level": "info", "n": 1}}',
     {"id": str(2**70), "n": 1, "level": "INFO"}),
    ('{"msg": "m", "low": -9223372036854775809, "high": 18446744073709551616}',
     {"low": "-9223372036854775809", "high": "18446744073709551616"}),
    # At the edges orjson keeps as integers, and a time in nanoseconds: left as they were.
    ('{"msg": "m", "low": -9223372036854775808, "high": 18446744073709551615,'
     ' "ns": 1780000000123456789}',
     {"low": -(2**63), "high": 2**64 - 1, "ns": 1780000000123456789}),
    (f'{{"msg": "m", "req": {{"id": {2**70}, "tags": [1, {-(2**65)}]}}}}',
     {"req": {"id": str(2**70), "tags": [1, str(-(2**65))]}}),
    # Long runs of digits that are no integer of the object: a string's, a float's.
    (f'{{"msg": "m", "s": "{2**70}", "f": 100000000000000000000.5, "e": 1.5e300}}',
     {"s": str(2**70), "f": 1e20, "e": 1.5e300}),
    (f'{{"msg": "m", "big": {2**70}, "ratio": NaN}}', {"big": str(2**70), "ratio": "NaN"}),
])  # fmt: skip
def test_printed_integers_past_64_bits_keep_every_digit(text: str, stored: dict[str, Any]) -> None:
    """orjson reads such an integer as a float, its last digits lost: the line is read again
    by the standard library's scanner, which keeps them; the entry carries them as text, as it
    does those of `extra=`. Written at once or made whole, the same bytes."""
    line = make_line(0, text, T0, None)
    b, again = builder(), builder()
    written = encoded(b.written_lines([line, line]))
    assert written == encoded(again.from_line(line) * 2)
    first = json.loads(written.split(b"\n")[0])
    assert {key: first[key] for key in stored} == stored


def test_an_object_without_a_message_keeps_its_huge_integer_in_the_message_it_makes() -> None:
    """A JSON line with no message key is its own message, its secrets masked there: an
    integer past 64 bits in it, read whole, is written as its digits (orjson refuses it)."""
    line = make_line(0, f'{{"password": "hunter2", "id": {2**70}}}', T0, None)
    (entry,) = builder().from_line(line)
    assert str(2**70) in entry["_msg"] and "hunter2" not in entry["_msg"]
    assert json.loads(encoded([entry]))["id"] == str(2**70)


def test_folded_fields_keep_numbers_json_cannot_carry_as_text() -> None:
    """Past the fields the server keeps, the rest goes as JSON text in one field: its NaN and
    its integer past 64 bits as text there too (the integer made orjson refuse the fold)."""
    extra: dict[str, Any] = {f"f{i}": i for i in range(1500)}
    extra.update(f1498=NAN, f1499=2**70)
    item = capture_of("order", (), "app", "f", extra, False, [], context=fresh(RECORD_CONTEXTS[0]))
    (entry,) = builder().from_item(item)
    folded = json.loads(entry["vlhook.folded_fields"])
    assert (folded["f1497"], folded["f1498"], folded["f1499"]) == (1497, "NaN", str(2**70))


PLAIN_KEY = st.sampled_from(["logger", "request_id", "n", "user", "ms", "k" * 40, "é"])
OBJECT_KEY = st.one_of(PLAIN_KEY, st.sampled_from([
    "_msg", "message", "msg", "event", "errorMessage", "level", "levelname", "severity",
    "log.level", "_time", "timestamp", "time", "ts", "@timestamp", "password", "stream", "",
    "env", "exception", "text", "record", "pid", "host", "job", "container_name", "trace_id",
    "span_id", "trace_flags", "aws_request_id", "user", "code.line", "cold_start",
]))  # fmt: skip
OBJECT_VALUE = st.one_of(
    ASCII_TEXT, ASCII_TEXT, st.text(st.characters(codec="utf-8"), max_size=6),
    st.integers(min_value=-(2**70), max_value=2**70), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([
        "info", "WARN", 30, 0, True, "", "y" * 500, "x" * 20_000, "AKIA0123456789ABCDEF",
        "Bearer abcdefghijkl", "a\\b", "\x1b[31mred\x1b[0m", "Traceback (most recent call last): x",
        [1], {"a": 1}, {"password": "hunter2"}, ["v" * 17_000], {"api": {"key": "k1"}},
    ]),
)  # fmt: skip
# Nested values as loggers print them (a request's headers, a user, tags), with what the
# redactor changes in them at any depth: a secret's name, a (name, value) pair, a literal.
NESTED_KEY = st.sampled_from(["a", "id", "user", "password", "X-Api-Key", "code.line", "level",
                              "_msg", "", "é", "k" * 40, "request_id", "headers",
                              "api", "key"])  # `api.key` flattened: a secret's name  # fmt: skip
NESTED_VALUE = st.recursive(
    st.one_of(ASCII_TEXT, st.integers(min_value=-(2**70), max_value=2**70), st.booleans(),
              st.none(), st.floats(allow_nan=False, allow_infinity=False),
              st.sampled_from(["X-Api-Key", "request_id", "AKIA0123456789ABCDEF", "a\\b", "{["])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NESTED_KEY, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
OBJECT_VALUE = st.one_of(OBJECT_VALUE, NESTED_VALUE)
LEVEL_VALUE = st.sampled_from(["info", "WARNING", "err", 40, 0, "nope", "", None])
TIME_VALUE = st.sampled_from(["2026-12-05T05:13:12.123456Z", "2024-02-29T23:59:59+01:00",
                              "2026-02-29T00:00:00Z", "2026-12-05T24:00:00Z",
                              "2026-12-05T23:60:00Z", "2026-12-05T23:59:60Z", 1780000000123,
                              -5, True, "yesterday"])  # fmt: skip


@st.composite
def printed_objects(draw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        obj[draw(st.sampled_from(["_msg", "message", "msg", "event", "errorMessage"]))] = \
            draw(st.one_of(ASCII_TEXT, ASCII_TEXT, OBJECT_VALUE))  # fmt: skip
    if draw(st.booleans()):
        obj[draw(st.sampled_from(["level", "levelname", "severity", "log.level"]))] = \
            draw(LEVEL_VALUE)  # fmt: skip
    if draw(st.booleans()):
        obj[draw(st.sampled_from(["_time", "timestamp", "time", "ts", "@timestamp"]))] = \
            draw(TIME_VALUE)  # fmt: skip
    obj.update(draw(st.dictionaries(PLAIN_KEY, st.one_of(ASCII_TEXT, st.integers()), max_size=3)))
    obj.update(draw(st.dictionaries(OBJECT_KEY, OBJECT_VALUE, max_size=2)))
    return obj


def printed(obj: dict[str, Any], escaped: bool) -> str:
    """The object as printed; `escaped`: its `A`s as JSON escapes, which the group's search
    for secrets cannot see through."""
    text = json.dumps(obj, ensure_ascii=False)
    return text.replace("A", "\\u0041") if escaped else text


@PROPS
@given(st.lists(st.tuples(st.sampled_from([0, 1]), printed_objects(), st.booleans(),
                          st.sampled_from(CONTEXTS + PROGRAM_CONTEXTS)),
                min_size=1, max_size=6),
       st.sampled_from([{}, {"VICTORIALOGS_REDACT_KEYS": "request_id"},
                        {"VICTORIALOGS_REDACT_KEYS": "code.line,cold_start"},
                        {"VICTORIALOGS_FIELDS": "env=x"}, {"VICTORIALOGS_MAX_LINE_BYTES": "1024"},
                        {"VICTORIALOGS_REDACT": "off"}]),
       st.sampled_from([fresh, copied, snapshots]))  # fmt: skip
def test_json_lines_written_at_once_are_written_as_each_made_whole(
    objects: list[tuple[int, dict[str, Any], bool, Any]], env: dict[str, str], read: Any
) -> None:
    """What written_lines writes of JSON lines is what from_line makes of each, every field
    examined, and the encoder writes; with the same counts. Each line in a context or none."""
    lines = [make_line(kind, printed(obj, escaped), T0 + n * 7_654_321, read(context))
             for n, (kind, obj, escaped, context) in enumerate(objects)]  # fmt: skip
    b, again = builder(**env), builder(**env)
    written = encoded(b.written_lines(lines), **env)
    whole = encoded([entry for line in lines for entry in again.from_line(line)], **env)
    assert written == whole
    assert b.stats.as_dict() == again.stats.as_dict()


@pytest.mark.parametrize("obj", [
    {"event": "user logged in", "user_id": 42, "level": "info",
     "timestamp": "2026-12-05T05:13:12.123456Z"},  # structlog's JSONRenderer
    {"level": 30, "time": 1780000000123, "msg": "request completed",  # pino-like, nested
     "req": {"method": "GET", "url": "/api/items?page=2",
             "headers": {"host": "api", "accept": "*/*"}, "remotePort": 51234},
     "res": {"statusCode": 200}, "responseTime": 12.5, "tags": ["api", "v2"]},
    {"message": "batch done", "level": "info", "items": [{"sku": "a", "qty": 1}, {"sku": "b"}],
     "stats": {"ok": 2, "failed": 0, "by_kind": {"x": [1, 2], "y": {}}}},
    {"msg": "deep", "d": json.loads('{"a":' * 31 + "1" + "}" * 31),  # within MAX_DEPTH
     "l": json.loads("[" * 32 + "]" * 32)},
    {"asctime": "2026-12-05 05:13:12,123", "levelname": "WARNING", "name": "app",
     "message": "disk almost full", "pct": 91.5},  # python-json-logger
    {"level": 30, "time": 1780000000123, "hostname": "h", "msg": "request done", "ms": 1.5},
    {"message": "no level, no time", "ok": True, "none": None},
])  # fmt: skip
def test_json_lines_as_logging_libraries_print_them_are_written_at_once(
    obj: dict[str, Any],
) -> None:
    line = make_line(0, json.dumps(obj), T0, None)
    b = builder()
    out = b.written_lines([line] * 3)
    assert all(isinstance(entry, str) for entry in out)
    assert encoded(out) == encoded(builder().from_line(line) * 3)


@pytest.mark.parametrize(("obj", "env"), [
    ({"msg": "x", "key": "\\u0041KIA0123456789ABCDEF"}, {}),  # an escape hides a secret
    ({"msg": "x", "blob": "y" * 20_000}, {}),  # cut
    ({"msg": "x", "n": 1, "user": {"password": "hunter2"}}, {}),  # a secret's name, nested
    ({"msg": "x", "req": {"headers": [["Accept", "*/*"], ["X-Api-Key", "k1"]]}}, {}),  # a pair
    ({"msg": "x", "req": [{"id": 1}, {"user": {"token": "t"}}]}, {}),  # a name in a list
    ({"msg": "x", "client": {"api": {"key": "k1"}}}, {}),  # a secret's name once flattened
    ({"msg": "x", "card": {"number": 4}}, {"VICTORIALOGS_REDACT_KEYS": "card_number"}),
    ({"msg": "x", "user": {"id": 7}}, {"VICTORIALOGS_REDACT_KEYS": "id"}),  # the user's name
    ({"msg": "x", "deep": json.loads("[" * 100 + "]" * 100)}, {}),  # bounded when examined
    ({"msg": "x", "deep": json.loads('{"a":' * 33 + "1" + "}" * 33)}, {}),  # past MAX_DEPTH
    ({"msg": "x", "deep": json.loads("[" * 33 + "]" * 33)}, {}),
    ({"msg": "y" * 500}, {"VICTORIALOGS_MAX_LINE_BYTES": "1024"}),  # split
    ({"msg": "x", "password": "p"}, {}),  # a secret's name
    ({"msg": "x", "exception": "Traceback (most recent call last): boom"}, {}),
    ({"msg": "x", "stream": "mine", "": 1}, {}),  # kept apart
    ({"msg": "token AKIA0123456789ABCDEF"}, {}),  # a secret's literal
    ({"msg": "x", "env": "dev"}, {"VICTORIALOGS_FIELDS": "env=prod"}),  # a line's key
    ({"msg": "x", "host": "mine"}, {}),  # vlhook's constant field
    ({"event": "x", "level": "nope", "severity": "error"}, {}),  # the second level key
    ({"message": "", "msg": "x"}, {}),  # the second message key
    ({"msg": "x", "time": "2026-12-05T24:00:00Z"}, {}),  # no time the server reads
    # The program's `code.line` and `cold_start` (not of vlhook's types): a name like any other.
    ({"msg": "x", "code.line": "a"}, {"VICTORIALOGS_REDACT_KEYS": "code.line"}),
    ({"msg": "x", "cold_start": "a"}, {"VICTORIALOGS_REDACT_KEYS": "cold_start"}),
])  # fmt: skip
def test_json_lines_that_need_examining_are_made_whole(
    obj: dict[str, Any], env: dict[str, str]
) -> None:
    text = json.dumps(obj).replace("\\\\u0041", "\\u0041")
    line = make_line(0, text, T0, None)
    b, again = builder(**env), builder(**env)
    written = b.written_lines([line])
    assert encoded(written, **env) == encoded(again.from_line(line), **env)
    assert b.stats.as_dict() == again.stats.as_dict()
    assert not any(isinstance(entry, str) for entry in written)


def test_a_json_line_with_context_is_made_whole_with_it() -> None:
    line = make_line(0, '{"msg": "x"}', T0, ({"user": "bob"},))
    assert json.loads(encoded(builder().written_lines([line])))["user"] == "bob"


@pytest.mark.parametrize("context", [
    CONTEXTS[1],  # a Lambda invocation's
    CONTEXTS[2],  # a span's, made on the sender
    PROGRAM_CONTEXTS[1],  # trace ids and bound fields
])  # fmt: skip
def test_json_lines_in_a_context_are_written_at_once_with_it(context: Any) -> None:
    """AWS Lambda Powertools and other JSON loggers print inside an invocation or a span:
    the line's keys, then its context's, as apply_context adds them."""
    obj = {"level": "INFO", "message": "order placed", "service": "orders", "ms": 12}
    lines = [make_line(0, json.dumps(obj), T0 + n, fresh(context)) for n in range(3)]
    b, again = builder(), builder()
    written = b.written_lines(lines)
    assert all(isinstance(entry, str) for entry in written)
    assert encoded(written) == encoded([e for line in lines for e in again.from_line(line)])


@pytest.mark.parametrize(("obj", "context"), [
    ({"msg": "x", "trace_flags": "00"}, ({"trace_id": "1" * 32, "span_id": "2" * 16},)),
    ({"msg": "x", "user": "printed"}, (BOUND,)),  # the line's own field wins
    ({"msg": "x"}, ({"aws_request_id": "AKIA0123456789ABCDEF"},)),  # vlhook's, yet redacted
    ({"msg": "x", **{f"f{n}": n for n in range(880)}}, ({f"b{n}": n for n in range(30)},)),
])  # fmt: skip
def test_json_lines_whose_context_goes_otherwise_are_made_whole(
    obj: dict[str, Any], context: Any
) -> None:
    line = make_line(0, json.dumps(obj), T0, context)
    written = builder().written_lines([line])
    assert not any(isinstance(entry, str) for entry in written)
    assert encoded(written) == encoded(builder().from_line(line))


@pytest.mark.parametrize("count", [895, 896, 897, 899, 900])
def test_json_lines_of_many_fields_are_written_as_made_whole(count: int) -> None:
    """Around the server's field limit: an entry of more fields than it keeps is folded, an
    object of more keys than parse_json takes is plain text."""
    obj = {"msg": "many", **{f"f{n}": n for n in range(count)}}
    line = make_line(0, json.dumps(obj), T0, None)
    assert encoded(builder().written_lines([line])) == encoded(builder().from_line(line))


@pytest.mark.parametrize("context", [None, CONTEXTS[2], PROGRAM_CONTEXTS[1]])
@pytest.mark.parametrize("count", [880, 889, 890, 891, 892, 893, 894, 895, 896, 897])
def test_json_lines_of_many_nested_fields_are_written_as_made_whole(
    count: int, context: Any
) -> None:
    """Fields the server makes of nested objects count, with the context's, and a list is
    one: around the limit, the entry is folded just as when it is made whole."""
    obj = {
        "msg": "many",
        "tags": [1, 2],
        "empty": {},
        "d": {f"{n}": {"v": 0} for n in range(count - 2)},
        "e": {"a": {"b": 1, "c": 2}},
    }
    line = make_line(0, json.dumps(obj, separators=(",", ":")), T0, context)  # < 16 KiB
    written = builder().written_lines([line])
    assert encoded(written) == encoded(builder().from_line(line))
    folded = b"vlhook.folded_fields" in encoded(written)
    assert isinstance(written[0], str) is (not folded)


@pytest.mark.parametrize("name", ["container_name", "job", "host", "pid", "env"])
def test_a_line_naming_a_constant_field_carries_it_once_with_the_programs_value(
    name: str,
) -> None:
    """As the encoder writes an entry made whole: the program's value, in the constant's place
    (pino prints its own `pid`; `env` with VICTORIALOGS_FIELDS=env=prod)."""
    env = {"VICTORIALOGS_FIELDS": "env=prod"}
    obj = {"msg": "request done", name: "the program's"}
    line = make_line(0, json.dumps(obj), T0, None)
    written = encoded(builder(**env).written_lines([line]), **env)
    assert written == encoded(builder(**env).from_line(line), **env)
    assert written.count(f'"{name}":'.encode()) == 1 and json.loads(written)[name] == obj[name]


def test_what_the_search_cannot_see_in_a_json_line_is_still_examined() -> None:
    """An escape can spell a secret the raw text does not show, and a long field is cut."""
    b = builder(VICTORIALOGS_MAX_LINE_BYTES="100000")
    escaped = '{"msg": "x", "id": "\\u0041KIA0123456789ABCDEF"}'
    long = json.dumps({"msg": "x", "blob": "y" * 20_000})
    for json_text in (escaped, long):
        assert not b._lines_with_secrets(Hay([json_text]))  # the raw text holds no secret's literal
        made = make_line(0, json_text, T0, None)
        assert b.from_line(made, True) == b.from_line(made, False)
    assert b.from_line(make_line(0, escaped, T0, None), True)[0]["id"] == "[REDACTED]"
    assert len(b.from_line(make_line(0, long, T0, None), True)[0]["blob"]) < 20_000


# Long lines: a head that may name a level, then words in which a level word, a colour code,
# a secret or a character JSON escapes may come at any place, near the LEVEL_HEAD mark too.
LONG_HEAD = st.sampled_from([
    "", "ERROR ", "[warn] ", "2026-12-04 10:00:00 DEBUG ", "Fatal: ", "level=crit ", "| trace | ",
    "x" * 150 + " WARN ", "y" * 196,
])  # fmt: skip
LONG_PIECE = st.sampled_from([
    "words ", "ERROR ", "level=error ", "\x1b[31mred\x1b[0m ", "a\"b ", "AKIA0123456789ABCDEF ",
    "Bearer abcdefghijk ", "err", "é ", "password=pw1 ", "X-Auth-Token: t1 ",
])  # fmt: skip


@PROPS
@given(st.lists(st.tuples(LONG_HEAD, st.integers(0, 900), st.lists(LONG_PIECE, max_size=3)),
                min_size=MIN_RUN, max_size=20))  # fmt: skip
def test_long_lines_searched_at_their_heads_make_what_each_line_makes_by_itself(
    shapes: list[tuple[str, int, list[str]]],
) -> None:
    """Lines long enough that the group's level words are searched at their heads alone
    (Hay.level_candidates): what a level word past the head, a colour code or a secret
    anywhere does to a line is what it does to that line examined whole."""
    texts = [head + "z" * pad + "".join(pieces) + "w" * 300 for head, pad, pieces in shapes]
    captures = items([(0, line + "\n") for line in texts])
    b = builder(VICTORIALOGS_MAX_LINE_BYTES="100000")
    run = by_run(captures, b)
    assert run is not None
    lines: list[Line] = []
    LineAssembler().feed_many(captures, lines)
    assert encoded(run) == encoded([entry for line in lines for entry in b.from_line(line)])


def test_the_level_search_of_long_lines_looks_at_their_heads_and_colours_anywhere() -> None:
    filler = "w" * 1000
    texts = [
        "ERROR at the head " + filler,  # 0: a level at the head
        "x" * 250 + " ERROR past the head " + filler,  # 1: too far in to name a level
        filler + "\x1b[31mred\x1b[0m",  # 2: colour codes, far in
        filler,  # 3: nothing
        "y" * 185 + " level=warn " + filler,  # 4: a logfmt level just before the mark
        "y" * 190 + " level=warn " + filler,  # 5: across it: read as far as the mark, "war"
    ]
    found = Hay(texts).level_candidates()
    assert found == {0, 2, 4}
    assert [detect_level(texts[index]) for index in (0, 1, 3, 4, 5)] == \
        ["ERROR", "INFO", "INFO", "WARNING", "INFO"]  # fmt: skip
    short = ["ERROR a", "x" * 50 + " ERROR past", "plain"]
    assert Hay(short).level_candidates() == {0, 1}  # short lines: searched whole, as before


@pytest.mark.parametrize("env", [{}, {"VICTORIALOGS_REDACT_KEYS": "card_number"}])
def test_a_group_whose_lower_casing_cannot_be_trusted_finds_names_in_any_case(
    env: dict[str, str],
) -> None:
    """An `İ` anywhere in a group makes its lower-cased search unusable: the group's lines are
    then examined one by one, so that a secret's name in a case no search spells
    (`cardNumber`, `PaSSword`) is masked as in a line made by itself."""
    texts = [
        "Müşteri İstanbul'dan geldi",
        "cardNumber=4111 PaSSword=pw1",
        '{"msg": "acCESS_tOKEN=t1"}',
    ]
    lines = [make_line(0, text, T0 + n, None) for n, text in enumerate(texts)]
    b, again = builder(**env), builder(**env)
    written = encoded(b.written_lines(lines), **env)
    assert written == encoded([entry for line in lines for entry in again.from_line(line)], **env)
    assert b"pw1" not in written and b"t1\\" not in written and b't1"' not in written
    assert (b"4111" in written) == (not env)
    assert b.stats.as_dict() == again.stats.as_dict()


def test_the_group_searches_find_every_line_a_secrets_literal_is_in() -> None:
    """The lower-cased searches leave out a literal that holds another (`private key` holds
    `key`): every line holding one is still found, by the other's search."""
    b = builder()
    literals = {needle.lower() for needle in b.redactor.needles or ()}
    assert "private key" in literals and "private key" not in b._lowered_needles
    assert all(any(n in literal for n in b._lowered_needles) for literal in literals)
    texts = [f"line {n}" for n in range(MIN_RUN)] + ["-----BEGIN OPENSSH PRIVATE KEY-----x"]
    assert Hay(texts).lines_with(b._lowered_needles, lower=True) == {MIN_RUN}
