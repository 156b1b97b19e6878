"""Unit and property tests of `vlhook._lines.LineAssembler`: raw writes into complete lines."""

from __future__ import annotations

import traceback
from typing import Any, Union

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vlhook import _lines
from vlhook._captures import Line, text
from vlhook._formats import shows_nothing
from vlhook._lines import (
    CHAIN_WAIT_NS,
    MAX_KEY_LINES,
    MAX_PARTIAL_CHARS,
    MIN_RUN,
    STALE_NS,
    LineAssembler,
    is_traceback_start,
)

Data = Union[str, bytes]
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Line content: anything but the line/segment separators and lone surrogates (not encodable).
LINE_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n")


def assemble(chunks: list[Data]) -> tuple[list[Line], list[Line]]:
    """Feed chunks (t_ns = their index) on one stream and thread: (lines before the final
    flush, lines added by flush(final=True))."""
    asm = LineAssembler()
    out: list[Line] = []
    for index, chunk in enumerate(chunks):
        asm.feed(text(0, chunk, index, 1, None), out)
    before = list(out)
    asm.flush(out, final=False, now_ns=10**18)
    assert out == before, "a non-final flush emitted a partial line"
    asm.flush(out, final=True, now_ns=10**18)
    return before, out[len(before) :]


def texts(lines: list[Line]) -> list[str]:
    return [line[1] for line in lines]


def cut(data: Any, points: list[int]) -> list[Any]:
    bounds = sorted({p for p in points if 0 < p < len(data)})
    edges = [0, *bounds, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


@st.composite
def chunked_text(draw: st.DrawFn) -> tuple[str, list[str], list[int]]:
    """A text of lines ended by "\\n" or "\\r\\n" (the last maybe unterminated) and cut points."""
    lines = draw(st.lists(st.text(LINE_CHARS, max_size=12), max_size=8))
    enders = draw(
        st.lists(st.sampled_from(["\n", "\r\n"]), min_size=len(lines), max_size=len(lines))
    )
    tail = draw(st.text(LINE_CHARS, max_size=8))
    for line in [*lines, tail]:
        assume(not is_traceback_start(line) and not is_traceback_start(line.lstrip()))
    text = "".join(a + b for a, b in zip(lines, enders)) + tail
    points = draw(st.lists(st.integers(0, max(len(text.encode("utf-8")), 1)), max_size=12))
    return text, lines, points


def expected(lines: list[str]) -> list[str]:
    """The lines that make entries: not empty, blank, or escape sequences alone."""
    return [line for line in lines if not shows_nothing(line)]


# -- splitting into lines ---------------------------------------------------------------------


@PROPS
@given(chunked_text())
def test_any_chunking_of_str_gives_the_non_blank_lines(
    case: tuple[str, list[str], list[int]],
) -> None:
    text, lines, points = case
    tail = text.rsplit("\n", 1)[-1] if "\n" in text else text
    before, final = assemble(cut(text, points))
    assert texts(before) == expected(lines)
    assert texts(final) == expected([tail])
    assert all(line.level == "" and line[0] == 0 for line in before + final)


@PROPS
@given(chunked_text())
def test_any_chunking_of_utf8_bytes_even_inside_characters(
    case: tuple[str, list[str], list[int]],
) -> None:
    text, lines, points = case
    data = text.encode("utf-8")
    tail = text.rsplit("\n", 1)[-1] if "\n" in text else text
    before, final = assemble(cut(data, points))
    assert texts(before) == expected(lines)
    assert texts(final) == expected([tail])


@PROPS
@given(chunked_text())
def test_time_of_a_line_is_the_time_of_its_first_chunk(
    case: tuple[str, list[str], list[int]],
) -> None:
    text, _lines, points = case
    chunks = cut(text, points)
    # chunk index of every character of the text, and where each chunk begins in it
    owner = [i for i, chunk in enumerate(chunks) for _ in chunk]
    begins = [sum(map(len, chunks[:i])) for i in range(len(chunks))]
    starts = []
    pos = 0
    for piece in text.split("\n"):
        if piece.rstrip("\r").strip():
            # that chunk's time, and a nanosecond for each line of it before this one
            chunk = owner[pos]
            starts.append(chunk + text.count("\n", begins[chunk], pos))
        pos += len(piece) + 1
    before, final = assemble(chunks)
    assert [line[2] for line in before + final] == starts


@PROPS
@given(
    a=chunked_text(),
    b=chunked_text(),
    order=st.lists(st.booleans(), max_size=60),
)
def test_two_threads_interleaved_never_mix_their_lines(
    a: tuple[str, list[str], list[int]],
    b: tuple[str, list[str], list[int]],
    order: list[bool],
) -> None:
    chunks_a = cut(a[0], a[2])
    chunks_b = cut(b[0], b[2])
    queue_a, queue_b = list(chunks_a), list(chunks_b)
    items: list[tuple[int, str]] = []
    for pick_a in order + [True] * len(queue_a) + [False] * len(queue_b):
        queue = queue_a if pick_a else queue_b
        if queue:
            items.append((101 if pick_a else 202, queue.pop(0)))
    asm = LineAssembler()
    out: list[Line] = []
    for t_ns, (ident, chunk) in enumerate(items):
        asm.feed(text(0, chunk, t_ns, ident, ({"thread": ident}, None)), out)
    asm.flush(out, final=True, now_ns=10**18)
    got_a = [line[1] for line in out if line.context == ({"thread": 101}, None)]
    got_b = [line[1] for line in out if line.context == ({"thread": 202}, None)]
    tail_a = a[0].rsplit("\n", 1)[-1]
    tail_b = b[0].rsplit("\n", 1)[-1]
    assert got_a == expected([*a[1], tail_a])
    assert got_b == expected([*b[1], tail_b])
    assert len(out) == len(got_a) + len(got_b)


def test_stdout_and_stderr_of_one_thread_are_assembled_apart() -> None:
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(0, "out-", 1, 7, None), out)
    asm.feed(text(1, "err-", 2, 7, None), out)
    asm.feed(text(0, "end\n", 3, 7, None), out)
    asm.feed(text(1, "end\n", 4, 7, None), out)
    assert [(line[0], line[1], line[2]) for line in out] == [(0, "out-end", 1), (1, "err-end", 2)]


