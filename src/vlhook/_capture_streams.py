"""Capture of sys.stdout / sys.stderr: a tee that writes through unchanged and keeps a copy.

The tee is the program's stream as far as the program can tell: every attribute it does not
override is the original's, `isinstance` answers for the original's class, and it replaces
`sys.__stdout__` too so identity checks and "restore the original stream" code keep working.
The write path does the least possible: stamp time and thread, append to the buffer.
"""

from __future__ import annotations

import _thread
import sys
from _io import BufferedWriter, FileIO, TextIOWrapper  # the C types, loaded at start-up
from _operator import attrgetter
from time import time_ns

from vlhook import _context
from vlhook._captures import STDERR, STDOUT, Text
from vlhook._captures import text as make_text
from vlhook._diag import internal_error

KIND_NAMES = {STDOUT: "stdout", STDERR: "stderr"}

#: Threads whose writes are not captured as text, because the same data is already captured
#: in a richer form (a logging record being handled, an uncaught exception being printed).
#: The value collects the writes made meanwhile that may hold a JSON object (one a handler
#: printed is merged into the record's entry; a write without "{" cannot be, and is left
#: out), or is None to just skip them.
suppressed: dict[int, Optional[list[str]]] = {}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, Callable, Optional

    from vlhook._captures import Context

    Put = Callable[[Text], None]
    Held = tuple[str, int, Optional[Context]]
    PutRecord = Callable[[Any, int], None]  # (capture, level)

_put: Optional[Put] = None
_put_record: Optional[PutRecord] = None
#: The streams `install` was asked to tee (see `tee_again`).
_kinds: tuple[int, ...] = ()
_new = tuple.__new__


#: Per stream, per thread: the start of a line not yet ended by a newline, as (text, time,
#: context). `print(x)` writes `x` and then "\n": holding the first until the second turns them
#: into one capture halves the work here and on the sender. Released at every flush.
_held: tuple[dict[int, Held], dict[int, Held]] = ({}, {})
HOLD_MAX = 1 << 16  # a longer unfinished line is passed on without waiting
#: The characters of colour codes and of erasing the line (`ESC [ 0 m`, `ESC [ 1 ; 31 m`,
#: `ESC [ K`): a held text of these alone shows nothing yet. Read by one C call (str.strip):
#: the tee loads no regular expression (`_formats` comes with the pipeline).
_SHOWS_NOTHING = "\x1b[;0123456789mK"

#: Writes made at the program's recursion limit, where the capture's own Python frames do not
#: fit (the tee's `write` does; printing at that depth works without vlhook, `print()` being
#: C). Each is kept here as the capture it would have been, by single C calls (up to Python
#: 3.11 a C call that calls another, as a dict lookup comparing keys, does not fit either),
#: and put into the buffer before the next capture of any thread is made, or at the next
#: flush, each after the unfinished line its thread held. Before, such a line was lost, its
#: capture's error printed at that depth as "a message could not be shown", and from Python
#: 3.12 on the error escaped the tee: `print()` raised in the middle of its line. The capture,
#: its hold and the buffer's `put` raise RecursionError only before keeping anything (see
#: Buffer.put), so nothing is kept twice; a write larger than the whole buffer, or one that
#: finds the buffer full, at the recursion limit too, is the case this does not cover.
_deferred: list[Text] = []


