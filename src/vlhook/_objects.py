"""JSON objects in entries: a printed JSON line keeps its keys, its message, level and time
keys mapped; a logging record whose message is an object (structlog's) adds its keys.

Runs on the sender thread.
"""

from __future__ import annotations

from vlhook import _codec
from vlhook._context import OWN_NAMES, kept_apart
from vlhook._formats import exception_key, loguru_json
from vlhook._levels import LEVEL_WORDS, level_name
from vlhook._patterns import lazy

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Optional

# `_msg` is VictoriaLogs' own message field: a program that sets it means it (any other
# message key it has stays an ordinary field).
MSG_KEYS = ("_msg", "message", "msg", "event", "errorMessage")
LEVEL_KEYS = ("level", "levelname", "severity", "log.level")
TIME_KEYS = ("_time", "timestamp", "time", "ts", "@timestamp")
# What the server accepts as a time (see the contract): RFC 3339 with Z or +hh:mm, <= 9 digits.
# ASCII digits only: `\d` takes any script's digits (int() reads them too), which the server
# does not, and it would drop the line.
_RFC3339 = lazy(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"  # date and time
    r"(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})\Z"  # fraction, zone
)
MAX_FIELDS = 900  # the server drops rows with more than 1,000 fields after flattening
MAX_VALUE_CHARS = 16 << 10  # fields other than the message are truncated, not split
#: Numeric levels read as logging's (10 DEBUG ... 50 CRITICAL); larger numbers are no level.
MAX_LEVEL_NUMBER = 100

# Largest unix time the server reads (in ns, the smallest unit it guesses): year ~2262.
MAX_EPOCH = 9.2e18


def valid_time(value: Any) -> bool:
    """Whether the server can parse this time (else the whole line would be dropped)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return 0 <= value < MAX_EPOCH
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    # Two ASCII digits each (the pattern): compared as text, as their numbers compare.
    if value[11:13] >= "24" or value[14:16] >= "60" or value[17:19] >= "60":
        return False
    return _valid_date(value[:10])


#: A date ("YYYY-MM-DD") -> whether the server takes it: a program's lines share a few.
_dates: dict[str, bool] = {}


def _valid_date(date: str) -> bool:
    valid = _dates.get(date)
    if valid is None:
        import calendar

        year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
        valid = 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
        if len(_dates) >= 64:
            _dates.clear()
        _dates[date] = valid
    return valid


def map_json(obj: dict[str, Any], entry: dict[str, Any]) -> None:
    """Merge a printed JSON object into the entry, mapping its message/level/time keys."""
    loguru = loguru_json(obj)
    if loguru is not None:
        entry.update(loguru)
        return
    entry.update(exception_key(obj))
    for key in MSG_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            entry["_msg"] = obj.pop(key)
            break
    for key in LEVEL_KEYS:  # the first key that names a level (a word or logging's number)
        if key in obj:  # a call only for a key present: most objects have one or none
            level = usable_level(obj[key])
            if level is not None:
                entry["level"] = level
                del obj[key]
                break
    for key in TIME_KEYS:
        if key in obj:
            if valid_time(obj[key]):
                entry["_time"] = obj.pop(key)
            break
    # An unused `_msg`, `_time`, `level`... kept apart, not lost (one C call tells).
    entry.update(obj if OWN_NAMES.isdisjoint(obj) else kept_apart(obj))


class Shape:
    """How map_json maps an object of one set of keys (in their order) when the first of its
    message, level and time keys each holds a usable value: those keys, taken out, and the
    keys left for the entry as they are (`rest`)."""

    __slots__ = ("level", "msg", "rest", "time")

    def __init__(
        self, msg: str, level: Optional[str], time: Optional[str], rest: tuple[str, ...]
    ) -> None:
        self.msg, self.level, self.time, self.rest = msg, level, time, rest


def shape_of(keys: tuple[str, ...]) -> Optional[Shape]:
    """The shape of flat objects of these keys; None for those map_json may take otherwise
    (an `exception` key may hold a traceback; loguru's serialized line is not flat), with no
    message key, or with a key left that is kept apart (OWN_NAMES)."""
    if "exception" in keys:
        return None
    msg = next((key for key in MSG_KEYS if key in keys), None)
    if msg is None:
        return None
    level = next((key for key in LEVEL_KEYS if key in keys), None)
    time = next((key for key in TIME_KEYS if key in keys), None)
    rest = tuple(key for key in keys if key not in (msg, level, time))
    return Shape(msg, level, time, rest) if OWN_NAMES.isdisjoint(rest) else None


class Taken:
    """How object_fields takes an object of one set of keys: the message key it reads when
    asked for one (the first present, when it holds text; else None), and the keys it keeps
    as fields, in their order (`kept`)."""

    __slots__ = ("kept", "msg")

    def __init__(self, msg: Optional[str], kept: tuple[str, ...]) -> None:
        self.msg, self.kept = msg, kept


def taken(keys: tuple[Any, ...], keep_message: bool) -> Optional[Taken]:
    """How object_fields takes objects of these keys; None for those it may take otherwise
    (an `exception` key may hold a traceback; a key kept apart, OWN_NAMES) and for a message
    asked for and not found."""
    if "exception" in keys:
        return None
    msg = next((key for key in MSG_KEYS if key in keys), None) if keep_message else None
    if keep_message and msg is None:
        return None
    dropped = (*LEVEL_KEYS, *TIME_KEYS, *((msg,) if keep_message else MSG_KEYS))
    kept = tuple(key for key in keys if key not in dropped)
    return Taken(msg, kept) if OWN_NAMES.isdisjoint(kept) else None


def record_taken(keys: tuple[Any, ...]) -> Optional[Taken]:
    """How from_record takes a record's message that is a dict of these keys (record_object,
    then object_fields with its message); None as for `taken`, and when a key is no text
    (record_object names it by its text, and two keys may then take one name)."""
    if not all(key.__class__ is str for key in keys):
        return None
    return taken(tuple(filter(_record_field, keys)), True)


def _record_field(name: str) -> bool:
    """Whether a key of a record's message that is a dict is a field of its entry: not one of
    structlog's own (`_record`, `_from_structlog`) nor the exc_info/stack_info requests it
    leaves in (the record has these)."""
    return name[:1] != "_" and name not in ("exc_info", "stack_info")


def usable_level(value: Any) -> Optional[str]:
    """The level a printed level value names: a level word, or logging's number; else None."""
    if value.__class__ is str:
        return LEVEL_WORDS.get(value.upper())
    if value.__class__ is int and 0 < value <= MAX_LEVEL_NUMBER:
        return level_name(value)
    return None