def test_partial_line_only_on_final_flush() -> None:
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(0, "no newline yet", 5, 1, ({"inv": 1}, {"b": 2})), out)
    asm.flush(out, final=False, now_ns=10**18)
    assert out == []
    asm.flush(out, final=True, now_ns=10**18)
    assert out == [(0, "no newline yet", 5, ({"inv": 1}, {"b": 2}), "")]
    asm.flush(out, final=True, now_ns=10**18)
    assert len(out) == 1  # emitted once


# -- decoding ---------------------------------------------------------------------------------


@PROPS
@given(st.binary(max_size=200), st.lists(st.integers(0, 201), max_size=10))
def test_invalid_utf8_becomes_replacement_and_never_raises(data: bytes, points: list[int]) -> None:
    data = data.replace(b"\r", b"") + b"\n"
    text = data.decode("utf-8", "replace")
    for line in text.split("\n"):
        assume(not is_traceback_start(line) and not is_traceback_start(line.lstrip()))
    before, final = assemble(cut(data, points))
    assert texts(before) == expected(text.split("\n")[:-1])
    assert final == []


def test_invalid_bytes_are_shown_as_replacement_characters() -> None:
    before, final = assemble([b"ok \xff\xfe end\n", b"half \xe2\x82", b"\xac euro\n"])
    assert texts(before) == ["ok \ufffd\ufffd end", "half \u20ac euro"]
    assert final == []


# -- carriage returns -------------------------------------------------------------------------


def test_carriage_returns_separate_lines_of_one_entry() -> None:
    _, final = assemble(["10%", "\r20%", "\r30%"])
    assert texts(final) == ["10%\n20%\n30%"]


def test_progress_bar_then_newline_is_one_entry_with_every_state() -> None:
    before, final = assemble(["\r 1%", "\r 2%", "\r 3%", "\n", "next\n"])
    assert texts(before) == [" 1%\n 2%\n 3%", "next"]
    assert final == []


def test_same_entry_whatever_the_write_boundaries() -> None:
    whole, _ = assemble(["first\rsecond\n"])
    split, _ = assemble(["first\rsecond", "\n"])
    assert texts(whole) == texts(split) == ["first\nsecond"]


def test_crlf_split_between_writes() -> None:
    before, _ = assemble(["abc\r", "\ndef\r", "\n"])
    assert texts(before) == ["abc", "def"]


def test_progress_bar_memory_stays_bounded() -> None:
    """A bar that never ends its line is emitted once it reaches MAX_PARTIAL_CHARS."""
    asm = LineAssembler()
    out: list[Line] = []
    update = "\rprogress 000000 " + "#" * 50
    for i in range(40_000):
        asm.feed(text(0, update, i, 1, None), out)
    assert len(out) == 40_000 * len(update) // MAX_PARTIAL_CHARS
    assert all(len(line[1]) >= MAX_PARTIAL_CHARS - len(update) for line in out)
    assert asm._partial[(0, 1)].size < MAX_PARTIAL_CHARS


# -- bounded memory ---------------------------------------------------------------------------


