"""Replay of the spool, and the files of raw lines written when there is no time to build
entries (at the end of the exit budget, and by threads still writing after the exit flush).

Replay takes the oldest file nobody else is replaying, one bounded piece at a time, oldest data
first, one piece under way at a time; what became of each piece is recorded before the next is
read, so a process that stops mid-file leaves exactly the unsent rest. Every line is checked to
be a JSON object below the server's line limit: anything else (a corrupt or foreign file) is
counted as `replay_rejected`, never sent (a too-long line would make the server lose the lines
after it). A `.captures` file holds complete lines not yet made into entries, redacted as text
when written; they are built here, with the constant fields and the redaction of the process
that wrote them (its secret field names apply only once an entry is made).
"""

from __future__ import annotations

import os
import time

from vlhook import _codec, _diag
from vlhook._captures import line as make_line
from vlhook._config import SERVER_LINE_LIMIT, Config
from vlhook._delivery.batch import Batch
from vlhook._delivery.encode import Encoder
from vlhook._delivery.private import Opened
from vlhook._delivery.spool import CAPTURES, TEMP, write_all
from vlhook._entry import MAX_DEPTH, MAX_NESTED_VALUES, EntryBuilder
from vlhook._formats import strip_colours
from vlhook._redact import examiner_for

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from collections.abc import Iterable
    from typing import Any, Optional

    from vlhook._captures import Line
    from vlhook._delivery.client import Outcome
    from vlhook._delivery.spool import Claim, Piece, Spool
    from vlhook._stats import Stats

PIECE_BYTES = 1 << 20
HEADER = "vlhook-captures"
#: Beside HEADER in a `.captures` file's first line: the writer's redaction, as
#: {"on": VICTORIALOGS_REDACT is not off, "patterns": its own patterns, "keys":
#: VICTORIALOGS_REDACT_KEYS}. Files written before it have none.
REDACTION = "vlhook-redaction"


