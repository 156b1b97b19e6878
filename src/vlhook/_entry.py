"""Entries: what one line or record becomes before it is encoded.

Runs on the sender thread. Plain text gets a level from its leading form (_levels); a JSON
object keeps its keys with its message, level and time keys mapped (_objects); a logging record
gets its logger, code location, thread, exception and extra fields; what logging libraries
print is understood as such (_formats). Every entry gets the context captured with it, is
redacted, and a message longer than the line budget is split into numbered parts.
"""

from __future__ import annotations

import time
from _operator import attrgetter, getitem, itemgetter, mod
from itertools import chain, repeat

from vlhook import _codec
from vlhook._captures import STREAM_NAME, Event, Record, Uncaught
from vlhook._captures import line as make_line
from vlhook._config import Config
from vlhook._context import OWN_NAMES, TRACE_FIELDS, kept_apart, source_keys
from vlhook._context import apply as apply_context
from vlhook._context import fields_of as context_fields
from vlhook._delivery.encode import clean as valid_utf8
from vlhook._delivery.encode import constant_fields, writable
from vlhook._formats import (
    head_and_traceback,
    is_lambda_error,
    lambda_error,
    readable,
    strip_colours,
    traceback_fields,
)
from vlhook._levels import COLOUR, Hay, detect_level, level_name, named_level
from vlhook._lines import is_traceback_start
from vlhook._objects import (
    MAX_FIELDS,
    MAX_VALUE_CHARS,
    MSG_KEYS,
    Shape,
    Taken,
    map_json,
    merge_fields,
    object_fields,
    parse_json,
    record_object,
    record_taken,
    shape_of,
    taken,
    usable_level,
    valid_time,
)
from vlhook._redact import MASK, NOT_A_SECRET, examiner_for, field_name, holds_nothing
from vlhook._stats import Stats
from vlhook._tracecontext import is_hex

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from collections.abc import Iterable, Sequence
    from typing import Any, Optional, TypeVar, Union

    from vlhook._captures import Capture, Context, Line
    from vlhook._lines import LineRun

    Entry = dict[str, Any]
    T = TypeVar("T")
else:
    Entry = dict

MAX_KEY_BYTES = 128
#: A context (or a record's `extra=` fields) longer than this as JSON makes the entry whole:
#: with a message of up to VICTORIALOGS_MAX_LINE_BYTES (at most half the server's line limit)
#: and one of each, an entry written here stays below that limit.
MAX_CONTEXT_BYTES = 16 << 10

_sec_cache: list[Any] = [-1, ""]
_SOURCE_KEY = source_keys.get  # the registry is never replaced: see _sources
_FIRST = itemgetter(0)
# Fields of a Record and of its LogView, read over a run of records with C calls.
_VIEW, _T_NS, _CONTEXT, _LEVELNO, _MESSAGE, _PRINTED = map(
    attrgetter, ("record", "t_ns", "context", "levelno", "message", "printed")
)
_MSG, _EXC_INFO, _EXC_TEXT, _STACK_INFO, _EXTRAS = map(
    attrgetter, ("msg", "exc_info", "exc_text", "stack_info", "extras")
)
_LOCATION = attrgetter("name", "pathname", "lineno", "funcName", "threadName")  # _locations' key


def rfc3339(t_ns: int) -> str:
    sec = t_ns // 1_000_000_000
    if sec != _sec_cache[0]:
        _sec_cache[:] = [sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))]
    head: str = _sec_cache[1]
    return f"{head}{t_ns - sec * 1_000_000_000:09d}Z"