def test_endless_line_without_newline_is_emitted_at_the_limit() -> None:
    chunk = "x" * 65536
    count = MAX_PARTIAL_CHARS // len(chunk)
    asm = LineAssembler()
    out: list[Line] = []
    for i in range(count - 1):
        asm.feed(text(0, chunk, i, 1, None), out)
    assert out == []
    asm.feed(text(0, chunk, 999, 1, None), out)
    assert len(out) == 1
    assert len(out[0][1]) == MAX_PARTIAL_CHARS
    assert out[0][2] == 0
    assert (0, 1) not in asm._partial
    asm.feed(text(0, "rest\n", 1000, 1, None), out)
    assert [(line[1], line[2]) for line in out[1:]] == [("rest", 1000)]


def test_endless_bytes_line_is_emitted_at_the_limit() -> None:
    # Chunks of an odd size cut inside the two-byte characters.
    data = ("é" * (MAX_PARTIAL_CHARS + 5000)).encode()
    asm = LineAssembler()
    out: list[Line] = []
    for i, chunk in enumerate(cut(data, list(range(4097, len(data), 4097)))):
        asm.feed(text(1, chunk, i, 1, None), out)
    assert len(out) == 1
    assert MAX_PARTIAL_CHARS <= len(out[0][1]) < MAX_PARTIAL_CHARS + 4097
    assert set(out[0][1]) == {"é"}
    assert sum(p.size for p in asm._partial.values()) < MAX_PARTIAL_CHARS
    asm.flush(out, final=True)
    assert len(out) == 2
    assert "".join(texts(out)) == "é" * (MAX_PARTIAL_CHARS + 5000)


# -- tracebacks -------------------------------------------------------------------------------


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _simple() -> str:
    def inner() -> None:
        raise ValueError("boom")

    try:
        inner()
    except ValueError as exc:
        return _format(exc)
    raise AssertionError


def _during_handling() -> str:
    try:
        try:
            empty: dict[str, int] = {}
            empty["missing"]
        except KeyError:
            raise RuntimeError("while handling")
    except RuntimeError as exc:
        return _format(exc)
    raise AssertionError


def _direct_cause() -> str:
    try:
        try:
            int("nope")
        except ValueError as err:
            raise OSError("wrapped") from err
    except OSError as exc:
        return _format(exc)
    raise AssertionError


TRACEBACKS = {"simple": _simple, "during": _during_handling, "cause": _direct_cause}


def _line_chunks(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _char_chunks(text: str) -> list[str]:
    return list(text)


def _one_chunk(text: str) -> list[str]:
    return [text]


@pytest.mark.parametrize("make", TRACEBACKS.values(), ids=list(TRACEBACKS))
@pytest.mark.parametrize("split", [_one_chunk, _line_chunks, _char_chunks])
def test_traceback_is_one_error_line_and_the_next_line_is_separate(make: Any, split: Any) -> None:
    tb = make()
    assert tb.startswith("Traceback (most recent call last):")
    chunks = [*split("before\n"), *split(tb), *split("after the traceback\n")]
    before, final = assemble(chunks)
    assert [(line[1], line.level) for line in before] == [
        ("before", ""),
        (tb.rstrip("\n"), "ERROR"),
        ("after the traceback", ""),
    ]
    assert final == []
    tb_line = before[1]
    assert tb_line[2] == len(split("before\n"))  # the time of its first chunk


def test_chained_traceback_contains_both_markers() -> None:
    tb = _during_handling()
    assert "During handling of the above exception" in tb
    cause = _direct_cause()
    assert "The above exception was the direct cause" in cause
    before, _ = assemble([tb, "between\n", cause, "done\n"])
    assert [(line[1], line.level) for line in before] == [
        (tb.rstrip("\n"), "ERROR"),
        ("between", ""),
        (cause.rstrip("\n"), "ERROR"),
        ("done", ""),
    ]


def test_traceback_closed_after_chain_wait_with_no_more_writes() -> None:
    tb = _simple()
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(1, tb, 1_000, 1, None), out)
    assert out == []
    assert CHAIN_WAIT_NS == 50_000_000  # docs/design.md: closed 50 ms after its last line
    last = 1_000 + tb.count("\n") - 1  # its last line's time: a nanosecond a line
    asm.flush(out, final=False, now_ns=last + 10_000_000)
    assert out == []
    asm.flush(out, final=False, now_ns=last + CHAIN_WAIT_NS)
    assert out == []  # a chained traceback could still follow
    asm.flush(out, final=False, now_ns=last + CHAIN_WAIT_NS + 1)
    assert [(line[0], line[1], line[2], line.level) for line in out] == [
        (1, tb.rstrip("\n"), 1_000, "ERROR")
    ]