class Replayer:
    """Turns spool files into batches and settles their outcomes (sender thread only)."""

    def __init__(self, spool: Spool, stats: Stats, builder: EntryBuilder) -> None:
        self.spool = spool
        self.stats = stats
        self.builder = builder
        self._claim: Optional[Claim] = None
        self._encoder: Optional[Encoder] = None  # of the .captures file being replayed
        self._file_builder: Optional[EntryBuilder] = None  # and the builder of its entries
        self.under_way: Optional[Batch] = None

    def next_batch(self, seq: int) -> Optional[Batch]:
        """The next piece of the spool as a batch; None when the spool is empty."""
        for _ in range(1000):  # bounded: pieces that hold no valid line are skipped
            claim = self._claim or self._take()
            if claim is None:
                return None
            read = self._read(claim)
            if read is None:  # the program closed it: claimed again, from its progress
                self._drop_claim()
                continue
            piece, data = read
            if piece is None:
                self.spool.finish(claim)
                self._drop_claim()
                continue
            batch = Batch(seq, time.monotonic())
            batch.origin = piece
            self._fill(batch, data)
            if batch.lines:
                self.under_way = batch
                return batch
            self.spool.advance(claim, piece.end)
        return None

    def _read(self, claim: Claim) -> Optional[tuple[Optional[Piece], bytes]]:
        """The claim's next piece (None at its end) and its bytes; None when the claim was
        lost (see Claim.checked)."""
        return claim.checked(self._next_piece, claim)

    def _next_piece(self, claim: Claim) -> tuple[Optional[Piece], bytes]:
        piece = self.spool.read(claim, PIECE_BYTES)
        return piece, b"" if piece is None else self.spool.piece_bytes(piece)

    def settle(self, batch: Batch, outcome: Outcome) -> bool:
        """Record what became of a replayed piece; False when replay must pause (the server
        cannot take it now: the piece stays in the spool)."""
        self.under_way = None
        piece = batch.origin
        assert piece is not None
        if outcome.kept and not self._keep_rest_apart(piece, outcome):
            self._drop_claim()
            return False
        own = piece.claim.own
        self.stats.add("replayed", outcome.delivered)
        rejected = sum(outcome.rejected.values())
        self.stats.add("replay_rejected", rejected)
        if own:  # this process's entries: from "spooled" to where they went
            self.stats.add("spooled", -batch.lines)
            self.stats.add("shipped", outcome.delivered)
            self.stats.add("in_flight", outcome.maybe)
            for reason, count in outcome.rejected.items():
                self.stats.drop(reason, count)
        if rejected:
            _diag.warn(f"{rejected} spooled entries rejected: {outcome.reason}", key="replay-rej")
        if outcome.maybe:
            self._unanswered(outcome.maybe)
        self.spool.advance(piece.claim, piece.end)
        if outcome.kept:  # its rest is in a file of its own now; the server cannot take more
            self._drop_claim()
            return False
        return True

    def _keep_rest_apart(self, piece: Piece, outcome: Outcome) -> bool:
        """Part of the piece went (halves of it were stored after a 413, then the rest could
        not be sent): the rest is kept in a spool file of its own, so that the part stored is
        never sent again. False when none of it went, or the rest could not be kept apart:
        then the whole piece stays, and the part stored may be stored again (at least once,
        never lost)."""
        if not (outcome.delivered or outcome.rejected or outcome.maybe):
            return False
        rest = b"".join(body for body, _ in outcome.kept)
        return not self.spool.put(rest, outcome.kept_lines, own=piece.claim.own)

    def _unanswered(self, lines: int) -> None:
        _diag.warn(f"{lines} replayed entries were in a request with no answer at exit (the "
                   "server may or may not store them; they are not sent again)",
                   key="replay-abandon")  # fmt: skip

    def abandon(self, batch: Batch) -> None:
        """At exit, a piece in a request that got no answer: not sent again (the server may
        have stored it); the rest of its file stays in the spool."""
        self.under_way = None
        if batch.origin is not None:
            self.spool.advance(batch.origin.claim, batch.origin.end)
            self._unanswered(batch.lines)

    def stop(self) -> None:
        self._drop_claim()

    def _take(self) -> Optional[Claim]:
        claim = self.spool.claim()
        if claim is None:
            return None
        self._claim = claim
        self._encoder = self._file_builder = None
        if claim.name.endswith(CAPTURES):
            self._read_header(claim)
        return claim

    def _drop_claim(self) -> None:
        if self._claim is not None:
            self.spool.release(self._claim)
        self._claim = None
        self._encoder = self._file_builder = None

    def _fill(self, batch: Batch, data: bytes) -> None:
        if self._encoder is not None:
            self._fill_built(batch, data, self._encoder)
            return
        bad = 0
        for raw in data.splitlines():
            if not raw.strip():
                continue
            if _valid(raw):
                batch.body += raw
                batch.body += b"\n"
                batch.lines += 1
            else:
                bad += 1
        self._count_bad(bad)

    def _fill_built(self, batch: Batch, data: bytes, encoder: Encoder) -> None:
        lines: list[Line] = []
        bad = 0
        for raw in data.splitlines():
            parsed = _parse_line(raw)
            if parsed is None:
                bad += int(bool(raw.strip()) and not raw.startswith(b'{"' + HEADER.encode()))
            else:
                lines.extend(parsed)
        builder = self._file_builder or self.builder
        entries = builder.written_lines(lines) if lines else []
        encoder.append(entries, batch.body)
        batch.lines += len(entries)
        self._count_bad(bad)

    def _read_header(self, claim: Claim) -> None:
        # b"" when the claim is lost (see Claim.checked): let go at the first piece.
        head = (claim.checked(os.pread, claim.fd, 64 << 10, 0) or b"").split(b"\n", 1)[0]
        try:
            header = _codec.loads(head)
            constants = header[HEADER]
        except Exception:
            header = constants = None
        if not isinstance(constants, dict):
            constants = {"vlhook.replay": "captures file without a header"}
        self._encoder = Encoder(constants, self.stats)
        redaction = header.get(REDACTION) if isinstance(header, dict) else None
        if isinstance(redaction, dict):  # else an earlier version's: built as they were then
            self._file_builder = self._writers_builder(redaction, constants.keys())

    def _writers_builder(self, redaction: dict[str, Any], names: Iterable[str]) -> EntryBuilder:
        """A builder with the redaction the file's writer had (this process's may be weaker:
        another VICTORIALOGS_REDACT, or off), and its constant fields' `names` (see
        EntryBuilder.writes_lines)."""
        config = Config(
            max_line_bytes=self.builder.max_line_bytes,
            fields=tuple((str(name), "") for name in names),
            redact=redaction.get("on") is not False,  # anything but a plain "off" is on
            redact_extra=_valid_patterns(_strings(redaction.get("patterns"))),
            redact_keys=_strings(redaction.get("keys")),
        )
        return EntryBuilder(config, self.stats)

    def _count_bad(self, bad: int) -> None:
        if bad:
            self.stats.add("replay_rejected", bad)
            name = self._claim.name if self._claim else "?"
            _diag.warn(f"{bad} lines of spool file {name} are not JSON objects the server can "
                       "take; they are skipped", key=f"replay-bad {name}")  # fmt: skip


