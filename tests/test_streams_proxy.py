"""In-process tests of the stream tee (`vlhook._capture_streams.StreamTee` / `BinaryTee`):
the program sees its own stream, byte for byte, and every write is also handed to `_put`.

The tee is never installed on the real sys.stdout/sys.stderr here: it wraps private streams.
"""

from __future__ import annotations

import io
import os
import threading
import time
import types
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vlhook import _capture_streams, _context
from vlhook._capture_streams import BinaryTee, StreamTee, is_tee, original
from vlhook._captures import STDERR, STDOUT, Text

Captured = list[Text]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """What the tee hands on: `_put` set to a list's append for the test, restored after."""
    items: Captured = []
    saved_put = _capture_streams._put
    saved_suppressed = dict(_capture_streams.suppressed)
    _capture_streams.suppressed.clear()
    _capture_streams._put = items.append
    try:
        yield items
    finally:
        _capture_streams._put = saved_put
        _capture_streams.suppressed.clear()
        _capture_streams.suppressed.update(saved_suppressed)


def wrapper(**kw: Any) -> tuple[io.BytesIO, io.TextIOWrapper]:
    raw = io.BytesIO()
    kw.setdefault("encoding", "utf-8")
    kw.setdefault("newline", "\n")
    return raw, io.TextIOWrapper(raw, **kw)


def pair(**kw: Any) -> tuple[io.BytesIO, io.TextIOWrapper, io.BytesIO, io.TextIOWrapper]:
    """Two identical wrappers: one used directly, one through a tee."""
    raw_a, plain = wrapper(**kw)
    raw_b, teed = wrapper(**kw)
    return raw_a, plain, raw_b, teed


def data(items: Captured) -> list[Any]:
    return [item[1] for item in items]


# -- pass-through -----------------------------------------------------------------------------

WRITES: list[Any] = [
    ("write", "héllo wörld 😀\n"),
    ("write", "no newline"),
    ("write", ""),
    ("write", "\r\n tabs\t and \x1b[31mcolour\x1b[0m\n"),
    ("writelines", ["a\n", "", "b", "c\n"]),
    ("writelines", iter(["gen1\n", "gen2\n"])),
    ("buffer", b"\xff\xfe raw bytes \xe2\x82\xac\n"),
    ("buffer", bytearray(b"bytearray\n")),
    ("buffer", memoryview(b"memoryview\n")),
    ("buffer_lines", [b"x", bytearray(b"y"), b"\n"]),
]


def apply(stream: Any, op: str, arg: Any) -> Any:
    if op == "write":
        return stream.write(arg)
    if op == "writelines":
        return stream.writelines(arg)
    stream.flush()  # as a program mixing text and bytes must
    if op == "buffer":
        return stream.buffer.write(arg)
    return stream.buffer.writelines(arg)


def test_writes_pass_through_byte_identical(captured: Captured) -> None:
    raw_a, plain, raw_b, teed_target = pair()
    tee = StreamTee(teed_target, STDOUT)
    results_plain = []
    results_tee = []
    for op, arg in WRITES:
        if op == "writelines" and not isinstance(arg, list):
            results_plain.append(apply(plain, op, iter(["gen1\n", "gen2\n"])))
            results_tee.append(apply(tee, op, iter(["gen1\n", "gen2\n"])))
        else:
            results_plain.append(apply(plain, op, arg))
            results_tee.append(apply(tee, op, arg))
    plain.flush()
    tee.flush()
    assert raw_b.getvalue() == raw_a.getvalue()
    assert raw_b.getvalue().startswith("héllo wörld 😀\n".encode())
    assert results_tee == results_plain


def test_captured_items_are_the_writes_in_order(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDERR)
    before = time.time_ns()
    for op, arg in WRITES:
        apply(tee, op, arg)
    after = time.time_ns()
    assert data(captured) == [
        "héllo wörld 😀\n",
        # an unfinished write is held and joined with the next one when that one at most ends
        # it; one that ends it and writes more (a line of its own here) is captured apart
        "no newline",
        "\r\n tabs\t and \x1b[31mcolour\x1b[0m\n",
        "a\n",
        "bc\n",
        "gen1\n",
        "gen2\n",
        b"\xff\xfe raw bytes \xe2\x82\xac\n",
        b"bytearray\n",
        b"memoryview\n",
        b"x",
        b"y",
        b"\n",
    ]
    ident = threading.get_ident()
    for kind, chunk, t_ns, thread, context in captured:
        assert kind == STDERR
        assert type(chunk) in (str, bytes)
        assert before <= t_ns <= after
        assert thread == ident
        assert context is None
    times = [item[2] for item in captured]
    assert times == sorted(times)