class EntryBuilder:
    def __init__(self, config: Config, stats: Stats) -> None:
        self.stats = stats
        self.max_line_bytes = config.max_line_bytes
        # Lines are written as JSON here only when no constant field (vlhook's, those of
        # VICTORIALOGS_FIELDS) has one of their keys: the encoder lets an entry's own key
        # replace the constant one, and a line written here would carry both.
        self._constant_names = frozenset(constant_fields(config))
        self.writes_lines = WRITTEN_KEYS.isdisjoint(self._constant_names)
        self.redactor = examiner_for(config)
        #: vlhook's own context fields that the deny list leaves alone (no built-in pattern
        #: matches their names, so this loads no `re`): see _own.
        self._trusted_names = frozenset(
            name for name in TRUSTED_CONTEXT if not field_name(name).endswith(self.redactor.names)
        )
        #: vlhook._records, loaded with the first record or exception (it imports traceback).
        self._records: Any = None
        # Whether the names of a record's location fields are never masked or renamed (only a
        # VICTORIALOGS_REDACT_KEYS entry such as "file" would do that). Told at the first
        # record: asking compiles the patterns, which a process of plain lines may never need.
        self._location_names_clean: Optional[bool] = None
        #: Whether plain records are written as JSON here (see written_records): as for lines,
        #: only when no constant field has one of their keys, and when no redaction rule can
        #: touch their names either (told at the first record, as above).
        self._writes_records: Optional[bool] = None
        #: A record's location (logger, file, line, function, thread) -> those fields written
        #: as JSON, or "" when they need examining; few distinct ones, many records each.
        self._locations: dict[tuple[Any, ...], str] = {}
        #: The last context written with a record, and with a plain line (see _context_text).
        self._record_context = Held(RECORD_KEYS)
        self._line_context_held = Held(PLAIN_KEYS)
        #: Names (a JSON line's keys, a record's `extra=`) -> whether none needs examining.
        self._plain_keys: dict[tuple[str, ...], bool] = {}
        #: A JSON line's keys -> how its object is written here, or None (see _written_object).
        self._shapes: dict[tuple[str, ...], Optional[Shape]] = {}
        #: A record's message that is a dict, and a JSON object its handlers printed: their
        #: keys -> how from_record takes them (see _structured).
        self._record_shapes: dict[tuple[Any, ...], Optional[Taken]] = {}
        self._printed_shapes: dict[tuple[Any, ...], Optional[Taken]] = {}
        #: A nested dict's path and names -> its names' paths if the redactor leaves them as
        #: they are, else None (see _untouched_paths).
        self._untouched_names: dict[tuple[str, tuple[Any, ...]], Optional[tuple[str, ...]]] = {}
        self._walk_left = 0  # values _plain_leaves may still walk for the entry at hand
        #: The secrets' literals lower-cased, for the search made where levels are searched;
        #: one that holds another (`private key`, `key`) is found by that one's search.
        lowered = {needle.lower() for needle in self.redactor.needles or ()}
        self._lowered_needles = tuple(sorted(
            needle for needle in lowered if not any(other in needle for other in lowered - {needle})
        ))  # fmt: skip

    def constants(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields every entry carries (VICTORIALOGS_FIELDS, container_name, job...),
        redacted as any field is, once: a secret's name or a pattern masks them too. Without
        a secret's literal or a user pattern no regular expression is compiled (a short-lived
        process then never loads `re`)."""
        redactor = self.redactor
        if not redactor.active:
            return fields
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if field_name(key).endswith(redactor.names):
                value = MASK
            elif isinstance(value, str) and self._may_hold_secret(value):
                value = redactor(value) or value
            out[(self._may_hold_secret(key) and redactor(key)) or key] = value
        return out

    def _may_hold_secret(self, text: str) -> bool:
        if self.redactor.needles is None:
            return True
        lowered = text.lower()
        return any(needle in lowered for needle in self._lowered_needles)

    def from_line(self, line: Line, clean: bool = False) -> list[Entry]:
        """The entries of one line. `clean`: a search found no secret's literal in its text."""
        kind, text, t_ns, context, forced = line
        if "\x1b" in text:
            text = strip_colours(text)
        entry: Entry = {"_time": rfc3339(t_ns), "_msg": text, "level": forced or "INFO",
                        "stream": STREAM_NAME[kind]}  # fmt: skip
        if forced:
            return self._traceback(entry, text, context)
        obj = parse_json(text)
        if obj is not None:
            if self.redactor.active and not any(
                isinstance(obj.get(key), str) and obj[key] for key in MSG_KEYS
            ):
                entry["_msg"] = self._object_message(obj, text)
            map_json(obj, entry)
            if clean and not context and self._nothing_to_examine(entry, text):
                return self.finish(entry, None, examined=True)
            return self.finish(entry, context)
        if is_lambda_error(text):
            entry.update(lambda_error(text), level="ERROR")
            return self.finish(entry, context)
        entry["level"] = detect_level(text)
        return self.finish(entry, context, only_message=not context)

    def _traceback(self, entry: Entry, text: str, context: Optional[Context]) -> list[Entry]:
        """A printed traceback (ERROR), or a record's line with the traceback written with it:
        that line is the message, its level the entry's, the traceback `exception.*`."""
        if is_traceback_start(text):
            entry.update(traceback_fields(text))
            return self.finish(entry, context)
        head, trace = head_and_traceback(text)
        entry["_msg"] = head
        entry["level"] = named_level(head) or entry["level"]
        if trace:
            entry.update(traceback_fields(trace))
            entry["exception.stacktrace"] = trace
        return self.finish(entry, context)

    def from_lines(self, lines: list[Line]) -> list[Entry]:
        """Entries for a batch of lines, as from_line makes them. The searches for a level word
        and for a secret run once over the batch; a plain line that neither finds, short enough
        not to split, with no context or only vlhook's own (trace ids, the invocation), is built
        here in a few steps."""
        return self._batch(lines, written=False)  # type: ignore[return-value]

    def written_lines(self, lines: list[Line]) -> list[Union[Entry, str]]:
        """As from_lines, but such a plain line without context comes already written as JSON
        (`"_time":...,"stream":"stdout"}`, the object without its opening brace, where the
        encoder puts the constant fields): no dict and no encoder call per line."""
        return self._batch(lines, written=True)

    def _batch(self, lines: list[Line], written: bool) -> list[Union[Entry, str]]:
        hay = Hay([line.text for line in lines])
        secrets = self._lines_with_secrets(hay)
        # Searched at the first plain line: a group of JSON objects needs no level search.
        levels: Optional[set[int]] = NOT_SEARCHED
        limit = self.max_line_bytes // 6
        string = _codec.string
        out: list[Union[Entry, str]] = []
        second, head = -1, ""  # rfc3339, inlined: the lines of a batch share their seconds
        told: Optional[Context] = None  # the last context told own or not, and what it was
        own = False
        for index, line in enumerate(lines):
            kind, text, t_ns, context, forced = line
            if (forced or text[:1] == "{" or len(text) > limit or secrets is None or (
                    secrets and index in secrets and self._redaction_changes(text))):  # fmt: skip
                clean = secrets is not None and not (secrets and index in secrets)
                out.extend(self._line_written(line, clean) if written else
                           self.from_line(line, clean))  # fmt: skip
                continue
            level = "INFO"
            if levels is NOT_SEARCHED:
                levels = hay.level_candidates()
            if levels is None or (levels and index in levels):
                if _read_whole(text):
                    out.extend(self.from_line(line))
                    continue
                level = detect_level(text)
            if written and not context and self.writes_lines:
                if t_ns // 1_000_000_000 != second:
                    second = t_ns // 1_000_000_000
                    head = rfc3339(t_ns)[:-10]  # "YYYY-MM-DDTHH:MM:SS."
                out.append(f'"_time":"{head}{t_ns % 1_000_000_000:09d}Z","_msg":{string(text)},'
                           f'"level":"{level}","stream":"{STREAM_NAME[kind]}"}}')  # fmt: skip
                continue
            entry = {"_time": rfc3339(t_ns), "_msg": text, "level": level,
                     "stream": STREAM_NAME[kind]}  # fmt: skip
            if context:
                apply_context(entry, context)
                if context is not told:  # a process-wide context is one object: told once
                    told, own = context, self._own(context_fields(context))
                if len(entry) > 4 and not own:
                    out.extend(self.from_line(line))  # the program's own fields: the full path
                    continue
            out.append(entry)
        return out

    def written_run(self, run: LineRun) -> Optional[list[Union[Entry, str]]]:
        """written_lines for a run of whole lines (see LineAssembler.whole_lines), told by the
        group's searches: the lines written in one comprehension, with the level a line names
        where the search found a level word, and its context's fields when they are all
        vlhook's own; a line with a secret, a JSON object, colour codes or too much for one
        entry made whole by from_line in its place, one with fields of the program's own by
        _batch. None when lines are not written here (see `writes_lines`), or when most are
        JSON objects or too long, or when the searches cannot tell (see Hay.lines_with):
        written_lines then."""
        kinds, texts, times, contexts = run
        if not self.writes_lines:
            return None
        # Made whole, as from_line makes them: JSON objects, lines too long, secrets, colours.
        whole = set(self._unwritten(texts))
        if len(whole) > len(texts) // 2:
            return None  # mostly JSON, say: written_lines takes them at less cost
        hay = Hay(texts)
        levels = hay.level_candidates()
        secrets = self._lines_with_secrets(hay)
        if levels is None or secrets is None:
            return None
        whole.update(index for index in secrets
                     if index not in whole and self._redaction_changes(texts[index]))  # fmt: skip
        whole.update(index for index in levels if _read_whole(texts[index]))
        tails: Iterable[Optional[str]] = repeat("")
        apart: set[int] = set()  # context of the program's own: _batch's path, line by line
        if any(contexts):
            tails = list(map(self._line_context, contexts))
            apart = {index for index, tail in enumerate(tails) if tail is None}
            whole.difference_update(apart)
        named = {index: detect_level(texts[index]) for index in levels
                 if index not in whole and index not in apart}  # fmt: skip
        level_of: Iterable[str] = (
            [named.get(index, "INFO") for index in range(len(texts))] if named else repeat("INFO")
        )
        heads, streams = _heads_and_streams(kinds, times)
        # As _batch writes each, in one comprehension (no Python call per line).
        out: list[Union[Entry, str]] = [
            f'"_time":"{head}{ns}Z","_msg":"{message}","level":"{level}","stream":"{stream}"'
            f'{tail}}}'
            for head, ns, message, level, stream, tail in zip(
                heads, _nanoseconds(times), _string_contents(hay), level_of, streams, tails
            )
        ]  # fmt: skip
        for index in sorted({*whole, *apart}, reverse=True):  # from the end: indexes stay valid
            line = make_line(kinds[index], texts[index], times[index], contexts[index])
            out[index : index + 1] = self._batch([line], True) if index in apart else \
                self._line_written(line, index not in secrets)  # fmt: skip
        return out

    def _redaction_changes(self, text: str) -> bool:
        """Whether redaction changes a plain text that a group's search found a secret's
        literal or name in; if not, it is written as any plain text is. Most such texts hold
        nothing to mask: a URL (`://`: the line httpx logs for every request), `key` in
        `monkey`, `auth` in `author`. Made whole, such a request line cost the sender ~15 µs
        against ~2 µs for a plain line (figure 6); one redactor call is a third of that, and a
        text it changes is made whole and redacted there (colour codes are read without)."""
        return "\x1b" in text or self.redactor(text) is not None

    def _unwritten(self, texts: list[str]) -> list[int]:
        """Indexes of the lines _batch never writes as JSON itself: objects, and lines too
        long for one entry."""
        firsts = "".join(map(_FIRST, texts))
        found = [index for index, char in enumerate(firsts) if char == "{"] if "{" in firsts \
            else []  # fmt: skip
        limit = self.max_line_bytes // 6
        if max(map(len, texts)) > limit:
            found.extend(index for index, text in enumerate(texts) if len(text) > limit)
        return found

    def _lines_with_secrets(self, hay: Hay) -> Any:
        """Indexes of the texts holding a secret's literal (searched lower-cased where the
        texts' levels were: a few lines more, one search less); None when a pattern of the
        user's may match anything, or when lower-casing the group cannot be trusted (an `İ`
        in it): a secret's name is found in any case (`cardNumber`, `PaSSword`), which
        searches for a few spellings of it would miss."""
        needles = self.redactor.needles
        if needles is None:
            return None
        if not needles:
            return ()
        return hay.lines_with(self._lowered_needles, lower=True)

    def from_item(self, item: Capture) -> list[Entry]:
        """Entries for a capture made whole: a logging record, an uncaught exception, or another
        logging library's record. One the program's objects keep from being made (an attribute
        that raises, a value that is no exception) still goes, as an entry that says so: an
        exception out of here took the whole group of captures popped with it, uncounted."""
        try:
            return self._from_item(item)
        except Exception as exc:  # said in the entry itself, where the user looks
            from vlhook._diag import debug

            debug(f"an entry could not be made: {type(exc).__name__}: {exc}")
            return self._unmade(item, exc)

    def _from_item(self, item: Capture) -> list[Entry]:
        if item.__class__ is Record:
            return self.from_record(item)
        if item.__class__ is Uncaught:
            return self.from_exception(item)
        if item.__class__ is Event:
            return self.from_event(item)
        return []

    def written_records(self, items: list[Capture]) -> list[Union[Entry, str]]:
        """Entries for a run of records and exceptions, as from_item makes them; a plain
        logging record (see _written_record) comes already written as JSON, like a plain line:
        no dict and no encoder call for it. The search for secrets in the messages runs once
        over the run."""
        if not self._records_written():
            return [entry for item in items for entry in self.from_item(item)]
        run = self._written_record_run(items)
        if run is not None:
            return run
        messages = [item.message if isinstance(item, Record) else "" for item in items]
        secrets = self._lines_with_secrets(Hay(messages))
        if secrets:  # a dict's repr is not what is written: its fields are examined whole
            secrets = {index for index in secrets if isinstance(items[index].record.msg, dict)
                       or self._redaction_changes(messages[index])}  # fmt: skip
        out: list[Union[Entry, str]] = []
        for index, item in enumerate(items):
            written = "" if secrets is None or (secrets and index in secrets) else \
                self._written_record(item)  # fmt: skip
            if written:
                out.append(written)
            else:
                out.extend(self.from_item(item))
        return out

    def _written_record_run(self, items: list[Capture]) -> Optional[list[Union[Entry, str]]]:
        """written_records for a run of plain records that share one context, as
        _written_record writes each, told with a few C calls over the run and written in one
        comprehension (no Python call per record); a record with a secret made whole by
        from_item in its place. None when any record is not plain: written_records then."""
        # Cheapest and most often decisive first: records with fields the program bound (its
        # first one's, when they all share a context) go record by record at once.
        if set(map(type, items)) != {Record}:
            return None
        context = self._written_context(items[0].context)
        if context is None:
            return None
        views = list(map(_VIEW, items))
        extras = self._run_extras(views, items[0].context)
        if extras is None:
            return None
        messages = self._plain_messages(items, views)
        if messages is None:
            return None
        hay = Hay(messages)
        if hay.count(COLOUR):  # a message with escape sequences is read without them
            return None
        secrets = self._lines_with_secrets(hay)
        if secrets is None:  # no search can tell: every record is examined whole
            return None
        locations = self._record_locations(views)
        if locations is None:
            return None
        levels = list(map(_LEVELNO, items))
        names = {levelno: level_name(levelno) for levelno in set(levels)}
        times = list(map(_T_NS, items))
        out: list[Union[Entry, str]] = [
            f'"_time":"{head}{ns}Z","_msg":"{message}","level":"{level}","stream":"logging",'
            f"{location}{extra}{context}}}"
            for head, ns, message, level, location, extra in zip(
                _heads(times), _nanoseconds(times), _string_contents(hay, messages=True),
                map(names.__getitem__, levels), locations, extras,
            )
        ]  # fmt: skip
        for index in sorted(secrets, reverse=True):  # from the end: indexes stay valid
            if self._redaction_changes(messages[index]):
                out[index : index + 1] = self.from_item(items[index])
        return out

    def _plain_messages(self, items: list[Capture], views: list[Any]) -> Optional[list[str]]:
        """The records' messages when every record is one _written_record writes (no
        exception or stack, a message that is not an object and fits one entry, no JSON
        printed by its handlers) and they share one context; None otherwise. The cheapest
        tests first: a run that is not plain costs ~0.1 µs a record here."""
        count = len(items)
        if (any(map(_EXC_INFO, views)) or any(map(_EXC_TEXT, views))
                or any(map(_STACK_INFO, views))):  # fmt: skip
            return None
        messages: list[str] = list(map(_MESSAGE, items))
        contexts = list(map(_CONTEXT, items))
        try:  # equal, not only the same: a context read from a reader is made at each capture
            shared = contexts.count(contexts[0]) == count
        except Exception:  # a value bound by the program whose == raises (an array, say)
            return None
        if shared and contexts[0] and not self._own(context_fields(contexts[0])):
            # The program's values may be equal and still written apart (1 and True): its
            # fields are written for the run when every record has the same sources.
            shared = len(set(map(_sources, contexts))) == 1
        if (
            not shared
            or "{" in "".join([message[:1] for message in messages])
            or max(map(len, messages)) * 6 > self.max_line_bytes
            or "{" in "".join(chain.from_iterable(map(_PRINTED, items)))
            or any(map(isinstance, map(_MSG, views), repeat(dict)))  # msg: an object
        ):
            return None
        return messages

    def _record_locations(self, views: list[Any]) -> Optional[list[Optional[str]]]:
        """Each record's location fields written as JSON (see _write_location), remembered by
        their values; None when one needs examining or cannot be remembered."""
        keys = list(map(_LOCATION, views))
        try:
            locations = list(map(self._locations.get, keys))
        except TypeError:  # a value that cannot be hashed: the general path says what it is
            return None
        for index, location in enumerate(locations):
            if location is None:
                location = self._write_location(*keys[index])
                locations[index] = _remember(self._locations, keys[index], location)
        return None if "" in locations else locations

    def _records_written(self) -> bool:
        if self._writes_records is None:
            names = self.redactor.name
            self._writes_records = RECORD_KEYS.isdisjoint(self._constant_names) and not any(
                any(names(key)) for key in RECORD_KEYS - OWN_FIELDS - NAMES_NOT_JUDGED
            )
        return self._writes_records

    def _written_record(self, item: Capture) -> str:
        """A logging record written as JSON, as from_record and the encoder would write it,
        when its entry is its message, level, location, context fields and plain fields of
        its own (see _written_extras: its `extra=`, or those of its message that is a dict,
        see _structured), and nothing else: no exception, stack, JSON printed by its
        handlers (but for a dict's), message too long for one entry, or location or field
        that needs examining. "" else."""
        if item.__class__ is Event:
            return self._written_event(item)
        if not isinstance(item, Record):
            return ""
        record, message, printed = item.record, item.message, item.printed
        if record.exc_info or record.exc_text or record.stack_info:
            return ""
        extras = record.extras
        if isinstance(record.msg, dict) and not record.args:
            structured = None if extras else self._structured(record, printed)
            if structured is None:
                return ""
            message, extras = structured
        elif message[:1] == "{" or (printed and "{" in "".join(printed)):
            return ""
        if "\x1b" in message:
            message = readable(message)
        if len(message) * 6 > self.max_line_bytes:
            return ""
        # (no `extra=` left when all were private: `_name`)
        tail = self._record_tail(_LOCATION(record), extras, item.context)
        if not tail:
            return ""
        level = level_name(item.levelno)
        return (f'"_time":"{rfc3339(item.t_ns)}","_msg":{_codec.string(message)},'
                f'"level":"{level}","stream":"logging",{tail}')  # fmt: skip

    def _written_event(self, item: Event) -> str:
        """Another logging library's record (loguru's) written as JSON, as from_event and the
        encoder write it, when its integration's fields are a record's (EVENT_HEAD: time,
        message, level, location) and then fields of its own, and nothing in them needs
        examining, as for a plain logging record (see _written_record). "" else (from_event
        then makes them again, and says what failed if they cannot be made)."""
        try:
            fields = item.fields(item.data)
        except Exception:
            return ""
        keys = tuple(fields)
        if keys[:8] != EVENT_HEAD:  # (a field kept apart, EVENT_OWN, is no plain extra one)
            return ""
        stamp, message, level = fields["_time"], fields["_msg"], fields["level"]
        if (stamp.__class__ is not str or level.__class__ is not str
                or message.__class__ is not str or len(message) * 6 > self.max_line_bytes
                or self.redactor.may_match(message)):  # fmt: skip
            return ""
        extras = {key: fields[key] for key in keys[8:]}
        tail = self._record_tail(tuple(map(fields.__getitem__, keys[3:8])), extras, item.context)
        if not tail:
            return ""
        string = _codec.string
        return (f'"_time":{string(stamp)},"_msg":{string(message)},"level":{string(level)},'
                f'"stream":"logging",{tail}')  # fmt: skip

    def _record_tail(
        self, location_key: tuple[Any, ...], extras: Optional[Entry], context: Optional[Context]
    ) -> str:
        """What follows a record's message, level and stream written as JSON: its location
        (see _location), its own fields (see _written_extras) and its context's (see
        _written_context), and the closing brace; "" when one of them needs examining."""
        written = self._written_context(context)
        if written is None:
            return ""
        if extras:
            own = self._written_extras(extras, self._record_context if context else None)
            if own is None:
                return ""
            written = own + written
        location = self._location(location_key)
        return f"{location}{written}}}" if location else ""

    def _location(self, key: tuple[Any, ...]) -> str:
        """A record's location fields (key: its logger, file, line, function and thread)
        written as JSON, remembered by their values; "" when they need examining or cannot
        be remembered."""
        try:
            location = self._locations.get(key)
        except TypeError:  # a value that cannot be hashed: the general path says what it is
            return ""
        if location is None:
            location = _remember(self._locations, key, self._write_location(*key))
        return location

    def _structured(self, record: Any, printed: list[str]) -> Optional[tuple[str, Entry]]:
        """A record's message that is a dict (structlog's event dict, through logging) as
        from_record takes it: its message, and its fields with those of the JSON its
        handlers printed (structlog's ProcessorFormatter renders that dict) written over
        them; a `logger` field that names the record's logger is the record's own. None when
        from_record may take them otherwise (see record_taken, taken). (A secret's literal in
        the message is in the dict's repr too, the record's message the group's search
        read: such a record comes here no more than a plain one.)"""
        msg = record.msg
        keys = tuple(msg)
        try:
            shape = self._record_shapes[keys]
        except KeyError:
            shape = _remember(self._record_shapes, keys, record_taken(keys))
        if shape is None:
            return None
        message = msg[shape.msg]
        if message.__class__ is not str or not message:
            return None
        fields = dict(zip(shape.kept, map(msg.__getitem__, shape.kept)))
        for text in printed:
            obj = parse_json(text.strip()) if "{" in text else None
            if obj is not None:
                keys = tuple(obj)
                try:
                    printed_shape = self._printed_shapes[keys]
                except KeyError:
                    printed_shape = _remember(self._printed_shapes, keys, taken(keys, False))
                if printed_shape is None:
                    return None
                fields.update(zip(printed_shape.kept, map(obj.__getitem__, printed_shape.kept)))
        logger = fields.pop("logger", record.name)
        if logger.__class__ is not str or logger != record.name:
            return None
        return message, fields

    def _written_extras(self, extras: dict[str, Any], context: Optional[Held]) -> Optional[str]:
        """A record's fields of its own (`extra=`, or its message's, see _structured; one at
        least) written as JSON, with a leading comma, when finish() would leave them as they
        are in its entry, with its context's (the one held, if any): of plain types, short,
        without a secret's literal, and named as no secret, none of the record's or vlhook's
        own fields, no trace field, no constant field and none of the context's (each of
        those is replaced, kept apart, merged or dropped there), and with the rest of the
        entry no more fields than the server keeps (else it is folded). None else: made
        whole."""
        values = extras.values()
        context_names = context.names if context else NO_FIELDS
        if (
            not context_names.isdisjoint(extras)
            or not NOT_EXTRA_NAMES.isdisjoint(extras)
            or not self._constant_names.isdisjoint(extras)
            or not self._plain_names(tuple(extras))
        ):
            return None
        texts = [value for value in values if value.__class__ is str]
        if texts and max(map(len, texts)) > MAX_VALUE_CHARS:  # cut there
            return None
        leaves = len(extras)
        if not SCALARS.issuperset(map(type, values)):  # nested: walked, its text kept
            texts = []
            leaves = self._walked_leaves(extras, texts)
        count = context.field_count() if context else 0
        if (
            leaves < 0
            or leaves + len(RECORD_KEYS) + count > MAX_FIELDS
            or (texts and self.redactor.may_match("\n".join(texts)))
        ):
            return None
        try:
            written = _codec.dumps(extras)  # what the encoder writes of them
        except Exception:  # an integer past 64 bits, a lone surrogate: the encoder's fallbacks
            return None
        if len(written) > MAX_CONTEXT_BYTES:  # the encoder shrinks only what it writes
            return None
        text = written[1:-1].decode("utf-8")
        # A NaN or an infinity, which orjson writes as null: _sanitize makes it text. Looked
        # for only where orjson wrote a null, not by a test of every number the walk meets
        # (+100-200 ns for a nested `extra=` of four numbers); searched as text: `in` on bytes
        # costs ~8 times as much (it tries an int first). orjson refuses an integer past 64
        # bits (above).
        if "null" in text and not _codec.finite(values):
            return None
        return "," + text

    def _walked_leaves(self, fields: Entry, texts: list[str]) -> int:
        """How many fields the server makes of an entry's fields with nested values (a JSON
        line's object, a record's `extra=`) when _sanitize would leave them as they are but
        for their text, which is put in `texts` for one search; else -1 (see _plain_leaves).
        """
        self._walk_left = MAX_WALKED
        return self._plain_leaves(fields, MAX_DEPTH + 1, texts)

    def _plain_leaves(self, value: Any, depth: int, texts: list[str], path: str = "") -> int:
        """How many fields the server makes of a dict, list or tuple (as _leaves counts them:
        a list is one) when _sanitize would leave it as it is but for its text (put in
        `texts`); else -1. Entered as the redactor enters it at `depth` (see Redactor._enter,
        _dict and _list): dicts whose names are text and name no secret, no (name, value)
        pair whose name is one, and text, numbers, booleans and null as its leaves (anything
        else the redactor makes text, or the encoder writes its own way; a number JSON has no
        form for is the caller's to tell, see _written_extras). `path`: where a dict here is
        stored once the server flattens it (its names are told by that path too, see
        Redactor.secret_under). At most MAX_WALKED
        values in all: a value inside itself runs out of them. (An entry's fields written
        here, and the context written with them, are each within MAX_CONTEXT_BYTES or
        MAX_VALUE_CHARS: together far fewer values than the redactor examines per entry.)"""
        self._walk_left -= len(value)
        if depth <= 0 or self._walk_left < 0:
            return -1
        if value.__class__ is dict:
            paths = self._untouched_paths(tuple(value), path)
            if paths is None:
                return -1
            items: Any = value.values()
        else:
            first = value[0] if len(value) == 2 else None
            if first.__class__ is str and self.redactor.name(first)[0]:
                return -1
            items, paths = value, None  # an array is stored as text: no path in it
        count = 0
        index = -1  # counted, not enumerate(): ~0.1 µs less a container (figure 6)
        for item in items:
            index += 1
            kind = item.__class__
            if kind is str:
                texts.append(item)
            elif kind is dict or kind is list or kind is tuple:
                inner = paths[index] if paths else ""
                leaves = self._plain_leaves(item, depth - 1, texts, inner)
                if leaves < 0:
                    return -1
                count += leaves - 1
            elif not (kind is int or kind is float or kind is bool or item is None):
                return -1
            count += 1
        return count if value.__class__ is dict else 1

    def _untouched_paths(self, names: tuple[Any, ...], path: str) -> Optional[tuple[str, ...]]:
        """Where the server stores the values of a nested dict of these names, stored at
        `path` (see Redactor.path_under), when the redactor leaves the dict as it is,
        names-wise: all text, none a secret's (alone or flattened, see
        Redactor.secret_under) or changed by a pattern; else None. Remembered per path and
        names."""
        key = (path, names)
        try:
            return self._untouched_names[key]
        except KeyError:
            pass
        redactor = self.redactor
        untouched = all(name.__class__ is str for name in names) and not any(
            any(redactor.name(name)) or redactor.secret_under(path, name) for name in names
        )
        paths = tuple(redactor.path_under(path, name) for name in names) if untouched else None
        return _remember(self._untouched_names, key, paths)

    def _run_extras(self, views: list[Any], context: Optional[Context]) -> Optional[Any]:
        """Each record's `extra=` fields written (see _written_extras; "" for none), or None
        when one cannot be written here. After _written_context(context), the run's."""
        all_extras = list(map(_EXTRAS, views))
        if not any(all_extras):
            return repeat("")
        held = self._record_context if context else None
        written: list[str] = []
        for extras in all_extras:
            text = self._written_extras(extras, held) if extras else ""
            if text is None:
                return None  # at the first: a run that is not plain costs little here
            written.append(text)
        return written

    def _written_context(self, context: Optional[Context]) -> Optional[str]:
        """A record's context written as JSON fields (with a leading comma), as the record's
        entry made whole has them; None when the record must be made whole (see
        _context_text). The records of one invocation or request share their context."""
        return self._context_text(context, self._record_context) if context else ""

    def _line_context(self, context: Optional[Context]) -> Optional[str]:
        """A plain line's context written as JSON fields, as the line's entry made whole has
        them; None when the line must be made whole (see _context_text)."""
        return self._context_text(context, self._line_context_held) if context else ""

    def _context_text(self, context: Context, held: Held) -> Optional[str]:
        """A context's fields written as JSON, with a leading comma, held for the next entries
        of the same context: the same sources (a capture reads its sources into a tuple of
        its own: entries written together share the sources, not the tuple), or fields of
        the same plain values (structlog's context is a snapshot per capture). vlhook's own
        fields are written as they are (a record's only when no redaction rule touches them:
        a record's fields are all examined); the program's are examined (_examined_text)."""
        if context is held.context:
            return held.text
        sources = _sources(context)
        if sources != held.sources:
            fields = context_fields(context)  # a source's own dict: read, never changed
            content = _content(fields)
            if content is None or content != held.content:
                held.text = self._written_fields(fields, held.keys)
                held.content, held.names = content, frozenset(fields)
                held.fields, held.leaves, held.as_examined = fields, None, None
            held.sources = sources
        # Held with its context, whose sources then stay alive: no identity compared with
        # theirs can be another object's (see _sources).
        held.context = context
        return held.text

    def _written_fields(self, fields: Entry, keys: frozenset[str]) -> Optional[str]:
        """A context's fields as JSON for an entry of `keys` (see _context_text)."""
        if not self._own(fields):
            return self._examined_text(fields, keys)
        if keys is RECORD_KEYS and self._touched(fields):
            return None
        return _fields_text(fields)

    def _touched(self, fields: Entry) -> bool:
        """Whether a redaction rule would change one of these fields' names or values."""
        names, texts = self.redactor.name, [v for v in fields.values() if v.__class__ is str]
        return any(any(names(key)) for key in fields) or self.redactor.may_match("\n".join(texts))

    def _examined_text(self, fields: Entry, keys: frozenset[str]) -> Optional[str]:
        """Fields of the program's own (bound with vlhook.bind(), structlog, loguru) examined
        as finish() examines them in an entry of `keys`, here once for all the entries that
        share them, and written as JSON. None when the entry must be made whole: a field is
        redacted (counted per entry) or takes one of `keys` (the entry's own wins), the entry
        may have to be folded, a field takes a constant field's name (the encoder merges
        those), or the fields are long (the encoder shrinks only the entries it writes)."""
        if not keys.isdisjoint(fields):
            return None
        fields = dict(fields)  # examined in a copy: never the source's own dict
        self._sanitize(fields, counted=False)
        if (
            self.redactor.hits
            or _leaves(fields, MAX_FIELDS) + len(keys) > MAX_FIELDS
            or not self._constant_names.isdisjoint(fields)
        ):
            return None
        try:
            written = _codec.dumps(fields)
        except Exception:  # what only the encoder's fallbacks can write
            return None
        if len(written) > MAX_CONTEXT_BYTES:
            return None
        return "," + written[1:-1].decode("utf-8") if fields else ""

    def _own(self, fields: Entry) -> bool:
        """Whether the fields are all vlhook's own, made from ids (a trace's, a span's, a
        Lambda invocation's), so that no redaction rule can change them, and no constant field
        has their names (the encoder would merge the two). Told by name and by value: under
        those names a program may bind any text (`vlhook.bind(trace_id=...)`), and a Lambda
        caller may send any (its client context's `custom.trace_id`), which is examined as any
        field is; and the deny list (`VICTORIALOGS_REDACT_KEYS`) may name one of these. A
        pattern of the user's may match an id too: its literals are looked for in them (with a
        pattern that has none, lines and records are made whole before this is asked: see
        _lines_with_secrets, _touched)."""
        values = fields.values()
        return (
            self._trusted_names.issuperset(fields)
            and self._constant_names.isdisjoint(fields)
            and _made_from_ids(values)
            and not self.redactor.theirs_may_match([v for v in values if v.__class__ is str])
        )

    def _write_location(self, name: Any, path: Any, line: Any, function: Any, thread: Any) -> str:
        """A record's location fields written as JSON, or "" when they need examining."""
        if line.__class__ is not int or not self._location_clean((name, path, function, thread)):
            return ""
        string = _codec.string
        return (f'"logger":{string(name)},"code.file":{string(path)},"code.line":{line},'
                f'"code.function":{string(function)},"thread":{string(thread)}')  # fmt: skip

    def from_record(self, item: Record) -> list[Entry]:
        record, t_ns, _thread, context, levelno, message, texts = item
        entry: Entry = {
            "_time": rfc3339(t_ns),
            "_msg": message,
            "level": level_name(levelno),
            "stream": "logging",
            "logger": record.name,
            "code.file": record.pathname,
            "code.line": record.lineno,
            "code.function": record.funcName,
            "thread": record.threadName,
        }
        records = self._records or self._load_records()
        structured = record_object(record.msg, record.args, message)
        if structured is not None:
            entry.update(object_fields(structured, keep_message=True))
        # As a printed line's: werkzeug colours its request line in the message itself (and a
        # structlog event's message is read so too).
        shown = entry["_msg"]
        if shown.__class__ is str and "\x1b" in shown:
            entry["_msg"] = readable(shown)
        entry.update(records.exception_fields(record))
        merge_fields(entry, records.extra_fields(record))  # `extra={"level": ...}`: kept apart
        for text in texts or ():
            obj = parse_json(text.strip())
            if obj is not None:
                for key, value in object_fields(obj, keep_message=False).items():
                    if key.startswith("exception."):
                        entry.setdefault(key, value)  # the record's own exception first
                    else:
                        entry[key] = value
        return self.finish(entry, context, trusted=self._clean_location(entry, record))

    def _load_records(self) -> Any:
        # Once: an import statement costs ~0.7 µs each time it runs, a tenth of a record's entry.
        from vlhook import _records

        self._records = _records
        return _records

    def _clean_location(self, entry: Entry, record: Any) -> frozenset[str]:
        """The location fields (logger, code, thread) when they are still the record's own and
        no redaction rule can touch them: one search over them all, not one per field. Empty
        otherwise (then each is examined like any other field)."""
        values = (record.name, record.pathname, record.funcName, record.threadName)
        if (entry["logger"], entry["code.file"], entry["code.function"], entry["thread"]
                ) != values or not self._location_clean(values):  # fmt: skip
            return NO_FIELDS
        return LOCATION_FIELDS

    def _location_clean(self, values: tuple[Any, ...]) -> bool:
        """Whether a record's logger, file, function and thread need nothing done: all text,
        none to be cut, no redaction rule touching their names or (one search) their values."""
        if self._location_names_clean is None:
            names = self.redactor.name
            self._location_names_clean = not any(any(names(key)) for key in LOCATION_FIELDS)
        texts = [value for value in values if value.__class__ is str]
        return (self._location_names_clean and len(texts) == 4
                and not self.redactor.may_match("\n".join(texts))
                and max(map(len, texts)) <= MAX_VALUE_CHARS)  # fmt: skip

    def from_event(self, item: Event) -> list[Entry]:
        """Another logging library's record: the fields its integration makes of it."""
        entry: Entry = {"_time": rfc3339(item.t_ns), "_msg": "", "level": level_name(item.levelno),
                        "stream": "logging"}  # fmt: skip
        # An integration writes the record's own _msg, _time and level: only a `stream` (or an
        # empty name) among its extra fields is kept apart.
        fields = item.fields(item.data)
        entry.update(fields if EVENT_OWN.isdisjoint(fields) else kept_apart(fields, EVENT_OWN))
        return self.finish(entry, item.context)

    def _unmade(self, item: Capture, exc: Exception) -> list[Entry]:
        """The entry of a capture whose own could not be made: its time, level and message
        (what of them can be read), and why."""
        why = f"[vlhook could not make this entry: {type(exc).__name__}: {exc}]"
        message = getattr(item, "message", "")
        levelno = getattr(item, "levelno", 40)  # an uncaught exception's: ERROR
        entry: Entry = {
            "_time": rfc3339(item.t_ns),
            "_msg": f"{message}\n{why}" if isinstance(message, str) and message else why,
            "level": level_name(levelno if isinstance(levelno, int) else 40),
            "stream": "stderr" if item.__class__ is Uncaught else "logging",
        }
        return self.finish(entry, item.context)

    def from_exception(self, item: Uncaught) -> list[Entry]:
        exc, t_ns, _thread, context, thread_name, head = item
        records = self._records or self._load_records()
        fields = records.describe_exception(type(exc), exc, exc.__traceback__)
        stacktrace = fields["exception.stacktrace"]
        entry: Entry = {"_time": rfc3339(t_ns), "level": "ERROR", "stream": "stderr",
                        "_msg": f"{head}\n{stacktrace}" if head else stacktrace,
                        "thread": thread_name}  # fmt: skip
        entry.update(fields)
        return self.finish(entry, context)

    def finish(
        self,
        entry: Entry,
        context: Optional[Context],
        only_message: bool = False,
        trusted: frozenset[str] = frozenset(),
        examined: bool = False,
    ) -> list[Entry]:
        """Add the context, then make the entry safe to send. `only_message`: the message is
        the only value the program wrote (a plain line): the rest is vlhook's own. `trusted`:
        fields known already to need nothing done; `examined`: all of them."""
        if "trace_id" in entry:
            _w3c_ids(entry)
        apply_context(entry, context)
        nested = False
        if only_message:
            self._redact_message(entry)
        elif not examined:
            # Before folding: folded fields become text, redacted already.
            nested = self._sanitize(entry, trusted)
        # The server counts fields once it has flattened nested objects: counted only for an
        # entry with many keys, or whose objects hold many items (see _sanitize); the count
        # stops past the limit. A flat entry of 40 keys or fewer cannot reach it.
        if (nested or len(entry) > 40) and _leaves(entry, MAX_FIELDS) > MAX_FIELDS:
            self._fold_fields(entry)
            entry["vlhook.folded_fields"] = _cut(entry["vlhook.folded_fields"])
        message = entry.get("_msg")
        # A character takes at most 6 bytes once JSON-escaped (\u0001): below that, no check.
        if isinstance(message, str) and len(message) * 6 > self.max_line_bytes:
            return self._split(entry, message)
        return [entry]

    def _line_written(self, line: Line, clean: bool) -> Sequence[Union[Entry, str]]:
        """from_line, but a clean JSON line comes written as JSON when it can be (see
        _written_object)."""
        if clean and line.text[:1] == "{" and not line.level:
            written = self._written_object(line.kind, line.text, line.t_ns, line.context)
            if written is not None:
                return [written]
        return self.from_line(line, clean)

    def _written_object(
        self, kind: int, text: str, t_ns: int, context: Optional[Context]
    ) -> Optional[str]:
        """A JSON line that the group's search found without a secret's literal, written as
        JSON as from_line and the encoder write it, when nothing there would change it: its
        object has a message key, and the first of its level and time keys holds a level and
        a time (see Shape); the line is as _nothing_to_examine lets through (no escape, so no
        colour code either: JSON has them escaped), its keys are plain and are no constant
        field's, its nested values are as the redactor leaves them (see _plain_leaves),
        its message needs no split, and it holds no integer orjson reads as a float (see
        _codec.huge_integer_in). Its context's fields follow, as a plain line's are
        written (see _context_text), when the object names none of them and no trace field.
        The entry is never one finish() folds. None otherwise (from_line)."""
        if len(text) > MAX_VALUE_CHARS or "\\" in text:
            return None
        try:  # parse_json's checks, but its length, which the shape bounds
            obj = _codec.loads(text)
        except Exception:
            return None
        keys = tuple(obj)
        try:
            shape = self._shapes[keys]
        except KeyError:
            shape = self._shape(keys)
        if shape is None:
            return None
        message = obj.pop(shape.msg)
        if message.__class__ is not str or not message \
                or len(message) * 6 > self.max_line_bytes:  # fmt: skip
            return None
        level: Optional[str] = "INFO"
        if shape.level is not None:
            level = usable_level(obj.pop(shape.level))
        stamp = rfc3339(t_ns) if shape.time is None else obj.pop(shape.time)
        if level is None or (shape.time is not None and not valid_time(stamp)):
            return None
        leaves = len(shape.rest)  # of a flat object (no `{` past the first, no `[`)
        if text.find("{", 1) != -1 or "[" in text:
            # Its text holds no escape and no secret's literal: no pattern matches a string
            # there, so the text the walk gathers needs no search. The object's names were
            # told by its shape: told again here, from one cache.
            leaves = self._walked_leaves(obj, [])
            if leaves < 0 or leaves > MAX_FIELDS - len(PLAIN_KEYS):
                return None
        tail = self._line_context(context)
        if tail is None or (tail and not self._context_fits(shape, leaves)):
            return None
        if _codec.huge_integer_in(text):  # an integer orjson read as a float: parse_json's
            return None  # reading keeps every digit (told last: the rarest, the dearest)
        entry = {"_time": stamp, "_msg": message, "level": level, "stream": STREAM_NAME[kind],
                 **obj}  # fmt: skip
        try:
            return _codec.dumps(entry)[1:-1].decode("utf-8") + tail + "}"
        except Exception:  # what only the encoder's fallbacks write (a huge integer)
            return None

    def _context_fits(self, shape: Shape, leaves: int) -> bool:
        """Whether the context last written with a plain line goes after the fields of an
        object of this shape (which the server makes `leaves` fields of) as apply_context
        puts it there, and as finish() examines it: the object names none of its fields (the
        line's own would win) and no trace field (it would take none of the context's),
        together they make no more fields than the server keeps, and no redaction rule
        touches vlhook's own fields (written unexamined with a plain line)."""
        held = self._line_context_held
        if held.as_examined is None:  # told once per context (asking may compile patterns)
            fields = held.fields
            held.as_examined = not self._own(fields) or not self._touched(fields)
        return (
            held.as_examined
            and held.field_count() <= MAX_FIELDS - leaves - len(PLAIN_KEYS)
            and held.names.isdisjoint(shape.rest)
            and TRACE_NAMES.isdisjoint(shape.rest)
        )

    def _shape(self, keys: tuple[str, ...]) -> Optional[Shape]:
        """The shape of JSON lines of these keys, when their entry's names are plain (see
        _plain_names) and no constant field's (nor is any a line's own, see writes_lines), and
        the entry is never folded: no more fields than the server keeps (then parse_json takes
        the object too); else None."""
        shape = shape_of(keys)
        if shape is not None:
            names = (*PLAIN_KEYS_ORDER, *shape.rest)
            if len(names) > MAX_FIELDS or not self._constant_names.isdisjoint(names) \
                    or not self._plain_names(names):  # fmt: skip
                shape = None
        return _remember(self._shapes, keys, shape)

    def _nothing_to_examine(self, entry: Entry, text: str) -> bool:
        """Whether _sanitize would leave a JSON line's entry as it is, told without walking it:
        its values are all text and numbers written as they are in the line (no escape in it),
        which a search found without a secret's literal and is too short for a field to be
        cut; its keys, as a set seen before, have no secret's name and no excess length."""
        if (
            len(text) > MAX_VALUE_CHARS
            or "\\" in text
            or not SCALARS.issuperset(map(type, entry.values()))
        ):
            return False
        return self._plain_names(tuple(entry))

    def _plain_names(self, keys: tuple[str, ...]) -> bool:
        """Whether _sanitize leaves these names as they are (no secret's name, no excess
        length; vlhook's own skipped), remembered per set of names: a call site or a JSON
        line's shape gives the same ones every time. A `code.line` or `cold_start` may be the
        program's (_sanitize examines it unless its value has vlhook's type): its name is
        told like any other."""
        plain = self._plain_keys.get(keys)
        if plain is None:
            names = self.redactor.name
            plain = _remember(self._plain_keys, keys, all(
                len(key) * 4 <= MAX_KEY_BYTES and not any(names(key))
                for key in keys if key not in NAMES_NOT_JUDGED
            ))  # fmt: skip
        return plain

    def _object_message(self, obj: dict[str, Any], text: str) -> str:
        """A JSON object with no message key is its own message: its secret-named fields are
        masked there too."""
        self.redactor.left = MAX_NESTED_VALUES
        clean = self.redactor.nested(obj, MAX_DEPTH)
        if clean is obj:
            return text
        return _json_text(clean)

    def _redact_message(self, entry: Entry) -> None:
        clean = self.redactor(entry["_msg"])
        if clean is not None:
            entry["_msg"] = clean
            self.stats.add("redacted")

    def _sanitize(
        self, entry: Entry, trusted: frozenset[str] = frozenset(), counted: bool = True
    ) -> bool:
        """Redact every string at any depth and mask secret-named fields; keep nesting and size
        within bounds; cut oversized fields and keys the server would mangle. Whether the entry
        may have too many fields once the server flattens its objects: the redactor counts the
        items of every container it walks, so an entry whose objects hold few needs no count.
        `counted`: the redactions go into the stats (else they are left in redactor.hits)."""
        redactor = self.redactor
        redactor.hits = 0
        redactor.left = MAX_NESTED_VALUES
        verdicts, may_match = redactor.verdicts, redactor.may_match
        nested = False
        for key, value in list(entry.items()):
            # vlhook's own values only: a program's `code.line` or `cold_start` (printed, in
            # `extra=`, bound) is examined like any field.
            if (key in OWN_FIELDS and value.__class__ in OWN_KINDS[key]) or key in trusted:
                continue
            # The message's own name (`_msg`) neither masks nor renames it: its text is
            # redacted below (see NAMES_NOT_JUDGED).
            secret, renamed = (
                NOT_A_SECRET if key in NAMES_NOT_JUDGED else verdicts.get(key) or redactor.name(key)
            )
            if secret and not holds_nothing(value):  # null or a flag (see Redactor._dict)
                value = entry[key] = MASK
                redactor.hits += 1
            elif isinstance(value, str):
                clean = redactor(value) if may_match(value) else None
                if clean is not None:
                    value = entry[key] = clean
                    redactor.hits += 1
                if key != "_msg" and len(value) > MAX_VALUE_CHARS:
                    value = entry[key] = _cut(value)
            elif isinstance(value, (int, float)):
                if value - value != 0:  # NaN, an infinity: orjson would write null
                    value = entry[key] = _codec.number_text(value)
            elif value is not None:
                # Containers and objects. Nesting past MAX_DEPTH, too deep for the server's
                # parser (and some encoders), goes as text.
                value = entry[key] = redactor.nested(value, MAX_DEPTH, key)
                nested = nested or isinstance(value, dict)
            if renamed is not None:
                del entry[key]
                key = renamed
                entry[key] = value
                redactor.hits += 1
            if len(key) * 4 > MAX_KEY_BYTES and len(key.encode("utf-8", "replace")) > MAX_KEY_BYTES:
                del entry[key]
                entry[short_key(key)] = value
        if redactor.hits and counted:
            self.stats.add("redacted", redactor.hits)
        return nested and MAX_NESTED_VALUES - redactor.left + len(entry) > MAX_FIELDS

    def _fold_fields(self, entry: Entry) -> None:
        """Over ~1,000 fields (after the server flattens) the whole row would be dropped: keep
        the first fields and put the rest, as JSON text, in one field."""
        kept = 0
        folded: dict[str, Any] = {}
        for key in list(entry):
            size = _leaves({key: entry[key]}, MAX_FIELDS)
            if key in CORE_FIELDS or kept + size <= MAX_FIELDS // 2:
                kept += size
            else:
                folded[key] = entry.pop(key)
        entry["vlhook.folded_fields"] = _json_text(folded)
        self.stats.add("folded")

    def _split(self, entry: Entry, message: str) -> list[Entry]:
        """Parts whose JSON-escaped form fits the line budget (escaping can grow text 6x)."""
        if _escaped_size(message) <= self.max_line_bytes:
            return [entry]
        parts = json_parts(message, self.max_line_bytes)
        self.stats.add("split")
        out = []
        for number, part in enumerate(parts, 1):
            piece = dict(entry)
            piece["_msg"] = part
            piece["msg_part"] = number
            piece["msg_parts"] = len(parts)
            out.append(piece)
        return out


