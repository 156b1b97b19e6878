"""JSON for entries: orjson when installed, the standard library else; both loaded on first
use, on the sender thread.

A short-lived process that only printed plain lines never loads either: their entries are
written by the entry builder with `string()` (the C string escaper the standard library uses)
and the constant fields by `simple()`, which write exactly what orjson writes for them (the
test suite compares them). orjson (with the dataclasses, inspect and uuid modules it pulls in,
~25 ms) is loaded with the first entry that needs a general encoder.

Values the encoder does not know are stringified; an object that cannot even be stringified
becomes a placeholder, never an exception.
"""

from __future__ import annotations

import sys

# The C parts of the json package (~0.2 ms; the package itself ~8 ms).
from _json import encode_basestring, make_encoder, make_scanner
from _operator import is_

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from collections.abc import Iterable
    from typing import Any, Callable

MAX_REPR = 4096
#: Below this recursion limit the standard library's encoder is used, not orjson: orjson's
#: import crashes the interpreter (SIGSEGV) when the limit is reached in its middle (measured:
#: limits under 80 on Python 3.11, under 74 on 3.9, the import a few frames deep), and the
#: program set such a limit itself.
ORJSON_MIN_RECURSION_LIMIT = 200
#: A JSON string literal for a str, quotes included, written as orjson writes it.
string = encode_basestring


#: The integers JSON encoders write as numbers (orjson: 64 bits, signed or not).
MIN_INT, MAX_INT = -(1 << 63), (1 << 64) - 1
INFINITY = float("inf")


def carried(value: Any) -> bool:
    """Whether a value goes into JSON as it is: anything but a number JSON has no form for
    (NaN, an infinity, an integer past 64 bits: see number_text)."""
    if isinstance(value, float):
        return value - value == 0  # NaN for NaN and the infinities
    if isinstance(value, int):
        return MIN_INT <= value <= MAX_INT
    return True


def finite(values: Iterable[Any]) -> bool:
    """Whether no float in these values, at any depth of their dicts, lists and tuples, is NaN
    or an infinity (orjson writes them as null). For values of those exact types, walked
    already (no cycle, bounded): the entry builder's run path asks it of a record's `extra=`
    that orjson wrote with a null in it, which a None makes too. Told by their classes, not
    with carried_copy: `_written_extras` of `{"user": None, "n": 1, "path": "/api/items"}`
    took +1.6 µs over the code before that way (+0.95 with a test of each value through
    `carried`), +0.25-0.35 µs so."""
    for value in values:
        kind = value.__class__
        if kind is float:
            if value - value != 0:
                return False
        elif kind is dict:
            if not finite(value.values()):
                return False
        elif (kind is list or kind is tuple) and not finite(value):
            return False
    return True


def carried_copy(value: Any) -> Any:
    """The value with every number JSON has no form for, at any depth of its dicts, lists and
    tuples, made text (see number_text); the same object when there is none. For values
    examined already (no cycle, bounded depth); RecursionError else."""
    if isinstance(value, dict):
        items = {key: carried_copy(item) for key, item in value.items()}
        same = all(map(is_, items.values(), value.values()))
        return value if same else items
    if isinstance(value, (list, tuple)):
        listed = list(map(carried_copy, value))
        return value if all(map(is_, listed, value)) else listed
    return value if carried(value) else number_text(value)


def dumps_carried(obj: Any) -> bytes:
    """dumps(obj), and when the encoder refuses it, of its copy with the numbers JSON has no
    form for made text (an integer past 64 bits: orjson refuses it). Entries are examined
    for NaN and the infinities (orjson would write null), not for such integers: a test of
    every integer met costs every nested value; this costs only the entries that hold one."""
    try:
        return dumps(obj)
    except Exception:
        copy = carried_copy(obj)
        if copy is obj:
            raise
        return dumps(copy)


def number_text(value: Any) -> str:
    """A number JSON has no form for, as text, its value kept: NaN and the infinities as
    Python's `json` prints them (orjson would write null, and the server store nothing), an
    integer past 64 bits in its digits (orjson refuses it; the server stores every value as
    text anyway), or in hexadecimal past the digits Python converts (`int_max_str_digits`)."""
    if isinstance(value, float):
        return "Infinity" if value == INFINITY else "-Infinity" if value == -INFINITY else "NaN"
    try:
        return int.__repr__(value)
    except ValueError:
        return hex(value)


def safe_str(value: Any) -> str:
    """str(value), bounded; never raises (objects whose __str__ and __repr__ both raise exist)."""
    for convert in (str, repr):
        try:
            text = convert(value)
            return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "…"
        except Exception:  # noqa: S112 - any failure falls through to the next form
            continue
    return f"<unprintable {type(value).__name__}>"


def _encoder(markers: Any) -> Any:
    # (cycle markers, what to do with an unknown value, the string escaper, no indent,
    # compact separators, keys in order, no key skipped, no NaN)
    return make_encoder(markers, safe_str, string, None, ":", ",", False, False, False)


_flat = _encoder(None)  # no cycle can hide in a flat object of strings and integers


