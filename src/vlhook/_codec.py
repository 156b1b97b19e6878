"""JSON encoding and decoding for entries: orjson when installed, the standard library else.

Imported on the sender thread only. Values the encoder does not know are stringified; an
object that cannot even be stringified becomes a placeholder, never an exception.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Callable

MAX_REPR = 4096


def safe_str(value: Any) -> str:
    """str(value), bounded; never raises (objects whose __str__ and __repr__ both raise exist)."""
    for convert in (str, repr):
        try:
            text = convert(value)
            return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "…"
        except Exception:  # noqa: S112 - any failure falls through to the next form
            continue
    return f"<unprintable {type(value).__name__}>"


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=safe_str, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "replace"
    )


def _pick() -> tuple[Callable[[Any], bytes], Callable[[Any], Any], type[Exception]]:
    try:
        import orjson
    except ImportError:
        return _stdlib_dumps, json.loads, ValueError

    from functools import partial

    # A partial, not a wrapper function: called once per entry, it adds no Python frame.
    dumps = partial(orjson.dumps, default=safe_str, option=orjson.OPT_NON_STR_KEYS)
    return dumps, orjson.loads, orjson.JSONEncodeError


dumps, loads, EncodeError = _pick()