#: The names an integration's record fields may not take (see from_event).
EVENT_OWN = frozenset({"stream", ""})
#: The first fields of an integration's record that is written as JSON (see _written_event):
#: as a logging record's entry has them, `stream` apart.
EVENT_HEAD = ("_time", "_msg", "level", "logger", "code.file", "code.line", "code.function",
              "thread")  # fmt: skip
# Fields vlhook fills itself from trusted sources: never redacted, never oversized. A field of
# one of these names is skipped by _sanitize only when its value has the type vlhook gives it:
# `_time`, `level` and `stream` are always vlhook's (see _context.OWN_NAMES), `code.line` and
# `cold_start` may be the program's too (then a string, a list..., examined as any field).
OWN_KINDS: dict[str, tuple[type, ...]] = {
    "_time": (str, int, float), "level": (str,), "stream": (str,), "code.line": (int,),
    "cold_start": (bool,),
}  # fmt: skip
OWN_FIELDS = frozenset(OWN_KINDS)
#: Those of them that are vlhook's in every entry (the program's are kept apart, OWN_NAMES).
ALWAYS_OWN = OWN_FIELDS & OWN_NAMES
#: The names of an entry's fields that no deny-list name or pattern masks or renames: those
#: always vlhook's own, and the message's (`VICTORIALOGS_REDACT_KEYS=msg` names a program's
#: field, not every message; the text of `_msg` is redacted as any).
NAMES_NOT_JUDGED = ALWAYS_OWN | {"_msg"}
PLAIN_KEYS = WRITTEN_KEYS = frozenset({"_time", "_msg", "level", "stream"})
PLAIN_KEYS_ORDER = ("_time", "_msg", "level", "stream")  # as an entry has them
TRACE_NAMES = frozenset(TRACE_FIELDS)
NOT_SEARCHED: set[int] = set()  # _batch's levels before the search (compared by identity)
#: A logging record's location: from the program's code, not its data; few distinct values.
LOCATION_FIELDS = frozenset({"logger", "code.file", "code.function", "thread"})
NO_FIELDS: frozenset[str] = frozenset()
#: Values that _sanitize leaves as they are unless a pattern or a name says otherwise.
SCALARS = frozenset({str, int, float, bool, type(None)})
#: The keys of a plain record's entry (written_records).
RECORD_KEYS = WRITTEN_KEYS | LOCATION_FIELDS | {"code.line"}
#: Verdicts kept per builder cache (record locations, JSON key sets): past it, it starts over.
MAX_REMEMBERED = 4096
#: Context fields vlhook makes itself from ids: nothing to redact, when their values are such
#: ids (see _made_from_ids; a program or a caller may give any value under these names).
TRUSTED_CONTEXT = frozenset({"trace_id", "span_id", "trace_flags", "aws_request_id",
                             "xray_trace_id", "function_version", "cold_start"})  # fmt: skip