def _capture_text(kind: int, text: str) -> None:
    """A str write: print(x) makes two, `x` and then "\n". The only Python frame a write adds
    to the tee's, and the capture's tuple made here rather than by `_captures.text`: a capture
    made after a pause finds little of the interpreter in the CPU's caches, and every frame on
    its path then counts (measured with the C-level `_context.get`: print() at 1,000 lines/s
    cost 2.68x the tee's own stream in the same process before, 2.61x after, medians of 10
    interleaved runs; see docs/performance.md). Inlined into `StreamTee.write` too: no gain."""
    ident = _thread.get_ident()  # as the program has it now: see _sync
    if suppressed and ident in suppressed:
        texts = suppressed[ident]
        if texts is not None and "{" in text:  # only an object is merged into the record
            texts.append(text)
        return
    put = _put
    if put is None:
        return
    if _deferred:
        _pass_deferred(put)
    held_here = _held[kind]
    held = held_here.pop(ident, None) if held_here else None
    try:
        # Operators before the method call: print() writes each of several values apart, and
        # one call more a write cost `print(line, i)` ~10 % of its thread's CPU (+300-400 ns).
        if held is not None and (
            "\n" not in text or text == "\n" or text.find("\n", 0, len(text) - 1) < 0
        ):
            whole, t_ns, context = held[0] + text, held[1], held[2]  # at most ends the held
        else:
            if held is not None:  # the held line ends and more begins: each at its own time
                put(make_text(kind, held[0], held[1], ident, held[2]))
                held = None
            whole, t_ns, context = text, time_ns(), _context.get()
        # A write that ends a line and begins the next ("...\n" + a status line, as a
        # terminal's live display redraws) is passed on: held, its lines would wait for a write
        # that ends with a newline, which such a display may never make before the exit.
        if whole[-1] != "\n" and len(whole) < HOLD_MAX and "\n" not in text:
            if held is None and whole < "\x1c" and not whole.strip(_SHOWS_NOTHING):
                # Colour codes alone begin no line (colorama's autoreset writes a reset after
                # each line's newline): held, the next line would take their time. Its entry is
                # read without them anyway.
                return
            held_here[ident] = (whole, t_ns, context)
            return
        put(_new(Text, (kind, whole, t_ns, ident, context)))
    except RecursionError:
        # Nothing kept: the write is deferred after what it continues. Anywhere after the
        # pop: from Python 3.13 on, a C call here (`str.find`, `time_ns`) may raise it too, and
        # the held start of the line was lost ("start: " of "start: depth 197").
        if held is not None:
            held_here[ident] = held
        raise


def _capture_bytes(kind: int, data: bytes) -> None:
    """A write through `.buffer`: after any text held before it, to keep their order."""
    ident = _thread.get_ident()  # as the program has it now: see _sync
    put = _put
    if (suppressed and ident in suppressed) or put is None:
        return
    if _deferred:
        _pass_deferred(put)
    _pass_held(put, kind, ident)
    put(make_text(kind, data, time_ns(), ident, _context.get()))


def _pass_held(put: Put, kind: int, ident: int) -> None:
    """Put the unfinished line a thread holds, if any, before what comes after it."""
    held = _held[kind].pop(ident, None) if _held[kind] else None
    if held is not None:
        try:
            put(make_text(kind, held[0], held[1], ident, held[2]))
        except RecursionError:  # not kept (no room for a call, on 3.13 even a C one): still
            _held[kind][ident] = held  # held, still first
            raise


def _pass_deferred(put: Put) -> None:
    """Put the writes deferred at the recursion limit (see _deferred), in order, each after
    the line its thread held; a RecursionError here (still too deep) leaves the rest
    deferred, and the write being captured is deferred after them."""
    while True:
        try:  # taken before it is put: two threads passing them on never put one twice
            capture = _deferred.pop(0)
        except IndexError:
            return
        try:
            _pass_held(put, capture.kind, capture.thread)
            put(capture)
        except RecursionError:
            _deferred.insert(0, capture)  # still first
            raise


#: str subclasses that carry a richer form of the text they print (loguru's Message and its
#: record), each with the function that makes a capture of it: it returns (capture, level),
#: NOTHING when there is nothing to capture (that record was captured at another sink, or is
#: below the level shipped), or None to capture the text as it is. Integrations fill it.
richer: dict[type, Callable[[Any], Any]] = {}
NOTHING = ()


def _keep_str(kind: int, text: str) -> None:
    """A str subclass was written: its richer form where an integration knows it (not while a
    logging record or an uncaught exception is being printed: that is the richer form then)."""
    try:
        make = richer.get(text.__class__) if richer else None
        ident = _thread.get_ident()  # as the program has it now: see _sync
        put, put_record = _put, _put_record
        if (
            make is None
            or put is None
            or put_record is None
            or (suppressed and ident in suppressed)
        ):
            _capture_text(kind, str.__str__(text))
            return
        made = make(text)
        if made is None:
            _capture_text(kind, str.__str__(text))
        elif made is not NOTHING:
            _pass_held(put, kind, ident)  # the start of a line written before it comes first
            put_record(*made)
    except Exception as exc:  # capture must never break a write
        internal_error("capture", exc)


#: A thread's entry in `suppressed` when it had none (what a guard that sets one restores).
NOT_SUPPRESSED: Any = object()


