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
from _json import encode_basestring, make_encoder

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Callable

MAX_REPR = 4096
#: Below this recursion limit the standard library's encoder is used, not orjson: orjson's
#: import crashes the interpreter (SIGSEGV) when the limit is reached in its middle (measured:
#: limits under 80 on Python 3.11, under 74 on 3.9, the import a few frames deep), and the
#: program set such a limit itself.
ORJSON_MIN_RECURSION_LIMIT = 200
#: A JSON string literal for a str, quotes included, written as orjson writes it.
string = encode_basestring


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