#: The characters of the values vlhook makes its own fields of: hex digits and dashes (trace
#: and span ids, a request id, X-Ray's trace id, the trace flags, a function's version number)
#: and those of `$LATEST`. No built-in pattern matches text of these alone: each needs another
#: letter (AKIA, ASIA, Bearer, eyJ, secret) or a `:`.
_ID_CHARACTERS = frozenset("0123456789abcdefABCDEF-$LST")


def _made_from_ids(values: Iterable[Any]) -> bool:
    """Whether the values are all of the forms vlhook makes its own fields in (see
    _ID_CHARACTERS), or switches (cold_start): one C test over their text."""
    try:
        text = "".join([value for value in values if value.__class__ is not bool])
    except TypeError:  # a value that is not text
        return False
    return _ID_CHARACTERS.issuperset(text)


CORE_FIELDS = frozenset(
    {"_time", "_msg", "level", "stream", "logger", "code.file", "code.line", "code.function",
     "thread", "exception.type", "exception.message", "exception.stacktrace", "aws_request_id",
     "trace_id", "span_id", "xray_trace_id"}
)  # fmt: skip


MAX_DEPTH = 32  # nesting kept as structure; deeper values are sent as text
#: Nested values walked for one entry's fields written at once (see _plain_leaves): more go
#: the general path.
MAX_WALKED = 2_000
# Nested values examined per entry (redaction walks every one): past that, the rest of a value
# is replaced, not walked, so that no entry holds the sender for long.
MAX_NESTED_VALUES = 50_000