class NotCaptured:
    """`with NotCaptured():` what this thread writes meanwhile is not captured as text: it is
    captured already in a richer form (an exception being printed by Python's hook), or it is
    vlhook's own doing. The thread's entry in `suppressed` before comes back after (a logging
    record being handled collects what its handlers print)."""

    __slots__ = ("_ident", "_outer")
    _outer: Any  # a list, None, or NOT_SUPPRESSED

    def __enter__(self) -> None:
        self._ident = ident = _thread.get_ident()  # as the program has it now: see _sync
        # `suppressed` is read here each time: fd capture replaces it (see _fd_streams.watch).
        self._outer = suppressed.get(ident, NOT_SUPPRESSED)
        suppressed[ident] = None

    def __exit__(self, *exc: object) -> None:
        if self._outer is NOT_SUPPRESSED:
            suppressed.pop(self._ident, None)
        else:
            suppressed[self._ident] = self._outer


def release_held() -> None:
    """Hand every held unfinished line to the buffer (before a flush), and what was deferred
    at the recursion limit."""
    put = _put
    if put is None:
        return
    if _deferred:
        _pass_deferred(put)
    for kind, held_here in enumerate(_held):
        for ident in list(held_here):
            _pass_held(put, kind, ident)


def forget_held() -> None:
    """In a forked child: what the parent held is the parent's."""
    for held_here in _held:
        held_here.clear()
    _deferred.clear()


#: The tee's own methods that call the original's of the same name. A program that sets one
#: on the stream (IPython 9 wraps `sys.stdout.write` around each cell, calling the one it
#: replaced) has it kept on the tee, as the stream would keep it: it then stands in for the
#: tee's. Passed on to the original, it would be called by the tee's, which it calls: print()
#: recursed until RecursionError.
OWN_METHODS = frozenset({"write", "writelines"})


