"""Line assembly: raw writes into complete lines, one entry per line, per traceback or per
private key.

Runs on the sender thread. Writes are assembled per (stream, thread), so two threads printing
at once never mix their halves. A carriage return inside a line separates lines of one entry
(AWS Lambda's runtime writes a multi-line error that way; a progress bar's updates stay together,
bounded by MAX_PARTIAL_CHARS). A Python traceback printed as text is grouped into one entry
until its exception line (and any chained tracebacks) end it. So is a PEM private key printed as
text, up to its end line: its body is lines of base64 that redaction could not tell from any
other text, and with its header in one entry it is masked (see vlhook._redact). So is a warning
as Python prints it, with its source line (see vlhook._levels.is_python_warning), and a JSON
object printed over several lines in one write.
"""

from __future__ import annotations

import codecs
import sys
from _operator import add, itemgetter
from itertools import chain, repeat

from vlhook._captures import TEXT_CONTEXT, TEXT_DATA, TEXT_KIND, TEXT_TIME, Line, record_type
from vlhook._captures import line as make_line
from vlhook._captures import text as make_text
from vlhook._formats import shows_nothing
from vlhook._levels import PYTHON_WARNING_MARK, is_python_warning
from vlhook._objects import MAX_VALUE_CHARS, parse_json

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, NamedTuple, Optional, Union

    from vlhook._captures import Context, Line, Text

    class LineRun(NamedTuple):
        """Writes that were each exactly one whole line, none of which can start, continue or
        hold a traceback or a private key: the lines, made at once (entries for them too, see
        _entry)."""

        kinds: list[int]
        texts: list[str]  # without their newlines; none empty or only white space
        times: list[int]
        contexts: list[Optional[Context]]
else:
    LineRun = record_type("LineRun", "kinds texts times contexts")

Key = tuple[int, int]


def _line_run(
    kinds: list[int], texts: list[str], times: list[int], contexts: list[Optional[Context]]
) -> LineRun:
    return tuple.__new__(LineRun, (kinds, texts, times, contexts))


TRACEBACK_START = "Traceback (most recent call last):"
TRACEBACK_TITLE = TRACEBACK_START[:-1]  # a rich box's title, without the colon
BOX_CORNER = "\u256d"  # ╭
GROUP_START = "Exception Group Traceback"  # printed indented: "  + Exception Group Traceback"
CHAIN_MARKERS = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)
CHAIN_WAIT_NS = 50_000_000
STALE_NS = 2_000_000_000  # a traceback or key that never ends is emitted after this long
MAX_PARTIAL_CHARS = 1 << 20  # an endless line without newline is cut here (then split in parts)
FRAMES, AFTER, CHAIN = 0, 1, 2
# First characters of a line that may start a traceback (see is_traceback_start), and "" for an
# empty line (dropped by _complete). A private key's header may follow anything on its line
# (see is_key_start).
_MAYBE_TRACEBACK = frozenset({"T", " ", ""})
KEY_BEGIN = "-----BEGIN "
_KEY_HEADS = ("PRIVATE KEY-----", "PRIVATE KEY BLOCK-----")
KEY_END = "-----END "
#: The most lines one private key's entry holds: a 16,384-bit RSA key, the largest in use, is
#: ~200 lines of base64; past this, lines go as they come.
MAX_KEY_LINES = 512
#: A line of base64 this long is a key's (64 characters in PEM and PGP, 70 in OpenSSH's; only
#: a key's last line is shorter): what tells a key from a quoted header followed by `Done`.
KEY_LINE_CHARS = 40
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
# The headers a key's armor may have before its body: an encrypted PEM key's, PGP's.
_ARMOR = ("Proc-Type:", "DEK-Info:", "Version:", "Comment:", "Hash:", "Charset:")
# What Python's `warnings` module prints after a warning's first line, in the same write: the
# source line (indented) and, for a ResourceWarning, where the object was made (tracemalloc's
# frames, indented) or that tracemalloc would tell.
_WARNING_NOTES = ("Object allocated at (most recent call last):",)
_TRACEMALLOC_HINT = ": Enable tracemalloc to get the object allocation traceback"


def is_traceback_start(text: str) -> bool:
    return text.startswith(TRACEBACK_START) or (
        text[:1] == " " and text.lstrip(" +").startswith(GROUP_START)
    )