def _remember(cache: dict[Any, T], key: Any, value: T) -> T:
    """Keep a verdict in a bounded cache (emptied when full: a program has few of each)."""
    if len(cache) >= MAX_REMEMBERED:
        cache.clear()
    cache[key] = value
    return value


_NO_TRACE = "0x" + "0" * 32  # OpenTelemetry's trace id outside any span, in its `0x` form


def _w3c_ids(entry: Entry) -> None:
    """A line's own trace ids written with `0x` before their hex digits (OpenTelemetry's
    console exporters print them so) in the form of the W3C's traceparent, which vlhook's own
    and the rest of the trace's use: one query finds them all. Its id of no trace (all zeros,
    outside any span) is no trace: the fields go, and the context's apply, if any."""
    trace = entry["trace_id"]
    if not (isinstance(trace, str) and trace[:2] == "0x"):
        return
    if trace == _NO_TRACE:
        for name in TRACE_FIELDS:
            entry.pop(name, None)
        return
    if not is_hex(trace[2:], 32):
        return
    entry["trace_id"] = trace[2:]
    span = entry.get("span_id")
    if isinstance(span, str) and span[:2] == "0x" and is_hex(span[2:], 16):
        entry["span_id"] = span[2:]


def _read_whole(text: str) -> bool:
    """Whether a line the level search named is made whole by from_line, not written as a
    plain line: colour codes are read without them, and a Lambda runtime's error report
    names its exception."""
    return "\x1b" in text or is_lambda_error(text)