def test_unfinished_traceback_waits_then_is_emitted_when_stale() -> None:
    head = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(1, head, 5, 1, None), out)
    asm.flush(out, final=False, now_ns=6 + STALE_NS)  # its second line's time: 6
    assert out == []  # its exception line may still come
    asm.flush(out, final=False, now_ns=6 + STALE_NS + 1)
    assert [(line[1], line.level) for line in out] == [(head.rstrip("\n"), "ERROR")]


def test_chained_traceback_arriving_within_the_wait_joins() -> None:
    tb = _during_handling()
    first, marker, second = tb.partition("During handling")
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(1, first, 0, 1, None), out)
    asm.flush(out, final=False, now_ns=CHAIN_WAIT_NS // 2)
    asm.feed(text(1, marker + second, CHAIN_WAIT_NS // 2, 1, None), out)
    asm.flush(out, final=True)
    assert texts(out) == [tb.rstrip("\n")]


def test_traceback_drops_trailing_blank_lines_only() -> None:
    tb = _simple()
    before, _ = assemble([tb, "\n", "   \n", "next\n"])
    assert texts(before) == [tb.rstrip("\n"), "next"]


@pytest.mark.parametrize("newline", [True, False])
def test_a_line_and_its_traceback_written_before_their_newline_are_one_entry(
    newline: bool,
) -> None:
    # structlog prints a record's line and its traceback in one write, and "\n" in the next;
    # a write is passed on as soon as it holds a newline before its end, so the assembler
    # keeps this one for its newline (or ends it at the exit).
    written = 'failed\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: v'
    before, final = assemble([written, "\n", "next\n"] if newline else [written])
    made = before + final
    assert texts(made) == ([written, "next"] if newline else [written])
    assert made[0].level == "ERROR" and made[0].t_ns == 0  # the line's, its traceback's
    if newline:
        assert final == []


#: What structlog's console renderer writes for `log.exception()` when rich is installed: the
#: record's line and rich's traceback box, then its exception line, in one write.
BOXED = (
    "2026-12-07 22:15:04 [error    ] division failed                op=div\n"
    "\u256d\u2500\u2500 Traceback (most recent call last) \u2500\u2500\u256e\n"
    "\u2502 in <module>:4                         \u2502\n"
    "\u2570\u2500\u2500\u2500\u2500\u2500\u2500\u2500\u2500\u2500\u256f\n"
    "ZeroDivisionError: division by zero"
)


@pytest.mark.parametrize("chunks", [[BOXED, "\n"], [BOXED + "\n"]], ids=["then-newline", "at-once"])
def test_a_line_and_its_traceback_in_a_box_are_one_entry(chunks: list[str]) -> None:
    # Each line of the box was an INFO entry of its own, and no entry had exception.* (a
    # structlog program's every log.exception() once rich was installed).
    before, final = assemble([*chunks, "next\n"])
    assert texts(before + final) == [BOXED, "next"]
    assert before[0].level == "ERROR"
    lines = LineAssembler()
    assert lines.whole_lines([text(1, (BOXED + "\n").encode() * 2, 0, 0, None)]) is None


def test_tracebacks_of_two_threads_stay_apart() -> None:
    tb1, tb2 = _simple(), _direct_cause()
    asm = LineAssembler()
    out: list[Line] = []
    lines1, lines2 = _line_chunks(tb1), _line_chunks(tb2)
    t = 0
    for i in range(max(len(lines1), len(lines2))):
        for ident, lines in ((1, lines1), (2, lines2)):
            if i < len(lines):
                asm.feed(text(1, lines[i], t, ident, ({"thread": ident},)), out)
                t += 1
    asm.feed(text(1, "one\n", t, 1, ({"thread": 1},)), out)
    asm.feed(text(1, "two\n", t + 1, 2, ({"thread": 2},)), out)
    by_thread: dict[int, list[tuple[str, str]]] = {1: [], 2: []}
    for line in out:
        assert line.context is not None and isinstance(line.context[0], dict)
        by_thread[line.context[0]["thread"]].append((line[1], line.level))
    assert by_thread[1] == [(tb1.rstrip("\n"), "ERROR"), ("one", "")]
    assert by_thread[2] == [(tb2.rstrip("\n"), "ERROR"), ("two", "")]


def test_reset_forgets_everything() -> None:
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(0, "half", 1, 1, None), out)
    asm.feed(text(1, _simple(), 2, 1, None), out)
    asm.feed(text(0, b"\xe2\x82", 3, 2, None), out)
    asm.reset()
    asm.flush(out, final=True)
    assert out == []


def test_discard_forgets_the_beginning_of_a_shed_line() -> None:
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(0, "shed beginning", 1, 1, None), out)
    asm.discard(0, 1)
    asm.feed(text(0, "new\n", 2, 1, None), out)
    assert [(line[1], line[2]) for line in out] == [("new", 2)]


@PROPS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),
            st.sampled_from([1, 2]),
            st.one_of(
                st.text(st.sampled_from("ab \r\nT+E:"), max_size=12),
                st.sampled_from(
                    [
                        "Traceback (most recent call last):\n",
                        "-----BEGIN PRIVATE KEY-----\n",
                        "-----END PRIVATE KEY-----\n",
                        "  File x\n",
                        "E: boom\n",
                        "a.py:3: UserWarning: w\n",
                        "a.py:3: UserWarning: w\n  src()\n",
                        '{\n  "a": 1\n}\n',
                        "line\n",
                        "\n",
                        "  \n",
                        "end",
                        b"by\xc3",
                        b"\xa9\n",
                    ]
                ),
            ),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_feeding_many_writes_at_once_makes_the_same_lines_as_one_by_one(
    writes: list[tuple[int, int, Any]], pieces: bool
) -> None:
    """`pieces`: before Python's `warnings` module is loaded, or after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_lines, "warnings_in_pieces", lambda: pieces)
        by_one, by_many = feed_one_by_one_and_at_once(writes)
    assert by_many == by_one


def feed_one_by_one_and_at_once(writes: list[tuple[int, int, Any]]) -> tuple[list[Line], ...]:
    items = [text(kind, data, index, ident, None)
             for index, (kind, ident, data) in enumerate(writes) if data]  # fmt: skip
    one, many = LineAssembler(), LineAssembler()
    by_one: list[Line] = []
    by_many: list[Line] = []
    for item in items:
        one.feed(item, by_one)
    many.feed_many(items, by_many)
    for asm, out in ((one, by_one), (many, by_many)):
        asm.flush(out, final=True, now_ns=10**18)
    return by_one, by_many


# -- private keys -----------------------------------------------------------------------------

KEY_BODY = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
            "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
            "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ",
            "ag=="]  # fmt: skip


def pem(kind: str = "PRIVATE KEY", body: tuple[str, ...] = tuple(KEY_BODY)) -> str:
    return "\n".join([f"-----BEGIN {kind}-----", *body, f"-----END {kind}-----"]) + "\n"


@pytest.mark.parametrize("kind", ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY",
                                  "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY"])  # fmt: skip
@pytest.mark.parametrize("split", [_one_chunk, _line_chunks, _char_chunks])
def test_a_private_key_printed_as_lines_is_one_entry(kind: str, split: Any) -> None:
    """Its body, lines of base64 that nothing else tells apart from any text, goes with its
    header (where redaction finds it), not as lines of their own; what comes next is apart."""
    key = pem(kind)
    before, final = assemble([*split("before\n"), *split(key), *split("after the key\n")])
    assert [(line[1], line.level) for line in [*before, *final]] == [
        ("before", ""), (key.rstrip("\n"), ""), ("after the key", "")]  # fmt: skip


def test_a_private_key_in_a_write_after_a_line_and_indented_as_yaml_prints_it() -> None:
    indented = "".join(f"  {line}\n" for line in pem().splitlines())
    before, final = assemble(["tls:\n  key: |\n" + indented, "next: 1\n"])
    assert texts([*before, *final]) == ["tls:", "  key: |", indented.rstrip("\n"), "next: 1"]


def test_a_pgp_key_block_with_its_armor_headers_and_blank_line_is_one_entry() -> None:
    key = pem("PGP PRIVATE KEY BLOCK", ("Version: GnuPG v2", "Comment: test", "", *KEY_BODY,
                                        "=njUN"))  # fmt: skip
    before, final = assemble([key, "\n", "done\n"])
    assert texts([*before, *final]) == [key.rstrip("\n"), "done"]


@pytest.mark.parametrize(
    "stray",
    ["an error: bad key", "ERROR: key rejected", '{"k": 1}', "x = 1"],
)
def test_a_line_that_is_no_part_of_a_key_ends_it_and_goes_as_itself(stray: str) -> None:
    """A header with no key after it (a message quoting one, a key cut short) holds back no
    line of the program's: the first line that is not base64 (or an armor header before the
    body) goes as its own entry."""
    head = "-----BEGIN PRIVATE KEY-----\n" + KEY_BODY[0] + "\n"
    before, final = assemble([head, stray + "\n", "later\n"])
    got = texts([*before, *final])
    assert got[0] == head.rstrip("\n") and got[-1] == "later"
    assert stray in got[1]


def test_a_key_that_never_ends_is_emitted_when_stale_or_bounded() -> None:
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(1, "-----BEGIN PRIVATE KEY-----\n" + KEY_BODY[0] + "\n", 5, 1, None), out)
    asm.flush(out, final=False, now_ns=6 + STALE_NS)  # its second line's time: 6
    assert out == []
    asm.flush(out, final=False, now_ns=6 + STALE_NS + 1)
    assert len(out) == 1 and out[0][1].endswith(KEY_BODY[0])
    out.clear()
    asm.feed(text(1, "-----BEGIN PRIVATE KEY-----\n", 6, 1, None), out)
    asm.feed(text(1, (KEY_BODY[1] + "\n") * (MAX_KEY_LINES + 10), 7, 1, None), out)
    asm.flush(out, final=True)
    # A bounded entry; past it, lines as they come (no key is that long: see MAX_KEY_LINES).
    assert out[0][1].count("\n") == MAX_KEY_LINES - 1
    assert texts(out[1:]) == [KEY_BODY[1]] * 11


def test_a_key_closed_by_its_end_line_is_emitted_after_the_wait_without_more_writes() -> None:
    asm = LineAssembler()
    out: list[Line] = []
    asm.feed(text(1, pem(), 1_000, 1, None), out)
    asm.flush(out, final=False, now_ns=1_000 + pem().count("\n") - 1 + CHAIN_WAIT_NS + 1)
    assert texts(out) == [pem().rstrip("\n")]
    assert asm.held() == 0


def test_what_only_names_a_key_is_no_key() -> None:
    """A certificate is no secret; a header quoted in a message, then short lines that only
    look like base64 (`Done`, `200`), is no key: each line goes as itself, none held back."""
    writes = ["-----BEGIN CERTIFICATE-----\n", "MIIBszCCAVmgAwIBAgIU\n", "after\n",
              "see -----BEGIN PRIVATE KEY-----\n", "Done\n", "200\n", "Retrying\n",
              "next: line\n", "-----BEGIN PRIVATE KEY-----\n", "Done\n", "the end.\n"]  # fmt: skip
    for split in (_one_chunk, _line_chunks):
        before, final = assemble([piece for write in writes for piece in split(write)])
        assert texts([*before, *final]) == [write.rstrip("\n") for write in writes]


@pytest.mark.parametrize(
    "head",
    ["loaded key: ", "PRIVATE_KEY=", "\x1b[33m", "\ufeff", "\t"],
)  # fmt: skip
def test_a_key_whose_header_follows_other_text_on_its_line_is_one_entry(head: str) -> None:
    """`print("loaded key: " + pem)`, `env`'s `PRIVATE_KEY=-----BEGIN...`, a coloured key, a
    file with a byte-order mark, a tab's indent."""
    key = head + pem("RSA PRIVATE KEY")
    for split in (_one_chunk, _line_chunks):
        before, final = assemble(["before\n", *split(key), "after\n"])
        assert texts([*before, *final]) == ["before", key.rstrip("\n"), "after"]