def merge_fields(entry: dict[str, Any], fields: dict[str, Any]) -> None:
    """Add the program's fields to an entry; one named as vlhook's own (OWN_NAMES) is kept
    as `fields.<name>`. The test is one C call: fields rarely have such names."""
    if OWN_NAMES.isdisjoint(fields):
        entry.update(fields)
    else:
        entry.update(kept_apart(fields))


#: What orjson refuses and the standard library's scanner reads (see parse_json): no text is
#: lower-cased to find them.
_REFUSED_BY_ORJSON = ("NaN", "Infinity", "\\ud", "\\uD")


def parse_json(text: str) -> Optional[dict[str, Any]]:
    """A printed JSON object, also as Python's `json.dumps` prints NaN and the infinities
    (NaN, Infinity and -Infinity: read as that text), its integers whole whatever their size;
    None for anything else."""
    if not (text.startswith("{") and text.rstrip().endswith("}")):
        return None
    try:
        obj = _codec.loads_exact(text)
    except Exception:
        # orjson refuses NaN and the infinities, and a lone surrogate's escape, as `json.dumps`
        # writes a file name os.fsdecode made of bytes that are not UTF-8 (`\udcff`): the
        # standard library's scanner takes them.
        if not any(word in text for word in _REFUSED_BY_ORJSON):
            return None
        try:
            obj = _codec.loads_constants(text)
        except (ValueError, RecursionError, StopIteration):
            return None
    return obj if isinstance(obj, dict) and len(obj) <= MAX_FIELDS else None


def record_object(msg: Any, args: Any, message: str) -> Optional[dict[str, Any]]:
    """A logging record's message that is an object: a dict logged as the message (structlog's
    ProcessorFormatter), or a JSON object (structlog's JSONRenderer through logging)."""
    if isinstance(msg, dict) and not args:
        # A key that is no text (`logging.info({200: 5})`) is named by its text, as a field
        # must be.
        fields = {}
        for key, value in msg.items():
            name = key if key.__class__ is str else _codec.safe_str(key)
            if _record_field(name):
                fields[name] = value
        return fields
    return parse_json(message) if message[:1] == "{" else None


def object_fields(obj: dict[str, Any], keep_message: bool) -> dict[str, Any]:
    """The fields an object adds to a logging record's entry: its message (when asked), its
    exception, and its other keys; its level and time keys are dropped (the record's are the
    precise ones)."""
    fields = exception_key(obj)
    if keep_message:
        key = next((k for k in MSG_KEYS if isinstance(obj.get(k), str) and obj[k]), None)
        if key is not None:
            fields["_msg"] = obj.pop(key)
    dropped = (*LEVEL_KEYS, *TIME_KEYS) if keep_message else (*MSG_KEYS, *LEVEL_KEYS, *TIME_KEYS)
    for key in dropped:
        obj.pop(key, None)
    merge_fields(fields, obj)
    return fields