def _heads_and_streams(kinds: list[int], times: list[int]) -> tuple[Iterable[str], Iterable[str]]:
    """Per line of a run: its time up to the seconds ("YYYY-MM-DDTHH:MM:SS."), and its stream's
    name; one repeated value when the run shares it (its lines mostly do)."""
    streams: Iterable[str] = (
        repeat(STREAM_NAME[kinds[0]])
        if kinds.count(kinds[0]) == len(kinds)
        else map(STREAM_NAME.__getitem__, kinds)
    )
    return _heads(times), streams


def _nanoseconds(times: list[int]) -> list[str]:
    """Per time: its nanoseconds within its second, as the 9 digits RFC 3339 writes them, made
    by one formatting call for the group (`f"{ns:09d}"` line by line costs ~4x as much)."""
    digits = ",".join(repeat("%09d", len(times))) % tuple(map(mod, times, repeat(1_000_000_000)))
    return digits.split(",")


#: What JSON escapes in a string: its quote, a backslash, and control characters (the newline
#: too, which joins the texts searched: see Hay.holds_newlines).
_ESCAPED = ('"', "\\", *(chr(code) for code in range(32) if code != 10))


_INSIDE_QUOTES = slice(1, -1)


def _string_contents(hay: Hay, messages: bool = False) -> list[str]:
    """Per text: what JSON writes between its quotes. That is the text itself unless it holds a
    character JSON escapes, told for the group by one C search per such character (a few µs
    for a group's 100 KB): when none does, no text is escaped (`_codec.string` costs ~4 ns a
    character, half a line's making when every text went through it); when few do, those
    alone; when many do (quoted values, say), all of them, as before, with C calls."""
    texts = hay.texts
    own_newlines = messages and hay.holds_newlines()  # a message may span lines; a line never
    escapes = hay.count(_ESCAPED)
    if not escapes and not own_newlines:
        return texts
    if escapes * 4 > len(texts):  # finding each one's line would cost more than escaping all
        return list(map(getitem, map(_codec.string, texts), repeat(_INSIDE_QUOTES)))
    found = hay.lines_with(_ESCAPED) or set()
    if own_newlines:
        found.update(index for index, text in enumerate(texts) if "\n" in text)
    contents = list(texts)
    for index in found:
        contents[index] = _codec.string(texts[index])[_INSIDE_QUOTES]
    return contents