class _TeeBase:
    # __weakref__: libraries keep weak references to the streams they write to (structlog).
    # __dict__: what the program sets of OWN_METHODS (made only then: no cost before).
    __slots__ = ("__dict__", "__weakref__", "_vl_kind", "_vl_target")

    def __init__(self, target: Any, kind: int) -> None:
        object.__setattr__(self, "_vl_target", target)
        object.__setattr__(self, "_vl_kind", kind)

    # isinstance(sys.stdout, io.TextIOWrapper) and friends answer as for the original.
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._vl_target)

    def __getattr__(self, name: str) -> Any:
        if name == "_vl_target":  # unset (an instance made by __new__ alone): no recursion
            raise AttributeError(name)
        return getattr(self._vl_target, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in OWN_METHODS:
            self.__dict__[name] = value
        else:
            setattr(self._vl_target, name, value)

    def __delattr__(self, name: str) -> None:
        if name in OWN_METHODS and name in self.__dict__:
            del self.__dict__[name]
        else:
            delattr(self._vl_target, name)

    # copy.copy() and pickle ask for these first, and object's own would copy the tee (with the
    # original inside): the original's answer instead, TypeError "cannot pickle" for a stream.
    # Properties, as `flush`: the original's own methods, no frame of ours when they raise.
    __reduce_ex__ = property(attrgetter("_vl_target.__reduce_ex__"))
    __reduce__ = property(attrgetter("_vl_target.__reduce__"))
    # Python < 3.11: no object.__getstate__, so AttributeError as from the original.
    __getstate__ = property(attrgetter("_vl_target.__getstate__"))

    def __repr__(self) -> str:
        return repr(self._vl_target)

    def __iter__(self) -> Any:
        return iter(self._vl_target)

    def __next__(self) -> Any:
        return next(self._vl_target)

    def __enter__(self) -> Any:
        self._vl_target.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._vl_target.__exit__(*exc)

    # The original's own method, not a function of ours: a flush that fails (a closed pipe at
    # exit: "Exception ignored in: ... BrokenPipeError") shows no vlhook frame. It stays local
    # (awslambdaric's Unbuffered flushes after every write): nothing is sent. Read by a C
    # getter, not a Python one: a logging handler flushes after every record.
    flush = property(attrgetter("_vl_target.flush"))


def _keep(kind: int, data: Any) -> None:
    """Capture after the original write succeeded (a write that raised was not output)."""
    try:
        if data.__class__ is str:
            _capture_text(kind, data)
        else:
            _capture_bytes(kind, data)
    except RecursionError:  # single C calls alone from here: see _deferred
        try:
            context = _context.get()  # a C call, unless context-local fields exist
        except RecursionError:
            context = None
        _deferred.append(_new(Text, (kind, data, time_ns(), _thread.get_ident(), context)))
    except Exception as exc:  # capture must never break a write
        internal_error("capture", exc)


def _kept_as_written(
    kind: int, lines: Iterable[Any], keep: Callable[[int, Any], None]
) -> Iterator[Any]:
    """The program's lines for the original's writelines, one at a time, each kept once the
    next is asked for: the original writes a line before it asks for the next, so a line whose
    write raised (and any after it) is not kept, and a line the iterable prints as it makes the
    next one (or an error it raises) comes after the lines written before. Nothing is made into
    a list: without vlhook the lines written before an error are output."""
    for line in lines:
        yield line
        keep(kind, line)


def _keep_text(kind: int, text: Any) -> None:
    if isinstance(text, str) and text:  # the original wrote it: it is a str
        _keep(kind, str.__str__(text))


def _keep_bytes(kind: int, data: Any) -> None:
    try:
        if data:  # a copy: the program may reuse a bytearray for the next line
            _keep(kind, bytes(data))
    except Exception as exc:  # capture must never break a write
        internal_error("capture", exc)


class BinaryTee(_TeeBase):
    """Stands in for `sys.stdout.buffer`: captures the bytes, decoded later on the sender."""

    __slots__ = ()

    def write(self, data: Any) -> Any:
        written = self._vl_target.write(data)
        if data:
            # A bytearray or memoryview may change after the call: keep a copy.
            _keep(self._vl_kind, data if type(data) is bytes else bytes(data))
        return written

    def writelines(self, lines: Iterable[Any]) -> Any:
        return self._vl_target.writelines(_kept_as_written(self._vl_kind, lines, _keep_bytes))


class StreamTee(_TeeBase):
    """Stands in for sys.stdout / sys.stderr."""

    __slots__ = ("_vl_binary",)

    def __init__(self, target: Any, kind: int) -> None:
        super().__init__(target, kind)
        object.__setattr__(self, "_vl_binary", None)

    def write(self, text: Any) -> Any:
        written = self._vl_target.write(text)
        if text.__class__ is str:
            if text:
                try:  # _keep, inlined: every print() comes here twice
                    _capture_text(self._vl_kind, text)
                except RecursionError:  # _keep's deferral, inlined: no Python call fits
                    try:
                        context = _context.get()
                    except RecursionError:
                        context = None
                    _deferred.append(_new(Text, (self._vl_kind, text, time_ns(),
                                                 _thread.get_ident(), context)))  # fmt: skip
                except Exception as exc:
                    internal_error("capture", exc)
        elif isinstance(text, str) and text:  # a str subclass (loguru's Message)
            _keep_str(self._vl_kind, text)
        return written

    def writelines(self, lines: Iterable[Any]) -> Any:
        return self._vl_target.writelines(_kept_as_written(self._vl_kind, lines, _keep_text))

    @property
    def buffer(self) -> Any:
        return self._vl_teed(self._vl_target.buffer)  # AttributeError exactly as without the tee

    @property
    def detach(self) -> Callable[[], Any]:
        """The original's detach, whose buffer comes back teed: a program that wraps it anew
        (`sys.stdout = io.TextIOWrapper(sys.stdout.detach(), ...)`) is still captured, as one
        that wraps `sys.stdout.buffer` (bytes, decoded on the sender)."""
        self._vl_target.detach  # noqa: B018 - AttributeError exactly as without the tee
        return self._vl_detach

    def _vl_detach(self) -> Any:
        tee = self._vl_teed(self._vl_target.detach())
        # A detached stream holds no buffer: one the program drops is freed as without the tee.
        object.__setattr__(self, "_vl_binary", None)
        return tee

    def _vl_teed(self, raw: Any) -> Any:
        """The BinaryTee around `raw`: the same one each time (`buffer is buffer`)."""
        tee = self._vl_binary
        if tee is None or tee._vl_target is not raw:
            tee = BinaryTee(raw, self._vl_kind)
            object.__setattr__(self, "_vl_binary", tee)
        return tee


def original(stream: Any) -> Any:
    """The object under a tee (or the object itself)."""
    return stream._vl_target if isinstance(stream, _TeeBase) else stream


def is_tee(stream: Any) -> bool:
    # type() and not isinstance(): the tee reports the original's class to isinstance.
    return type(stream) is StreamTee


def install(put: Put, kinds: Iterable[int], put_record: Optional[PutRecord] = None) -> None:
    """Tee the chosen streams. A stream that is None (no console) is left alone. `put_record`
    takes the richer captures of what integrations recognise (see `richer`)."""
    global _put, _put_record, _kinds
    _put, _put_record, _kinds = put, put_record, tuple(kinds)
    _tee(_kinds)


def tee_again() -> None:
    """Tee anew those of the streams teed at start that a host replaced with a writer of its
    own to the process's output (uWSGI's, to fd 2, see _integrations/uwsgi). A stream the
    program put in place itself at that moment (a StringIO of `contextlib.redirect_stdout`) is
    its own, and left alone; after `uninstall`, nothing is teed."""
    if _put is not None:
        _tee([kind for kind in _kinds if _on_fd_1_or_2(kind)])


def tee_replaced() -> None:
    """At each of the sender's steps: a stream the program put in place of sys.stdout or
    sys.stderr that writes to fd 1 or 2 is teed (`sys.stdout = os.fdopen(1, "w", 1)`, or a
    TextIOWrapper over `open(1, "wb", 0)`: older programs' unbuffered output). Nothing it wrote
    was captured, for the life of the process; now what it writes from the next step on is. A
    stream not on fd 1 or 2 (a StringIO of `redirect_stdout`, a logging proxy) is left alone,
    and not held: a file the program drops is closed as without vlhook."""
    try:
        _tee(_replaced_kinds())
    except Exception as exc:  # a stream of the program's that cannot be teed: left as is
        internal_error("capture: a replaced stream", exc)


def never_teed() -> list[str]:
    """At exit: the names of the streams the program replaced by a stream of its own on fd 1
    or 2 that no step of the sender's teed (it never ran after the replacement: a program that
    captured nothing else), whose writes were not captured."""
    return [KIND_NAMES[kind] for kind in _replaced_kinds()]


def _replaced_kinds() -> list[int]:
    """The streams teed at start whose place now holds the io module's own text stream
    straight over fd 1 or 2 (through its buffer, or unbuffered): what it writes passes no tee.
    A wrapper of a library's (awslambdaric's `Unbuffered`, which writes through the tee it
    wraps) or a text stream over the tee's `buffer` would be captured twice: left alone.
    None after `uninstall`."""
    if _put is None:
        return []
    found = []
    for kind in _kinds:
        stream = getattr(sys, KIND_NAMES[kind], None)
        if type(stream) is not TextIOWrapper:  # a tee, None, or another kind of stream
            continue
        buffer = stream.buffer
        raw = buffer.raw if type(buffer) is BufferedWriter else buffer
        if type(raw) is FileIO and raw.fileno() in (1, 2):
            found.append(kind)
    return found


def _on_fd_1_or_2(kind: int) -> bool:
    """Whether the stream now in sys.stdout or sys.stderr (per `kind`) writes to the process's
    output, fd 1 or 2."""
    try:
        return getattr(sys, KIND_NAMES[kind]).fileno() in (1, 2)
    except Exception:  # no file behind it
        return False


def _tee(kinds: Iterable[int]) -> None:
    """Tee the streams now in place. Replaced only while still the one looked at: from the
    sender's thread (tee_replaced), a program that replaces it again meanwhile keeps its own."""
    for kind in kinds:
        name = KIND_NAMES[kind]
        current = getattr(sys, name)
        if current is None or is_tee(current):
            continue
        tee = StreamTee(current, kind)
        if getattr(sys, name) is current:
            setattr(sys, name, tee)
        if getattr(sys, f"__{name}__") is current:
            setattr(sys, f"__{name}__", tee)


def uninstall() -> None:
    global _put, _put_record
    _put = _put_record = None
    for kind, name in KIND_NAMES.items():
        for attr in (name, f"__{name}__"):
            current = getattr(sys, attr)
            if is_tee(current) and current._vl_kind == kind:
                setattr(sys, attr, current._vl_target)