def is_box_start(text: str) -> bool:
    """The top of rich's traceback box: `╭──── Traceback (most recent call last) ────╮`
    (structlog's console renderer draws one when rich is installed)."""
    return text[:1] == BOX_CORNER and TRACEBACK_TITLE in text


def warnings_in_pieces() -> bool:
    """Whether a warning may come as two writes, its first line and then its source line: the
    interpreter prints one so until Python's `warnings` module is loaded, which prints a
    warning in one write. Until then the fast paths search whole lines for a warning's first
    line (~35 ns a line over a group, measured); most programs load the module early (logging,
    subprocess and asyncio do), and pay nothing."""
    return "warnings" not in sys.modules


#: The lines a warning's message may take before its source line (see _warning_written).
MAX_WARNING_LINES = 64
_WARNING_MARK_BYTES = PYTHON_WARNING_MARK.encode()


def _continues_warning(text: str) -> bool:
    """A line of what Python's `warnings` module writes after a warning's first line."""
    return text[:1] in (" ", "\t") or text.startswith(_WARNING_NOTES) or _TRACEMALLOC_HINT in text


def is_key_start(text: str) -> bool:
    """A line that holds a private key's header: alone, indented (a YAML block's), or after
    other text (`loaded key: `, `PRIVATE_KEY=`, a colour code)."""
    return KEY_BEGIN in text and any(head in text for head in _KEY_HEADS)


class _Key:
    """One printed private key: its header, armor headers, base64 lines, blank lines and end
    line. Any other line ends it before that line, so a header with no key after it holds
    back nothing of the program's; and unless its end line came or a line was as long as a
    key's, its lines go as they came (see made)."""

    __slots__ = ("body", "context", "ended", "keyed", "lines", "times", "trailing_blank")

    def __init__(self, first: str, t_ns: int, context: Optional[Context]) -> None:
        self.lines = [first]
        self.times = [t_ns]  # each line's: its lines go as they came unless it is a key
        self.context = context
        self.trailing_blank = 0
        self.body = self.ended = self.keyed = False

    def accepts(self, text: str, t_ns: int) -> bool:
        """Add the line if it belongs to the key; False means the key ended before it."""
        if self.ended or len(self.lines) >= MAX_KEY_LINES:
            return False
        stripped = text.strip()
        if not stripped:
            self.trailing_blank += 1
        elif stripped.startswith(KEY_END):
            self.ended = True
        elif _BASE64.issuperset(stripped):
            self.body = True
            self.keyed = self.keyed or len(stripped) >= KEY_LINE_CHARS
        elif self.body or not stripped.startswith(_ARMOR):
            return False
        if stripped:
            self.trailing_blank = 0
        self.lines.append(text)
        self.times.append(t_ns)
        return True

    @property
    def last_ns(self) -> int:
        return self.times[-1]

    @property
    def may_be_complete(self) -> bool:
        return self.ended

    def made(self, kind: int) -> list[Line]:
        """One entry for a key (its end line came, or a line as long as a key's: one cut
        short); else each line as it came: a header quoted in a message, then short lines that
        only look like base64 (`Done`, `200`)."""
        if self.ended or self.keyed:
            lines = self.lines[: len(self.lines) - self.trailing_blank or None]
            return [make_line(kind, "\n".join(lines), self.times[0], self.context)]
        pairs = zip(self.lines, self.times)
        return [make_line(kind, text, t_ns, self.context) for text, t_ns in pairs
                if text and not text.isspace()]  # fmt: skip


class _Warning:
    """A warning's first line, written by itself: the interpreter writes the source line apart
    (before Python's `warnings` module is loaded). Takes that one indented line, if it comes
    next; anything else ends it before that line."""

    __slots__ = ("context", "last_ns", "lines", "t_ns")

    def __init__(self, first: str, t_ns: int, context: Optional[Context]) -> None:
        self.lines = [first]
        self.t_ns = self.last_ns = t_ns
        self.context = context

    def accepts(self, text: str, t_ns: int) -> bool:
        if len(self.lines) > 1 or text[:1] not in (" ", "\t") or text.isspace():
            return False
        self.lines.append(text)
        self.last_ns = t_ns
        return True

    @property
    def may_be_complete(self) -> bool:
        return True

    def made(self, kind: int) -> list[Line]:
        return [make_line(kind, "\n".join(self.lines), self.t_ns, self.context)]