def test_a_key_cut_short_is_one_entry_when_its_lines_are_a_keys() -> None:
    """No end line (a program killed mid-print): still one entry once a line of base64 is as
    long as a key's, which redaction masks to its end."""
    head = "-----BEGIN PRIVATE KEY-----\n" + KEY_BODY[0] + "\n" + KEY_BODY[1] + "\n"
    for flushed in ({"final": True}, {"final": False, "now_ns": 2 + STALE_NS + 1}):
        asm = LineAssembler()
        out: list[Line] = []
        asm.feed(text(0, head, 0, 1, None), out)
        asm.flush(out, **flushed)
        assert texts(out) == [head.rstrip("\n")]


# -- times -------------------------------------------------------------------------------------


def test_the_lines_of_one_write_are_a_nanosecond_apart_in_their_order() -> None:
    """The server keeps no order among entries of one time: a DataFrame printed in one write
    came back from `sort by (_time)` with its header after its rows. Each line of a write is
    now a nanosecond after the line before it (a write of n lines takes far longer than n ns,
    so the next write's lines still come after)."""
    assert feed_writes([(1, "a\nb\n\nd\ne"), (1, "\n")]) == [
        ("a", 0), ("b", 1), ("d", 3), ("e", 4)]  # fmt: skip
    # A line begun by an earlier write keeps that write's time; the ones after it follow this
    # write's.
    asm, out = LineAssembler(), []  # type: ignore[var-annotated]
    asm.feed(text(1, "x", 100, 1, None), out)
    asm.feed(text(1, "y\nz\nw\n", 200, 1, None), out)
    assert [(line[1], line[2]) for line in out] == [("xy", 100), ("z", 201), ("w", 202)]


