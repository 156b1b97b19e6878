"""sys.stdout and sys.stderr when their fds are captured: the program's own writes go straight
to the stream, at bare speed; only lines the helper must treat apart are noted first.

The stream is a proxy whose `write` is, most of the time, the stream's own C method: `print()`
costs what it costs without vlhook. While some thread writes what vlhook already captured in a
richer form (a logging record's handlers run, an uncaught exception is printed: the threads in
`_capture_streams.suppressed`), `write` becomes a Python function that tells the helper which
lines to skip before writing them. On a channel that fds 1 and 2 share, sys.stderr always notes
its lines, so that the helper can store them as `stderr`.
"""

from __future__ import annotations

import _thread

from vlhook import _capture_streams
from vlhook._capture_streams import _TeeBase
from vlhook._diag import internal_error
from vlhook._fd_wire import NOTE, NOTE_ITEM, SKIP, STDERR, frame, line_key
from vlhook._sync import RLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from vlhook._fd_link import Link

HOLD_MAX = 1 << 16  # a longer unfinished line is not noted (it is shipped as written)


class Noter:
    """Notes, for one stream, the lines each thread is about to write."""

    def __init__(self, target: Any, link: Link, channel: int, label: bool) -> None:
        self.target = target
        self.link = link
        self.channel = channel
        self.label = label  # note every line as stderr (a channel shared with fd 1)
        self.held: dict[int, tuple[int, str]] = {}  # thread -> (action, unfinished line)

    def write(self, text: Any) -> Any:
        """Stands in for the stream's own write while noting: note, then write."""
        if isinstance(text, str) and text:
            try:
                self.note(text if text.__class__ is str else str.__str__(text))
            except Exception as exc:  # noting must never break a write
                internal_error("capture.fd", exc)
        return self.target.write(text)

    def note(self, text: str) -> None:
        ident = _thread.get_ident()  # as the program has it now: see _sync
        suppressed = _capture_streams.suppressed
        if ident in suppressed:
            printed = suppressed[ident]
            if printed is not None and "{" in text:  # only an object is merged into the record
                printed.append(text)
            action = SKIP
        elif self.label:
            action = STDERR
        else:
            return  # another thread's write while one is being handled
        self.note_lines(ident, action, text)

    def note_lines(self, ident: int, action: int, text: str) -> None:
        held = self.held.pop(ident, None)
        if held is not None and held[0] == action:
            text = held[1] + text
        if "\n" not in text:
            if len(text) < HOLD_MAX:
                self.held[ident] = (action, text)
            return
        lines = text.split("\n")
        rest = lines.pop()
        if rest and len(rest) < HOLD_MAX:
            self.held[ident] = (action, rest)
        target = self.target
        try:
            encoded = [line.encode(target.encoding, target.errors or "strict") for line in lines]
        except (UnicodeError, LookupError):
            return  # the write itself fails the same way: nothing reaches the fd
        items = b"".join(NOTE_ITEM.pack(self.channel, action, *line_key(b)) for b in encoded)
        self.link.send(frame(NOTE, items))

    def ended(self, ident: int) -> None:
        """The thread's suppressed writes are over: an unfinished line of them is not noted."""
        held = self.held.get(ident)
        if held is not None and held[0] == SKIP:
            self.held.pop(ident, None)


class FdStream(_TeeBase):
    """Stands in for sys.stdout / sys.stderr when its fd is captured."""

    __slots__ = ("_vl_noter", "write")

    def __init__(self, target: Any, kind: int, noter: Noter) -> None:
        super().__init__(target, kind)
        object.__setattr__(self, "_vl_noter", noter)
        self.noting(False)

    def noting(self, on: bool) -> None:
        noter = self._vl_noter
        write = noter.write if on or noter.label else self._vl_target.write
        object.__setattr__(self, "write", write)


class Watched(dict):  # type: ignore[type-arg]
    """`_capture_streams.suppressed`, telling when the first thread enters and the last leaves
    (the streams then start or stop noting)."""

    __slots__ = ("_changed", "_ended", "_lock", "_on")

    def __init__(self, initial: dict[int, Any], changed: Callable[[bool], None],
                 ended: Callable[[int], None]) -> None:  # fmt: skip
        super().__init__(initial)
        self._changed = changed
        self._ended = ended
        # Re-entrant: a signal handler that logs may run while this thread holds it.
        self._lock = RLock()
        self._on = False
        if initial:
            self._turn(True)

    def _turn(self, on: bool) -> None:
        if on != self._on:
            self._on = on
            self._changed(on)

    def __setitem__(self, key: int, value: Any) -> None:
        with self._lock:
            dict.__setitem__(self, key, value)
            self._turn(True)

    def setdefault(self, key: int, default: Any = None) -> Any:
        with self._lock:
            value = dict.setdefault(self, key, default)
            self._turn(True)
        return value

    def update(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            dict.update(self, *args, **kwargs)
            self._turn(bool(self))

    def pop(self, key: int, *default: Any) -> Any:
        with self._lock:
            value = dict.pop(self, key, *default)
            self._turn(bool(self))
        self._ended(key)
        return value

    def __delitem__(self, key: int) -> None:
        self.pop(key)


def watch(suppressed: dict[int, Any], streams: list[FdStream]) -> Watched:
    """A Watched copy of `suppressed` that switches the streams' noting."""

    def changed(on: bool) -> None:
        for stream in streams:
            stream.noting(on)

    def ended(ident: int) -> None:
        for stream in streams:
            stream._vl_noter.ended(ident)

    return Watched(suppressed, changed, ended)


class OwnOutput:
    """Where vlhook's own messages go in a process whose fd 2 is captured: to the console in
    order with the program's output, and never shipped (noted as SKIP first)."""

    def __init__(self, noter: Noter) -> None:
        self.noter = noter

    def write(self, text: str) -> Any:
        try:
            self.noter.note_lines(-1, SKIP, text)  # a thread id no real thread has
        except Exception:
            pass
        return self.noter.target.write(text)

    def flush(self) -> None:
        self.noter.target.flush()