class _Partial:
    __slots__ = ("context", "parts", "size", "t_ns", "unended")

    def __init__(
        self, text: str, t_ns: int, context: Optional[Context], unended: bool = False
    ) -> None:
        self.parts = [text]
        self.size = len(text)
        self.t_ns = t_ns
        self.context = context
        #: A whole write kept for its newline, which the next write begins (see feed).
        self.unended = unended


class _Traceback:
    """One printed traceback: frames (indented), the exception line, and any chained ones.
    An exception group is printed wholly indented: it ends at the first line that is not."""

    __slots__ = ("context", "group", "last_ns", "lines", "state", "t_ns", "trailing_blank")

    def __init__(self, first: str, t_ns: int, context: Optional[Context]) -> None:
        self.lines = [first]
        self.t_ns = self.last_ns = t_ns
        self.context = context
        self.state = FRAMES
        self.group = not first.startswith(TRACEBACK_START)
        self.trailing_blank = 0

    def accepts(self, text: str, t_ns: int) -> bool:
        """Add the line if it continues the traceback; False means it ended before it."""
        if not text or text.isspace():
            self.trailing_blank += 1
        elif not self._continues(text):
            return False
        else:
            self.trailing_blank = 0
        self.lines.append(text)
        self.last_ns = t_ns
        return True

    def _continues(self, text: str) -> bool:
        indented = text[0] in " \t"
        if self.state == CHAIN:  # after "During handling...": only a traceback may follow
            if is_traceback_start(text):
                self.state, self.group = FRAMES, not text.startswith(TRACEBACK_START)
                return True
            return False
        if text.startswith(CHAIN_MARKERS):
            self.state = CHAIN
            return True
        if self.state == AFTER or (self.group and not indented):
            return False
        if not indented:
            self.state = AFTER  # the exception line
        return True

    @property
    def may_be_complete(self) -> bool:
        return self.state == AFTER or (self.group and self.state == FRAMES)

    def made(self, kind: int) -> list[Line]:
        lines = self.lines[: len(self.lines) - self.trailing_blank or None]
        return [make_line(kind, "\n".join(lines), self.t_ns, self.context, "ERROR")]


#: A run of fewer lines is assembled write by write: below ~4 lines the run's fixed calls cost
#: more than they save (measured, a line: one write 8.6 µs against 5.0 by itself, 8 writes 2.2
#: against 2.4, 64 writes 1.7 against 2.3).
MIN_RUN = 8
_FIRST, _LAST = itemgetter(0), itemgetter(-1)