def _heads(times: list[int]) -> Iterable[str]:
    """Per time: its text up to the seconds ("YYYY-MM-DDTHH:MM:SS."); one repeated value when
    they share their second (a group's mostly do)."""
    first, last = min(times) // 1_000_000_000, max(times) // 1_000_000_000
    if first == last:
        return repeat(rfc3339(times[0])[:-10])
    return [rfc3339(t_ns)[:-10] for t_ns in times]


class Held:
    """The last context written with one kind of entry (whose own keys are `keys`): its
    sources (see _sources), its fields' plain values (see _content) and its fields as JSON
    (None: the entry is made whole)."""

    __slots__ = ("as_examined", "content", "context", "fields", "keys", "leaves", "names",
                 "sources", "text")  # fmt: skip

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys
        self.context: Optional[Context] = None
        self.sources: tuple[Any, ...] = ()
        self.content: Optional[tuple[Any, ...]] = None
        self.names: frozenset[str] = NO_FIELDS  # the fields' names, as the context has them
        self.text: Optional[str] = None
        self.fields: Entry = {}
        #: How many fields the server makes of them (see field_count), counted when asked.
        self.leaves: Optional[int] = None
        #: Whether `text` is what examining every field gives (vlhook's own fields are written
        #: with a plain line as they are, see _context_text), told when a JSON line first asks
        #: (see EntryBuilder._context_fits).
        self.as_examined: Optional[bool] = None

    def field_count(self) -> int:
        """How many fields the server makes of the fields once it flattens them (stops past
        the limit), counted when first asked: a record with fields of its own, a JSON line."""
        if self.leaves is None:
            self.leaves = _leaves(self.fields, MAX_FIELDS)
        return self.leaves