def _valid(raw: bytes) -> bool:
    if len(raw) >= SERVER_LINE_LIMIT or not raw.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(_codec.loads(raw), dict)
    except Exception:
        return False


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _valid_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The writer's own patterns that compile here. (One that does not, from another Python
    version, was applied to each text when it was written.)"""
    if not patterns:
        return ()
    import re

    valid = []
    for pattern in patterns:
        try:
            re.compile(pattern)
            valid.append(pattern)
        except re.error:
            pass
    return tuple(valid)


def _parse_line(raw: bytes) -> Optional[list[Line]]:
    """`[kind, t_ns, text, level, context]` as CaptureFile writes it: one Line per line of
    the text (a late write may hold several, or end without a newline)."""
    try:
        kind, t_ns, text, level, context = _codec.loads(raw)
        kind, t_ns = int(kind), int(t_ns)
    except Exception:
        return None
    if kind not in (0, 1) or not isinstance(text, str):
        return None
    ctx = (context,) if isinstance(context, dict) else None
    parts = [text] if level else [p for p in text.split("\n") if p.strip()]
    return [make_line(kind, part, t_ns, ctx, level if isinstance(level, str) else "")
            for part in parts]  # fmt: skip


class CaptureFile:
    """A `.captures` file being written: complete lines (or, after the exit flush, raw writes)
    as text, with this process's constant fields and redaction in the first line. Locked while
    open: no replay takes it before it is whole (or its process gone).

    Nothing is written unredacted: each text (line by line) and context goes through this
    process's redaction first, as its entries would have. orjson is not needed (~25 ms to
    import, where a process printed only plain lines): lines are written as it would write
    them, with the C parts of the standard library's json."""

    def __init__(self, spool: Spool, constants: dict[str, Any], config: Config) -> None:
        import fcntl

        self.spool = spool
        self.file: Optional[Opened] = None
        redaction = {"on": config.redact, "patterns": list(config.redact_extra),
                     "keys": list(config.redact_keys)}  # fmt: skip
        self._header = _codec.stdlib_dumps({HEADER: constants, REDACTION: redaction})
        # A context is walked even without redaction, as an entry's values are: NaN and the
        # infinities made text (orjson would write null), and objects it cannot write too.
        self._walker = examiner_for(config)
        self._redactor = self._walker if config.redact else None  # a text's: only with it
        # Held here, not looked up at the first write: that may come at interpreter teardown,
        # when no import works (see ready).
        flock, exclusive = fcntl.flock, fcntl.LOCK_EX

        def lock_exclusively(fd: int) -> None:
            flock(fd, exclusive)

        self._lock_exclusively = lock_exclusively

    def ready(self) -> None:
        """Load now what a write may still need: a write may come at interpreter teardown (an
        object's `__del__` that prints as the modules are cleared), when no import works, not
        even of a module loaded already."""
        self.spool.refusal  # noqa: B018 - opens the directory
        strip_colours("\x1b[0m")  # its pattern compiled
        self._walker.ready()  # the redactor, when there is one
        _diag.ready()

    def write(self, lines: list[tuple[int, int, str, str, Any]]) -> str:
        """Append `[kind, t_ns, text, level, context]` lines; "" when kept, else the reason."""
        body = self._encoded(lines)  # first: what fails at teardown fails before the file is made
        if self.file is None:
            reason = self._open()
            if reason:
                return reason
        assert self.file is not None
        try:
            write_all(self.file.fd, bytes(body))
        except OSError as exc:
            _diag.warn(f"cannot write to the spool {self.spool.directory}: {exc}",
                       key="spool-write")  # fmt: skip
            return "spool_no_space" if exc.errno in (28, 122) else "spool_unwritable"
        return ""

    def _encoded(self, lines: list[tuple[int, int, str, str, Any]]) -> bytearray:
        # One search over all the texts tells most groups of lines apart (no secret's literal,
        # no colour); a user's pattern without a literal may match anything: then each text
        # is run through it.
        redactor = self._redactor
        texts = "\n".join([line[2] for line in lines])
        clean = "\x1b[" not in texts and (redactor is None or not redactor.may_match(texts))
        body = bytearray()
        for kind, t_ns, text, level, context in lines:
            if not clean:
                text = self._text(text)
            if context is None:  # as orjson writes it (most lines)
                row = f"[{kind},{t_ns},{_codec.string(text)},{_codec.string(level)},null]"
                body += row.encode("utf-8", "replace")
            else:  # bound fields, trace ids: as any entry's fields, by orjson
                body += _codec.dumps_carried([kind, t_ns, text, level, self._fields(context)])
            body += b"\n"
        return body

    def _text(self, text: str) -> str:
        """The text redacted as the entries made of it would be: line by line (a late write
        makes an entry of each), and whole as well (a traceback is one entry, whose stack
        trace is redacted whole, and a private key printed at once spans lines that match
        no pattern apart: its body went to disk, and to the server at the replay). Colours
        go first, as they go from entries."""
        if "\x1b[" in text:
            text = strip_colours(text)
        redact = self._redactor
        if redact is None:
            return text
        if "\n" in text:
            text = "\n".join([redact(part) or part for part in text.split("\n")])
        return redact(text) or text

    def _fields(self, context: Any) -> Any:
        self._walker.left = MAX_NESTED_VALUES
        return self._walker.nested(context, MAX_DEPTH)

    def _open(self) -> str:
        refusal = self.spool.refusal
        if refusal:
            return "spool_off" if not self.spool.directory else "spool_refused"
        name = f"{time.time_ns():020d}-{os.getpid()}-captures{CAPTURES}"
        file = self.spool.create(TEMP + name)
        if file is None:
            return "spool_unwritable"
        # Locked before it has its final name: a replay never sees it unlocked.
        self._lock_exclusively(file.fd)
        try:
            write_all(file.fd, self._header + b"\n")
            self.spool.publish(TEMP + name, name)
        except OSError as exc:
            file.close()
            return "spool_no_space" if exc.errno in (28, 122) else "spool_unwritable"
        self.file = file
        return ""

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            file.close()  # not when the program closed it (see private.Opened)


def replay_now(config: Config, stats: Stats, timeout: float) -> tuple[int, str]:
    """Replay the whole spool on this thread (`vlhook spool replay`), each piece within
    `timeout` seconds. Returns (files left, why delivery stopped: "" when it did not)."""
    import itertools

    from vlhook._delivery.client import Client, Health
    from vlhook._delivery.spool import Spool
    from vlhook._entry import EntryBuilder
    from vlhook._sync import Cancel

    spool = Spool(config.spool_dir, config.spool_max_bytes, stats)
    replayer = Replayer(spool, stats, EntryBuilder(config, stats))
    client = Client(config, stats, Health(len(config.endpoints), stuck_s=timeout))
    cancel, problem = Cancel(), ""
    try:
        for seq in itertools.count(1):
            batch = replayer.next_batch(seq)
            if batch is None:
                break
            cancel.deadline = time.monotonic() + timeout
            outcome = client.deliver(bytes(batch.body), batch.lines, cancel)
            if not replayer.settle(batch, outcome):
                problem = outcome.reason or "the server did not take it"
                break
    finally:
        replayer.stop()
        client.close()
    return len(spool.files()), problem