class LineAssembler:
    def __init__(self) -> None:
        self._partial: dict[Key, _Partial] = {}
        #: Per stream and thread, the traceback, private key or warning (its source line to
        #: come) being gathered into one entry.
        self._blocks: dict[Key, Union[_Traceback, _Key, _Warning]] = {}
        self._decoders: dict[Key, Any] = {}

    def whole_lines(self, items: list[Text]) -> Optional[LineRun]:
        """The writes as a LineRun when each is text with exactly one newline, at its end (or
        bytes that end lines: see _whole_chunks), they are MIN_RUN lines or more, and no line
        of any stream and thread is unfinished: what feed_many would make of them, told with
        a few C calls over the whole group instead of several per write. None otherwise (then
        feed_many, which handles everything)."""
        if self._partial or self._blocks or not items:
            return None
        data = list(map(TEXT_DATA, items))
        if data[0].__class__ is bytes:
            return self._whole_chunks(items, data)
        count = len(items)
        try:
            joined = "".join(data)  # TypeError: bytes written through .buffer
            ends = "".join(map(_LAST, data))  # IndexError: an empty write
        except (TypeError, IndexError):
            return None
        if count < MIN_RUN or ends != "\n" * count or joined.count("\n") != count:
            return None
        return self._run(joined, list(map(TEXT_KIND, items)), list(map(TEXT_TIME, items)),
                         list(map(TEXT_CONTEXT, items)))  # fmt: skip

    def _whole_chunks(self, items: list[Text], data: list[Any]) -> Optional[LineRun]:
        """whole_lines for chunks of bytes that each end a line (the fd helper's: many lines
        each, one time and context for a chunk's lines), when no stream has the start of a
        character left over from before: decoded at once, as one by one they would be."""
        try:
            joined = b"".join(data)  # TypeError: text among them
            ends = bytes(map(_LAST, data))  # IndexError: an empty write
        except (TypeError, IndexError):
            return None
        counts = [chunk.count(b"\n") for chunk in data]
        if sum(counts) < MIN_RUN or ends != b"\n" * len(data) or self._undecoded(items):
            return None
        if _WARNING_MARK_BYTES in joined:  # a warning may begin at any line of a read: feed
            return None
        kinds, contexts = (
            list(chain.from_iterable(map(repeat, map(field, items), counts)))  # per line
            for field in (TEXT_KIND, TEXT_CONTEXT)
        )
        # Each line of a chunk a nanosecond after the one before it, as feed makes them.
        starts = list(map(TEXT_TIME, items))
        times = list(chain.from_iterable(map(range, starts, map(add, starts, counts))))
        return self._run(joined.decode("utf-8", "replace"), kinds, times, contexts)

    def _undecoded(self, items: list[Text]) -> bool:
        """Whether a stream of these has bytes of a character cut at its last write."""
        decoders = self._decoders
        return bool(decoders) and any(
            decoders[key].getstate()[0]
            for key in {(item.kind, item.thread) for item in items} if key in decoders
        )  # fmt: skip

    @staticmethod
    def _run(joined: str, kinds: list[int], times: list[int], contexts: list[Any]
             ) -> Optional[LineRun]:  # fmt: skip
        """The run of `joined`'s lines (each ended by its newline), unless one of them holds
        what only feed_many handles: a carriage return, a traceback, a private key, a warning's
        first line that its source line may follow, or nothing to keep."""
        if ("\r" in joined or TRACEBACK_TITLE in joined or GROUP_START in joined
                or KEY_BEGIN in joined
                or (warnings_in_pieces() and PYTHON_WARNING_MARK in joined)):  # fmt: skip
            return None
        texts = joined.split("\n")
        texts.pop()  # the "" after the last newline
        if any(map(str.isspace, texts)) or "" in texts:
            return None  # empty or blank lines are dropped: feed_many's business
        if "\x1b" in joined and any(shows_nothing(text) for text in texts if "\x1b" in text):
            return None  # so are lines of escape sequences alone
        return _line_run(kinds, texts, times, contexts)

    def feed_many(self, items: list[Text], out: list[Line]) -> None:
        """feed() for each item, with what most writes are — one whole line of text that
        cannot start, continue or hold a traceback or a key, with no line of that stream and
        thread unfinished — made into a line right here (one call per batch, not per write)."""
        partial, blocks = self._partial, self._blocks
        append = out.append
        new = tuple.__new__
        in_pieces = warnings_in_pieces()
        for item in items:
            kind, data, t_ns, ident, context = item
            whole = data.__class__ is str and data[-1:] == "\n" and data.count("\n") == 1
            if (
                whole
                and not blocks
                and data[:1] not in _MAYBE_TRACEBACK
                and KEY_BEGIN not in data
                and "\r" not in data
                and "\x1b" not in data  # escape sequences alone make no line (see feed)
                and not (partial and (kind, ident) in partial)
                and not (in_pieces and PYTHON_WARNING_MARK in data)
            ):
                if not data.isspace():
                    append(new(Line, (kind, data[:-1], t_ns, context, "")))
            else:
                self.feed(item, out)

    def feed(self, item: Text, out: list[Line]) -> None:
        kind, data, t_ns, ident, context = item
        key = (kind, ident)
        text = data if isinstance(data, str) else self._decode(key, data)
        if not text:
            return
        unended = self._partial.get(key) if self._partial else None
        if unended is not None and unended.unended:  # this write ends it: one write, as it was
            del self._partial[key]
            text, t_ns, context = unended.parts[0] + text, unended.t_ns, unended.context
        newlines = text.count("\n")
        if not newlines:
            self._extend(key, text, t_ns, context, out)
            return
        if newlines == 1 and text[-1] == "\n":  # the common case: one whole line, or its end
            partial = self._partial.pop(key, None) if self._partial else None
            if partial is None:
                line = text[:-1]
                # _complete, inlined for a line that cannot start, continue or hold a block
                # and has no carriage return: most printed lines.
                if (line[:1] not in _MAYBE_TRACEBACK and not self._blocks and "\r" not in line
                        and KEY_BEGIN not in line
                        and not (PYTHON_WARNING_MARK in line
                                 and warnings_in_pieces())):  # fmt: skip
                    if not line.isspace() and ("\x1b" not in line or not shows_nothing(line)):
                        out.append(make_line(kind, line, t_ns, context))
                    return
                self._complete(key, line, t_ns, context, out)
            else:
                partial.parts.append(text[:-1])
                joined = "".join(partial.parts)
                self._complete(key, joined, partial.t_ns, partial.context, out)
            return
        if text[0] == "{" and self._object_written(key, text, t_ns, context, out):
            return
        pieces = text.split("\n")
        if len(pieces) > 2 and (is_traceback_start(pieces[1]) or is_box_start(pieces[1])):
            if pieces[-1] and key not in self._partial:
                # A line and its traceback without the newline that ends its exception line:
                # structlog prints them so, and then "\n". Kept whole for that newline.
                self._partial[key] = _Partial(text, t_ns, context, unended=True)
                return
            if self._line_and_traceback(key, pieces, t_ns, context, out):
                return
        # Under fd capture a read holds many writes: a warning may begin at any of its lines.
        warned = len(pieces) > 2 and PYTHON_WARNING_MARK in text
        index = self._warning_written(key, pieces, 0, t_ns, context, out) if warned else 0
        if not index:
            partial = self._partial.pop(key, None)
            if partial is not None:
                partial.parts.append(pieces[0])
                self._complete(key, "".join(partial.parts), partial.t_ns, partial.context, out)
            else:
                self._complete(key, pieces[0], t_ns, context, out)
            index = 1
        # Each line a nanosecond after the one before it: the server keeps no order among
        # entries of one time (a write of n lines takes far longer than n ns).
        stop = len(pieces) - 1
        while index < stop:
            after = self._warning_written(key, pieces, index, t_ns, context, out) if warned else 0
            if not after:
                self._complete(key, pieces[index], t_ns + index, context, out)
            index = after or index + 1
        if pieces[-1]:
            self._extend(key, pieces[-1], t_ns + len(pieces) - 1, context, out)

    def _line_and_traceback(
        self, key: Key, pieces: list[str], t_ns: int, context: Optional[Context], out: list[Line]
    ) -> bool:
        """A line and a traceback written at once, as logging libraries print a record with its
        exception (structlog's console output, loguru's text): one entry, whose first line is
        the record's. False when the line belongs to something else already begun."""
        partial = self._partial.get(key)
        head = pieces[0] if partial is None else "".join([*partial.parts, pieces[0]])
        if key in self._blocks or not head.strip() or is_traceback_start(head):
            return False
        start_ns, start_context = t_ns, context
        if partial is not None:
            del self._partial[key]
            start_ns, start_context = partial.t_ns, partial.context
        text = "\n".join([head, *pieces[1:-1]])
        if "\r" in text:
            text = _carriage_returns(text)
        out.append(make_line(key[0], text, start_ns, start_context, "ERROR"))
        if pieces[-1]:
            self._extend(key, pieces[-1], t_ns, context, out)
        return True

    def _object_written(
        self, key: Key, text: str, t_ns: int, context: Optional[Context], out: list[Line]
    ) -> bool:
        """A JSON object printed over several lines at once (`print(json.dumps(obj, indent=2))`):
        one line, made into one entry that keeps its keys as a printed line's. Only a write
        that is the whole object: `json.dump` to the stream writes it in pieces, and its lines
        go as they come. So do those of a larger object than one value may be: an entry cuts
        such a value, and one over the server's line limit leaves fields out, where its lines,
        each an entry, keep all it printed."""
        if (self._partial and key in self._partial) or (self._blocks and key in self._blocks):
            return False
        body = text.rstrip()
        if len(body) > MAX_VALUE_CHARS:
            return False
        if parse_json(body) is None:
            return False
        out.append(make_line(key[0], body, t_ns, context))
        return True

    def _warning_written(
        self,
        key: Key,
        pieces: list[str],
        start: int,
        t_ns: int,
        context: Optional[Context],
        out: list[Line],
    ) -> int:
        """A warning as Python's `warnings` module writes it, at once: its first line, a message
        of several lines, and what follows them (the source line, a ResourceWarning's allocation
        frames) as one entry, from `pieces[start]`. Returns the index of the first piece after
        it, or 0 when no such warning begins there."""
        if (
            (start == 0 and self._partial and key in self._partial)
            or (self._blocks and key in self._blocks)
            or not is_python_warning(pieces[start])
        ):
            return 0
        # A message of several lines comes before the source line, the first indented one:
        # without one, the lines after the first are not known to be the message's (under fd
        # capture a write of the program's may follow in the same read).
        stop = len(pieces) - 1  # what follows the last newline is no line yet
        last = min(stop, start + MAX_WARNING_LINES)
        end = start + 1
        while end < last and not (pieces[end] and _continues_warning(pieces[end])):
            end += 1
        if end == last:
            return 0
        end += 1
        while end < stop and pieces[end] and _continues_warning(pieces[end]):
            end += 1
        out.append(make_line(key[0], "\n".join(pieces[start:end]), t_ns + start, context))
        return end

    def flush(self, out: list[Line], final: bool, now_ns: int = 0) -> None:
        """Emit what no later write can continue: tracebacks past their exception line and
        keys past their end line with nothing written after it for CHAIN_WAIT_NS (a chained
        traceback would follow at once), and with `final` (exit, end of an invocation, explicit
        flush) everything, partial lines too."""
        for key in list(self._blocks):
            block = self._blocks[key]
            quiet = now_ns - block.last_ns
            if final or quiet > STALE_NS or (block.may_be_complete and quiet > CHAIN_WAIT_NS):
                del self._blocks[key]
                out.extend(block.made(key[0]))
        if final:
            for key, decoder in self._decoders.items():
                tail = decoder.decode(b"", True)  # bytes of a character cut at the very end
                if tail:
                    self._extend(key, tail, now_ns, None, out)
            for key in list(self._partial):
                partial = self._partial.pop(key)
                joined = "".join(partial.parts)
                if partial.unended:  # its newline never came: ended here
                    self.feed(make_text(key[0], joined + "\n", partial.t_ns, key[1],
                                        partial.context), out)  # fmt: skip
                    continue
                self._complete(key, joined, partial.t_ns, partial.context, out, at_end=True)
            self._decoders.clear()

    def held(self) -> int:
        """How many entries what it holds would make: each unfinished line, each block
        still being gathered (counted when an exit given up on can no longer make them)."""
        return len(self._partial) + len(self._blocks)

    def discard(self, kind: int, ident: int) -> None:
        """The rest of the current line was shed (buffer full): forget its beginning."""
        self._partial.pop((kind, ident), None)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def _decode(self, key: Key, data: bytes) -> str:
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._decoders[key] = codecs.getincrementaldecoder("utf-8")("replace")
        return str(decoder.decode(data))

    def _extend(
        self, key: Key, text: str, t_ns: int, context: Optional[Context], out: list[Line]
    ) -> None:
        partial = self._partial.get(key)
        if partial is None:
            partial = self._partial[key] = _Partial(text, t_ns, context)
        else:
            partial.parts.append(text)
            partial.size += len(text)
        if partial.size >= MAX_PARTIAL_CHARS:
            del self._partial[key]
            joined = "".join(partial.parts)
            self._complete(key, joined, partial.t_ns, partial.context, out, at_end=True)

    def _complete(
        self,
        key: Key,
        text: str,
        t_ns: int,
        context: Optional[Context],
        out: list[Line],
        at_end: bool = False,
    ) -> None:
        if "\r" in text:
            text = _carriage_returns(text)
        block = self._blocks.get(key)
        if block is not None:
            if block.accepts(text, t_ns):
                if block.__class__ is _Warning:  # its source line: nothing more can follow
                    del self._blocks[key]
                    out.extend(block.made(key[0]))
                return
            del self._blocks[key]
            out.extend(block.made(key[0]))
        if not at_end and is_traceback_start(text):
            self._blocks[key] = _Traceback(text, t_ns, context)
        elif not at_end and is_key_start(text):
            self._blocks[key] = _Key(text, t_ns, context)
        elif not at_end and is_python_warning(text) and warnings_in_pieces():
            self._blocks[key] = _Warning(text, t_ns, context)
        elif not shows_nothing(text):
            out.append(make_line(key[0], text, t_ns, context))


def _carriage_returns(text: str) -> str:
    """`a\rb` in a completed line: one entry with two lines (awslambdaric joins an error's
    lines with "\r"); a trailing "\r" (of "\r\n") is dropped."""
    return "\n".join(s for s in text.split("\r") if s)