def test_the_lines_of_one_chunk_of_bytes_are_a_nanosecond_apart_in_their_order() -> None:
    """The fd helper's chunks hold many lines each, read at one time: 50,500 lines were stored
    at 458 times, and came back out of order."""
    chunks = [b"".join(b"c%d l%d\n" % (c, n) for n in range(MIN_RUN)) for c in range(2)]
    captures = [text(0, chunk, 1000 * (c + 1), 0, None) for c, chunk in enumerate(chunks)]
    run = LineAssembler().whole_lines(captures)
    assert run is not None
    assert run.times == [1000 + n for n in range(MIN_RUN)] + [2000 + n for n in range(MIN_RUN)]
    out: list[Line] = []
    LineAssembler().feed_many(captures, out)
    assert [line[2] for line in out] == run.times


# -- Python's warnings ------------------------------------------------------------------------

WARNING_HEAD = "/app/job.py:7: DeprecationWarning: old() is deprecated, use new()"


def feed_writes(writes: list[tuple[int, str]]) -> list[tuple[str, int]]:
    """Feed (thread, write) pairs on stderr, t_ns = their index; every line out, with its time,
    after a final flush."""
    asm, out = LineAssembler(), []  # type: ignore[var-annotated]
    for index, (ident, data) in enumerate(writes):
        asm.feed(text(1, data, index, ident, None), out)
    asm.flush(out, final=True, now_ns=10**18)
    return [(line[1], line[2]) for line in out]