def test_str_subclass_is_captured_as_plain_str(captured: Captured) -> None:
    class Message(str):
        pass

    raw, target = wrapper()
    tee = StreamTee(target, STDOUT)
    assert tee.write(Message("sub\n")) == 4
    tee.writelines([Message("l1\n")])
    tee.flush()
    assert raw.getvalue() == b"sub\nl1\n"
    assert data(captured) == ["sub\n", "l1\n"]
    assert all(type(chunk) is str for chunk in data(captured))


def test_context_is_captured_with_each_write(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    saved = _context.invocation
    token = _context._variable().set({"user": "u1"})
    try:
        _context.set_invocation({"request_id": "r-1"})
        tee.write("in invocation\n")
    finally:
        _context.set_invocation(saved)
        _context._variable().reset(token)
    tee.write("after\n")
    assert [(i.data, i.context) for i in captured] == [
        ("in invocation\n", ({"request_id": "r-1"}, {"user": "u1"})),
        ("after\n", None if saved is None else (saved, None)),
    ]


def test_writes_from_another_thread_carry_its_ident(captured: Captured) -> None:
    _, target = wrapper(line_buffering=False)
    tee = StreamTee(target, STDOUT)
    idents: list[int] = []

    def work() -> None:
        idents.append(threading.get_ident())
        tee.write("from thread\n")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(5)
    tee.write("from main\n")
    assert [(i[1], i[3]) for i in captured] == [
        ("from thread\n", idents[0]),
        ("from main\n", threading.get_ident()),
    ]


def test_suppressed_thread_is_not_captured_but_collected(captured: Captured) -> None:
    raw, target = wrapper()
    tee = StreamTee(target, STDOUT)
    collected: list[str] = []
    ident = threading.get_ident()
    _capture_streams.suppressed[ident] = collected
    tee.write('{"json": 1}\n')
    tee.flush()
    tee.buffer.write(b"bytes while suppressed\n")
    _capture_streams.suppressed[ident] = None
    tee.write("skipped\n")
    del _capture_streams.suppressed[ident]
    tee.write("captured again\n")
    tee.flush()
    assert collected == ['{"json": 1}\n']
    assert data(captured) == ["captured again\n"]
    assert raw.getvalue() == (b'{"json": 1}\nbytes while suppressed\nskipped\ncaptured again\n')


def test_nothing_captured_without_put() -> None:
    saved = _capture_streams._put
    _capture_streams._put = None
    try:
        raw, target = wrapper()
        tee = StreamTee(target, STDOUT)
        assert tee.write("x\n") == 2
        tee.flush()
        assert raw.getvalue() == b"x\n"
    finally:
        _capture_streams._put = saved


# -- the tee is the stream, as far as the program can tell ------------------------------------


def test_isinstance_and_class(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    assert isinstance(tee, io.TextIOWrapper)
    assert isinstance(tee, io.TextIOBase)
    assert isinstance(tee, io.IOBase)
    assert tee.__class__ is io.TextIOWrapper
    assert is_tee(tee)
    assert not is_tee(target)
    assert original(tee) is target
    assert original(target) is target
    assert type(tee.buffer) is BinaryTee
    assert isinstance(tee.buffer, io.BytesIO)
    assert original(tee.buffer) is target.buffer


def test_repr_equals_the_original(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    assert repr(tee) == repr(target)
    assert repr(tee.buffer) == repr(target.buffer)


def test_attributes_are_the_originals(captured: Captured) -> None:
    _, target = wrapper(encoding="latin-1", errors="backslashreplace", line_buffering=True)
    tee = StreamTee(target, STDOUT)
    assert tee.encoding == "latin-1"
    assert tee.errors == "backslashreplace"
    assert tee.line_buffering is True
    assert tee.write_through is False
    assert tee.isatty() is False
    assert tee.writable() is True
    assert tee.readable() is True
    assert tee.closed is False
    with pytest.raises(io.UnsupportedOperation) as on_tee:
        tee.fileno()
    with pytest.raises(io.UnsupportedOperation) as on_original:
        target.fileno()
    assert str(on_tee.value) == str(on_original.value)
    with pytest.raises(AttributeError):
        tee.no_such_attribute


def test_errors_mode_of_the_original_applies(captured: Captured) -> None:
    raw, target = wrapper(encoding="ascii", errors="backslashreplace")
    tee = StreamTee(target, STDOUT)
    tee.write("café\n")
    tee.flush()
    assert raw.getvalue() == b"caf\\xe9\n"
    assert data(captured) == ["café\n"]


def test_reconfigure_acts_on_the_original(captured: Captured) -> None:
    raw, target = wrapper()
    tee = StreamTee(target, STDOUT)
    tee.reconfigure(line_buffering=True, errors="replace")
    assert target.line_buffering is True
    assert target.errors == "replace"
    assert tee.line_buffering is True
    tee.write("line\n")  # line buffering: flushed to the bytes without an explicit flush
    assert raw.getvalue() == b"line\n"


def test_setting_an_attribute_sets_it_on_the_original(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    tee.custom_marker = 42
    assert target.custom_marker == 42  # type: ignore[attr-defined]


def test_real_file_fileno_name_mode_isatty(captured: Captured, tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with open(path, "w", encoding="utf-8") as target:
        tee = StreamTee(target, STDOUT)
        assert tee.fileno() == target.fileno()
        assert tee.name == str(path)
        assert tee.mode == "w"
        assert tee.isatty() is os.isatty(target.fileno())
        tee.write("to the file\n")
        tee.buffer.write(b"")  # nothing: not captured
        tee.flush()
        os.write(tee.fileno(), b"via fd\n")
    assert path.read_bytes() == b"to the file\nvia fd\n"
    assert data(captured) == ["to the file\n"]


def test_weakref_to_tee_and_buffer(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    ref = weakref.ref(tee)
    assert ref() is tee
    buffer_ref = weakref.ref(tee.buffer)
    assert buffer_ref() is tee.buffer
    finalized: list[bool] = []
    weakref.finalize(tee, finalized.append, True)
    del tee
    assert ref() is None
    assert finalized == [True]


def test_buffer_tee_is_cached_and_follows_a_new_buffer(captured: Captured) -> None:
    first_raw = io.BytesIO()
    target = types.SimpleNamespace(buffer=first_raw)
    tee = StreamTee(target, STDOUT)
    first = tee.buffer
    assert tee.buffer is first
    assert original(first) is first_raw
    second_raw = io.BytesIO()
    target.buffer = second_raw
    second = tee.buffer
    assert second is not first
    assert original(second) is second_raw
    second.write(b"to the new buffer")
    assert second_raw.getvalue() == b"to the new buffer"
    assert first_raw.getvalue() == b""
    assert data(captured) == [b"to the new buffer"]


def test_with_statement_returns_the_tee_and_closes_the_original(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    with tee as entered:
        assert entered is tee
        entered.write("inside\n")
    assert target.closed
    assert tee.closed
    with pytest.raises(ValueError) as on_tee:
        tee.write("after close\n")
    assert data(captured) == ["inside\n"]
    _, closed = wrapper()
    closed.close()
    with pytest.raises(ValueError) as on_original:
        closed.write("after close\n")
    assert str(on_tee.value) == str(on_original.value)


@pytest.mark.parametrize("value", [5, None, b"bytes", 3.5, ["list"]])
def test_write_of_a_non_str_raises_the_same_type_error(captured: Captured, value: Any) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    _, plain = wrapper()
    with pytest.raises(TypeError) as on_tee:
        tee.write(value)
    with pytest.raises(TypeError) as on_original:
        plain.write(value)
    assert str(on_tee.value) == str(on_original.value)
    assert captured == []


def test_writelines_of_non_str_raises_the_same_type_error(captured: Captured) -> None:
    _, target = wrapper()
    tee = StreamTee(target, STDOUT)
    _, plain = wrapper()
    lines: list[Any] = ["ok\n", 5]
    with pytest.raises(TypeError) as on_tee:
        tee.writelines(lines)
    with pytest.raises(TypeError) as on_original:
        plain.writelines(lines)
    assert str(on_tee.value) == str(on_original.value)


def test_stream_without_buffer_raises_attribute_error_as_the_original(captured: Captured) -> None:
    target = io.StringIO()
    tee = StreamTee(target, STDOUT)
    with pytest.raises(AttributeError):
        tee.buffer
    assert tee.write("into StringIO\n") == 14
    assert target.getvalue() == "into StringIO\n"
    assert tee.getvalue() == "into StringIO\n"
    assert isinstance(tee, io.StringIO)
    assert data(captured) == ["into StringIO\n"]


def test_iteration_delegates(captured: Captured) -> None:
    target = io.StringIO("one\ntwo\n")
    tee = StreamTee(target, STDOUT)
    assert next(tee) == "one\n"
    assert list(tee) == ["two\n"]


@pytest.mark.parametrize("value", [3, "text", ["l"], None])
def test_buffer_write_of_a_non_bytes_value_raises_and_captures_nothing(
    captured: Captured, value: Any
) -> None:
    from vlhook import _diag

    before = len(_diag.internal_errors)
    raw, target = wrapper()
    tee = StreamTee(target, STDOUT)
    with pytest.raises(TypeError) as on_tee:
        tee.buffer.write(value)
    with pytest.raises(TypeError) as on_original:
        io.BytesIO().write(value)
    assert str(on_tee.value) == str(on_original.value)
    assert raw.getvalue() == b""
    assert captured == []
    assert _diag.internal_errors[before:] == []


def test_a_write_that_fails_is_not_captured(captured: Captured) -> None:
    raw, target = wrapper(encoding="ascii", errors="strict")
    tee = StreamTee(target, STDOUT)
    tee.write("ok\n")
    with pytest.raises(UnicodeEncodeError):
        tee.write("caf\u00e9\n")
    tee.flush()
    assert raw.getvalue() == b"ok\n"
    assert data(captured) == ["ok\n"]


def test_binary_tee_write_returns_the_originals_result(captured: Captured) -> None:
    raw = io.BytesIO()
    tee = BinaryTee(raw, STDOUT)
    assert tee.write(b"abc") == 3
    assert tee.writelines([b"d", b"ef"]) is None
    assert raw.getvalue() == b"abcdef"
    assert data(captured) == [b"abc", b"d", b"ef"]
    assert isinstance(tee, io.BytesIO)
    assert repr(tee) == repr(raw)


def test_tee_stands_in_through_install_and_uninstall_of_fake_sys(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`install` on a fake pair of streams (monkeypatched into sys for the test only)."""
    import sys

    raw_out, out = wrapper()
    raw_err, err = wrapper()
    saved_put = _capture_streams._put
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "__stdout__", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "__stderr__", err)
    items: Captured = []
    try:
        _capture_streams.install(items.append, [STDOUT, STDERR])
        assert is_tee(sys.stdout) and is_tee(sys.stderr)
        assert sys.__stdout__ is sys.stdout
        assert original(sys.stdout) is out
        _capture_streams.install(items.append, [STDOUT])  # twice: no tee of a tee
        assert original(sys.stdout) is out
        assert sys.stdout is not None and sys.stderr is not None
        sys.stdout.write("o\n")
        sys.stderr.write("e\n")
        _capture_streams.uninstall()
        assert sys.stdout is out and sys.__stdout__ is out
        assert sys.stderr is err and sys.__stderr__ is err
        assert _capture_streams._put is None
    finally:
        _capture_streams._put = saved_put
    out.flush()
    err.flush()
    assert raw_out.getvalue() == b"o\n"
    assert raw_err.getvalue() == b"e\n"
    assert [(i[0], i[1]) for i in items] == [(STDOUT, "o\n"), (STDERR, "e\n")]


# -- str subclasses an integration knows (loguru's Message) -----------------------------------


class Rich(str):
    """Stands in for loguru's Message (the text of a record)."""


def test_a_known_str_subclass_becomes_its_richer_capture(captured: Captured) -> None:
    records: list[tuple[Any, int]] = []
    made = {"first": ("capture of first", 40), "again": _capture_streams.NOTHING}

    def make(text: Any) -> Any:
        return made.get(str.__str__(text))  # None: an unknown text stays text

    saved = _capture_streams._put_record
    _capture_streams._put_record = lambda item, level: records.append((item, level))
    _capture_streams.richer[Rich] = make
    raw, out = wrapper()
    tee = StreamTee(out, STDOUT)
    try:
        tee.write("held ")  # the start of a line: handed on before the record
        tee.write(Rich("first"))
        tee.write(Rich("again"))  # the same record at a second sink: nothing more
        tee.write(Rich("other\n"))
        _capture_streams.suppressed[threading.get_ident()] = []
        tee.write(Rich("first"))  # while a logging record is handled: not captured as text,
        tee.write(Rich('{"k": 1}'))  # and collected if it may be an object to merge into it
        texts = _capture_streams.suppressed.pop(threading.get_ident())
    finally:
        del _capture_streams.richer[Rich]
        _capture_streams._put_record = saved
    out.flush()
    assert raw.getvalue() == b'held firstagainother\nfirst{"k": 1}'  # the output, unchanged
    assert data(captured) == ["held ", "other\n"]
    assert records == [("capture of first", 40)]
    assert texts == ['{"k": 1}']
