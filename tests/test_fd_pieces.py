"""The pieces of fd capture on their own: the wire, the notes, the suppression watch."""

from __future__ import annotations

import io
from typing import Any

from vlhook._fd_peers import MAX_NOTES, Notes
from vlhook._fd_streams import FdStream, Noter, Watched
from vlhook._fd_wire import (
    FLUSH,
    FLUSH_BODY,
    NOTE,
    NOTE_ITEM,
    SKIP,
    STDERR,
    Frames,
    format_marker,
    frame,
    line_key,
    parse_marker,
)


def test_frames_arrive_in_any_pieces() -> None:
    stream = frame(NOTE, NOTE_ITEM.pack(0, SKIP, 3, 7)) + frame(FLUSH, FLUSH_BODY.pack(9, 250, 1))
    for cut in range(len(stream) + 1):
        frames = Frames()
        got = (frames.feed(stream[:cut]) or []) + (frames.feed(stream[cut:]) or [])
        assert got == [(NOTE, NOTE_ITEM.pack(0, SKIP, 3, 7)), (FLUSH, FLUSH_BODY.pack(9, 250, 1))]


def test_a_stream_that_is_not_ours_is_refused() -> None:
    assert Frames().feed(b"GET / HTTP/1.1\r\n\r\n") is None


def test_marker_round_trip_and_bad_items_ignored() -> None:
    captured = {(15, 301): (b"\0vlhook-fd-7-ab", b"t0k3n", 0),
                (15, 302): (b"\0vlhook-fd-7-ab", b"t0k3n", 1)}  # fmt: skip
    text = format_marker(captured)
    assert parse_marker(text) == captured
    assert parse_marker(f"garbage;1:2;x:1:0:a:b;1:2:3:a:;;{text}") == captured
    assert parse_marker("") == {}


def test_notes_are_used_up_one_by_one() -> None:
    notes = Notes()
    for action, line in ((SKIP, b"INFO:x:hello"), (SKIP, b"INFO:x:hello"), (STDERR, b"warn")):
        notes.add(action, *line_key(line))
    assert [notes.match(b"INFO:x:hello") for _ in range(3)] == [SKIP, SKIP, None]
    assert (notes.match(b"warn"), notes.match(b"warn"), notes.counts) == (STDERR, None, {})


def test_notes_never_matched_are_forgotten_past_the_cap() -> None:
    notes = Notes()
    for n in range(MAX_NOTES + 5):
        notes.add(SKIP, *line_key(b"%d" % n))
    assert notes.total == 5 and notes.match(b"0") is None


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True


def noted(link: FakeLink) -> list[tuple[int, int, int, int]]:
    out = []
    for data in link.sent:
        (_, body), *_ = Frames().feed(data) or []
        out += [NOTE_ITEM.unpack_from(body, i) for i in range(0, len(body), NOTE_ITEM.size)]
    return out


def test_the_stream_notes_only_while_some_thread_is_suppressed() -> None:
    from _thread import get_ident

    from vlhook import _capture_streams

    target = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    link = FakeLink()
    stream = FdStream(target, 0, Noter(target, link, 1, label=False))  # type: ignore[arg-type]
    saved = _capture_streams.suppressed
    watched = Watched({}, stream.noting, lambda ident: stream._vl_noter.ended(ident))
    _capture_streams.suppressed = watched
    try:
        assert stream.write == target.write  # the C method itself: print() at bare speed
        printed: list[str] = []
        watched[get_ident()] = printed
        assert stream.write != target.write
        stream.write("INFO:a:one\npart")
        stream.write("ial\n")
        stream.write('{"k": 1}\n')  # what may be merged into the record: only a "{" write
        watched.pop(get_ident(), None)
        assert stream.write == target.write
        stream.write("not noted\n")
    finally:
        _capture_streams.suppressed = saved
    assert printed == ['{"k": 1}\n']
    assert noted(link) == [(1, SKIP, *line_key(b"INFO:a:one")), (1, SKIP, *line_key(b"partial")),
                           (1, SKIP, *line_key(b'{"k": 1}'))]  # fmt: skip
    assert target.buffer.getvalue() == b'INFO:a:one\npartial\n{"k": 1}\nnot noted\n'


def test_stderr_sharing_a_channel_labels_its_lines() -> None:
    target: Any = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    link = FakeLink()
    stream = FdStream(target, 1, Noter(target, link, 0, label=True))  # type: ignore[arg-type]
    stream.write("caf\u00e9 warning\n")
    stream.write("no end yet")
    assert noted(link) == [(0, STDERR, *line_key("caf\u00e9 warning".encode()))]


def test_the_marker_spelled_at_activation_is_the_wire_s() -> None:
    from vlhook._activation import FD_MARKER
    from vlhook._fd_wire import MARKER

    assert FD_MARKER == MARKER