def simple(obj: dict[str, Any]) -> bytes:
    """A flat object of strings and integers, as orjson writes it (never with floats: the two
    write some differently). UnicodeEncodeError for text with lone surrogates."""
    return simple_text(obj).encode("utf-8")


def simple_text(obj: dict[str, Any]) -> str:
    """simple(), before it is encoded as UTF-8."""
    return "".join(_flat(obj, 0))


def stdlib_dumps(obj: Any) -> bytes:
    """JSON by the standard library's C encoder, without loading orjson (or json)."""
    return "".join(_encoder({})(obj, 0)).encode("utf-8", "replace")


def _constants_scanner() -> Any:
    """The standard library's C scanner with json.loads' settings but one: NaN, Infinity and
    -Infinity read as that text, which they stand for in an entry anyway. Made at first use:
    a class made at import (~16 µs) would cost every process that ships a line."""

    class Settings:
        strict = True
        object_hook = object_pairs_hook = None
        parse_float, parse_int = float, int
        parse_constant = {name: name for name in ("NaN", "Infinity", "-Infinity")}.__getitem__

    return make_scanner(Settings)  # type: ignore[arg-type]  # any object with json's settings


_scan_constants: Any = None


def loads_constants(text: str) -> Any:
    """JSON as Python's `json.dumps` prints it unless told not to: NaN and the infinities as
    bare words, which orjson refuses (JSON has no such numbers), read as text; integers of
    any size exact; a lone surrogate's escape (`\\udcff`) too, which orjson refuses. Raises
    ValueError or StopIteration for anything else (an error loads the json package, ~8 ms:
    only lines that name those words or hold such an escape come here)."""
    global _scan_constants
    if _scan_constants is None:
        _scan_constants = _constants_scanner()
    obj, end = _scan_constants(text, 0)
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data")
    return obj


#: The bytes of a UTF-8 text, each digit made "0" and anything else " ": runs of digits are
#: then found by one search (see huge_integer_in).
_DIGIT_MARKS = bytes(48 if 48 <= code <= 57 else 32 for code in range(256))
#: The fewest digits an integer orjson reads as a float has (-9223372036854775809); from 21 on,
#: every integer is one (10**20 > MAX_INT).
_FEWEST, _ALWAYS = 19, 21
_RUN = b"0" * _FEWEST


def huge_integer_in(text: str) -> bool:
    """Whether a JSON text may hold an integer orjson reads as a float, its last digits lost:
    one past 64 bits (below MIN_INT, above MAX_INT), such as a 128-bit trace id. Told by its
    digits: a run of 19 or more whose value is past those bounds. A string's or a float's
    run may be told too (read again, to the same values); a time in nanoseconds (19 digits,
    an integer orjson keeps) is not. Three C calls over a line without such a run (~0.3 µs
    for 150 characters on the 2-core machine of docs/performance.md)."""
    raw = text.encode("utf-8", "surrogatepass")
    marks = raw.translate(_DIGIT_MARKS)
    start = marks.find(_RUN)
    while start != -1:
        end = marks.find(b" ", start)
        end = len(marks) if end == -1 else end
        if end - start >= _ALWAYS:
            return True
        value = int(raw[start:end])
        if value > (-MIN_INT if raw[start - 1 : start] == b"-" else MAX_INT):
            return True
        start = marks.find(_RUN, end)
    return False


def loads_exact(text: str) -> Any:
    """A program's JSON text, as loads() reads it, but for an integer past 64 bits, which
    keeps every digit: orjson reads one as a float (`1.1805916207174113e+21`), so a text that
    may hold one (huge_integer_in) is read again by the standard library's C scanner
    (loads_constants: any integer whole, ~2.5x orjson's time), and what orjson read is kept
    if that scanner refuses the text (nesting too deep for it). Raises as loads() does."""
    obj = loads(text)
    if huge_integer_in(text):
        try:
            return loads_constants(text)
        except (ValueError, RecursionError, StopIteration):
            pass
    return obj


def _load() -> tuple[Callable[[Any], bytes], Callable[[Any], Any]]:
    """orjson's functions, or the standard library's; rebinds `dumps` and `loads` here."""
    global dumps, loads
    try:
        if sys.getrecursionlimit() < ORJSON_MIN_RECURSION_LIMIT:
            raise ImportError("too little room to import orjson")
        import orjson
    except ImportError:
        import json

        dumps, loads = stdlib_dumps, json.loads
        return dumps, loads
    from functools import partial

    # A partial, not a wrapper function: called once per entry, it adds no Python frame.
    dumps = partial(orjson.dumps, default=safe_str, option=orjson.OPT_NON_STR_KEYS)
    loads = orjson.loads
    return dumps, loads


def _dumps_first(obj: Any) -> bytes:
    return _load()[0](obj)


def _loads_first(data: Any) -> Any:
    return _load()[1](data)


# Rebound by _load() at the first call: the encoder's own functions from then on.
dumps: Callable[[Any], bytes] = _dumps_first
loads: Callable[[Any], Any] = _loads_first