#: Names an `extra=` field takes from the record's entry made whole: replaced (the record's
#: own), kept apart (vlhook's), or taking a trace from the context (see _written_extras).
NOT_EXTRA_NAMES = RECORD_KEYS.union(OWN_NAMES, OWN_FIELDS, TRACE_FIELDS)

#: Values that are written the same whenever they are equal and of the same type (not
#: floats: -0.0 == 0.0; not containers, whose items may differ in type).
KEYABLE = frozenset({str, int, bool, type(None)})


def _content(fields: Entry) -> Optional[tuple[Any, ...]]:
    """The fields as a comparable value when they are all of KEYABLE types (types included:
    1 == True), else None: equal contents are written alike."""
    types = tuple(map(type, fields.values()))
    if not KEYABLE.issuperset(types):
        return None
    return (*fields.items(), types)


def _sources(context: Context) -> tuple[Any, ...]:
    """The identities of a context's sources: a capture makes a tuple of its own, of sources
    that lines written together mostly share (the dict a bind made, a span), or, for a source
    made anew at each capture (structlog's snapshot), the key its reader gives (see
    _context.source_keys: the identities of the values it holds). Sources are never changed
    once published (see _context), so the same sources give the same fields. Compared only
    with those of a context still held, whose sources are alive: no identity is reused."""
    return tuple([(id(s[0]), _SOURCE_KEY(s[0], id)(s[1])) if s.__class__ is tuple else id(s)
                  for s in context])  # fmt: skip


def _json_text(value: Any) -> str:
    """A value the entry builder walked already, as JSON text in a field: an integer past 64
    bits (read whole by parse_json) as its digits; lone surrogates (bytes a surrogateescape
    stream let through), which orjson refuses, replaced as the encoder replaces them; Python's
    text of it when even that cannot be written (two names alike once replaced)."""
    try:
        return _codec.dumps_carried(value).decode("utf-8")
    except TypeError:
        pass
    try:
        return _codec.dumps(writable(value)).decode("utf-8")
    except (TypeError, ValueError):
        return valid_utf8(_codec.safe_str(value))


def _fields_text(fields: Entry) -> str:
    """Flat fields written as JSON after an entry's own ("" for none): `,"k":"v",...`."""
    return "," + _codec.simple_text(fields)[1:-1] if fields else ""


def short_key(key: str) -> str:
    """A key cut below the server's 128 bytes, with a hash of the whole key: two long keys
    that share their beginning stay two fields (cut alone, one would replace the other)."""
    from zlib import crc32  # rare: only for keys this long

    raw = key.encode("utf-8", "replace")
    head = raw[: MAX_KEY_BYTES - 16].decode("utf-8", "ignore")
    return f"{head}~{crc32(raw):08x}"


def _cut(value: str) -> str:
    if len(value) <= MAX_VALUE_CHARS:
        return value
    return value[:MAX_VALUE_CHARS] + f"…[truncated {len(value)} chars]"


def _leaves(value: Any, limit: int, depth: int = 0) -> int:
    """How many fields the server makes of a value when it flattens it (stops past `limit`)."""
    if not isinstance(value, dict) or depth > 64:
        return 1
    count = 0
    for item in value.values():
        count += _leaves(item, limit - count, depth + 1)
        if count > limit:
            break
    return count


def json_parts(text: str, limit: int) -> list[str]:
    """Cut text so that every part, JSON-encoded, takes at most `limit` bytes, each as long as
    fits: parts of `limit` UTF-8 bytes, from each of which, where escaping made it too big,
    the longest start that fits is cut in turn. (Re-cut in proportion to the whole part's
    escaping, a part's plain end came out in pieces of a few characters.)"""
    data = text.encode("utf-8", "replace")
    parts: list[str] = []
    start = 0
    while start < len(data):
        end = _character_end(data, min(start + limit, len(data)), start)
        part = data[start:end].decode("utf-8", "replace")
        if len(part) > 1 and _escaped_size(part) > limit:
            part = part[: _longest_fitting(part, limit)]
            end = start + len(part.encode("utf-8", "replace"))
        parts.append(part)
        start = end
    return parts


def _longest_fitting(text: str, limit: int) -> int:
    """How many characters of `text` (at least one), JSON-escaped, fit in `limit` bytes: a
    binary search, the escaped size growing with every character (~16 escapes of a part)."""
    low, high = 1, len(text) - 1  # text itself does not fit
    while low < high:
        middle = (low + high + 1) // 2
        if _escaped_size(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def _escaped_size(text: str) -> int:
    """Bytes the text takes inside a JSON line: its UTF-8 size, plus what escaping adds. A
    lone surrogate (bytes a surrogateescape stream let through), which orjson refuses, is
    measured as the encoder writes it (encode.clean: U+FFFD)."""
    try:
        return len(_codec.dumps(text)) - 2
    except TypeError:
        return len(_codec.dumps(valid_utf8(text))) - 2


def split_utf8(data: bytes, limit: int) -> list[str]:
    """Cut UTF-8 bytes into strings of at most `limit` bytes, never inside a character."""
    parts = []
    start = 0
    while start < len(data):
        end = _character_end(data, min(start + limit, len(data)), start)
        parts.append(data[start:end].decode("utf-8", "replace"))
        start = end
    return parts


def _character_end(data: bytes, end: int, start: int) -> int:
    """`end`, moved back to where a character of the UTF-8 `data` begins (not before `start`)."""
    while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
        end -= 1
    return end