@pytest.mark.parametrize("pieces", [False, True])
def test_a_warning_written_at_once_is_one_entry_with_its_source_line(
    pieces: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's `warnings` module writes a warning, its source line and a ResourceWarning's
    allocation frames in one write; the lines after them in that write are their own."""
    monkeypatch.setattr(_lines, "warnings_in_pieces", lambda: pieces)
    source = f"{WARNING_HEAD}\n  old()"
    resource = (
        "/app/job.py:9: ResourceWarning: unclosed file <_io.TextIOWrapper name='x'>\n"
        "  f = None\n"
        "Object allocated at (most recent call last):\n"
        '  File "/app/job.py", lineno 8\n'
        "    f = open('x')"
    )
    hint = (
        "/app/job.py:9: ResourceWarning: unclosed file <_io.TextIOWrapper name='x'>\n"
        "ResourceWarning: Enable tracemalloc to get the object allocation traceback"
    )
    assert feed_writes([(1, source + "\n")]) == [(source, 0)]
    assert feed_writes([(1, resource + "\n")]) == [(resource, 0)]
    assert feed_writes([(1, hint + "\n")]) == [(hint, 0)]
    assert feed_writes([(1, source + "\nnext line\n  indented\n")]) == [
        (source, 0), ("next line", 2), ("  indented", 3)]  # fmt: skip
    # A message of several lines: they come between the first line and the source line. Before,
    # each was an INFO entry of its own, and the source line another (pandas' SettingWithCopy).
    several = f"{WARNING_HEAD}\nsecond line\n\nfourth line\n  old()"
    assert feed_writes([(1, several + "\nnext\n")]) == [(several, 0), ("next", 5)]
    # Without a source line the lines after the first are not known to be the message's.
    assert feed_writes([(1, f"{WARNING_HEAD}\nsecond line\n")]) == [
        (WARNING_HEAD, 0), ("second line", 1)]  # fmt: skip
    # Begun by an unfinished line, the write is not one warning's; the line it ends names one,
    # so while warnings come in pieces the source line after it is still taken for its own.
    after_partial = feed_writes([(1, "x "), (1, source + "\n")])
    if pieces:
        assert after_partial == [(f"x {WARNING_HEAD}\n  old()", 0)]
    else:
        assert after_partial == [(f"x {WARNING_HEAD}", 0), ("  old()", 2)]


def test_warnings_anywhere_in_a_read_are_one_entry_each() -> None:
    """Under fd capture the helper reads many writes at once: a warning may begin at any line
    of what it reads, and a read of whole lines holding one is left to feed."""
    first = "/app/a.py:1: UserWarning: one\n  src1()"
    second = "/app/a.py:2: DeprecationWarning: two\nof two lines\n  src2()"
    read = f"line a\n{first}\nline b\n{second}\nline c\n"
    assert feed_writes([(1, read)]) == [
        ("line a", 0), (first, 1), ("line b", 3), (second, 4), ("line c", 7)]  # fmt: skip
    chunk = (read * 2).encode()
    assert LineAssembler().whole_lines([text(1, chunk, 0, 0, None)]) is None


def test_a_warning_printed_in_pieces_is_one_entry_with_its_source_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the `warnings` module is loaded the interpreter writes a warning piece by piece,
    its source line apart; the tee hands on each line whole, or the pieces themselves."""
    monkeypatch.setattr(_lines, "warnings_in_pieces", lambda: True)
    path = WARNING_HEAD.split(":", 1)[0]
    pieces = [path, ":7: ", "DeprecationWarning", ": ", "old() is deprecated, use new()", "\n",
              "  ", "old()", "\n"]  # fmt: skip
    joined = (f"{WARNING_HEAD}\n  old()", 0)
    assert feed_writes([(1, piece) for piece in pieces]) == [joined]
    assert feed_writes([(1, WARNING_HEAD + "\n"), (1, "  old()\n"), (1, "  more\n")]) == [
        joined, ("  more", 2)]  # fmt: skip
    # No source line (code given as text): the first line alone, when the next line comes.
    assert feed_writes([(1, WARNING_HEAD + "\n"), (1, "next\n")]) == [
        (WARNING_HEAD, 0), ("next", 1)]  # fmt: skip
    # Another thread's indented line is not its source line.
    assert feed_writes([(1, WARNING_HEAD + "\n"), (2, "  other\n"), (1, "mine\n")]) == [
        ("  other", 1), (WARNING_HEAD, 0), ("mine", 2)]  # fmt: skip
    asm, out = LineAssembler(), []  # type: ignore[var-annotated]
    asm.feed(text(1, WARNING_HEAD + "\n", 0, 1, None), out)
    assert out == [] and asm.held() == 1
    asm.flush(out, final=False, now_ns=CHAIN_WAIT_NS + 1)  # no source line came: it goes
    assert [line[1] for line in out] == [WARNING_HEAD]


def test_once_the_warnings_module_is_loaded_two_writes_are_two_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module writes a warning at once: a warning's first line written by itself has no
    source line to wait for, and an indented line after it is the program's."""
    monkeypatch.setattr(_lines, "warnings_in_pieces", lambda: False)
    assert feed_writes([(1, WARNING_HEAD + "\n"), (1, "  old()\n")]) == [
        (WARNING_HEAD, 0), ("  old()", 1)]  # fmt: skip


@pytest.mark.parametrize("pieces", [False, True])
def test_a_run_of_whole_lines_steps_aside_for_a_warning_only_while_it_may_come_in_pieces(
    pieces: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_lines, "warnings_in_pieces", lambda: pieces)
    writes = [f"line {n}\n" for n in range(8)] + [WARNING_HEAD + "\n", "  old()\n"]
    captures = [text(1, data, index, 1, None) for index, data in enumerate(writes)]
    run = LineAssembler().whole_lines(captures)
    assert (run is None) is pieces
    out: list[Line] = []
    LineAssembler().feed_many(captures, out)
    made = [line[1] for line in out]
    assert made[8:] == ([f"{WARNING_HEAD}\n  old()"] if pieces else [WARNING_HEAD, "  old()"])


# -- JSON objects printed over several lines ----------------------------------------------------

PRETTY = '{\n  "message": "pretty",\n  "level": "error",\n  "user": {\n    "id": 7\n  }\n}'


def test_a_json_object_printed_over_several_lines_at_once_is_one_line() -> None:
    """`print(json.dumps(obj, indent=2))`: one write, one entry, as the object printed on one
    line would be (the entry builder then keeps its keys)."""
    assert feed_writes([(1, PRETTY + "\n")]) == [(PRETTY, 0)]
    assert feed_writes([(1, PRETTY.replace("\n", "\r\n") + "\r\n")]) == [
        (PRETTY.replace("\n", "\r\n"), 0)]  # fmt: skip
    assert feed_writes([(1, PRETTY + "\n"), (1, "after\n")]) == [(PRETTY, 0), ("after", 1)]


@pytest.mark.parametrize(
    "writes",
    [
        ["{'k0': 'v',\n 'k1': 'v'}\n"],  # pprint's: a dict's text, not JSON
        ["[\n  1,\n  2\n]\n"],  # an array
        ['{\n  "a": 1\n}\nafter\n'],  # more than the object in the write
        ['{\n  "a": 1,\n'],  # not the whole object
        ["x ", '{\n  "a": 1\n}\n'],  # the write ends a line begun before
        ["{\n", '  "a": 1\n', "}\n"],  # json.dump to the stream: a write per line
        ['{\n  "a": "' + "x" * 16384 + '"\n}\n'],  # larger than one value may be
    ],
)
def test_what_is_not_one_json_object_written_at_once_goes_line_by_line(writes: list[str]) -> None:
    lines = "".join(writes).split("\n")
    expected = [line for line in lines if line.strip()]
    assert [text for text, _ in feed_writes([(1, w) for w in writes])] == expected
