"""W3C Trace Context: `traceparent` and `tracestate` values, read and checked.

`00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01` is version, trace id, parent (span)
id and flags, in lower-case hex. A value that breaks the format, or whose ids are all zeros, is
invalid and names no trace (the W3C recommendation: ignore it). Read at start-up (TRACEPARENT)
and at each Lambda invocation (a caller's client context): plain string work, no imports.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_HEX = frozenset("0123456789abcdef")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-*/@")
MAX_TRACESTATE_MEMBERS = 32


def is_hex(text: str, length: int) -> bool:
    """`length` lower-case hex digits, not all zeros."""
    return len(text) == length and _HEX.issuperset(text) and text.strip("0") != ""


def traceparent_fields(value: str) -> Optional[dict[str, str]]:
    """trace_id, span_id (the parent id) and trace_flags of a traceparent, or None."""
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[:4]
    if len(version) != 2 or not _HEX.issuperset(version) or version == "ff":
        return None
    if version == "00" and len(parts) != 4:
        return None  # a later version may append fields; version 00 has exactly these
    if not (is_hex(trace_id, 32) and is_hex(span_id, 16)):
        return None
    if len(flags) != 2 or not _HEX.issuperset(flags):
        return None
    return {"trace_id": trace_id, "span_id": span_id, "trace_flags": sampled(int(flags, 16))}


def sampled(flags: int) -> str:
    """`trace_flags` as entries carry it: the sampled bit alone (`01` or `00`), the one flag
    that tells whether the trace was recorded (later W3C levels add others, such as random)."""
    return "01" if flags & 1 else "00"


def tracestate(value: str) -> Optional[str]:
    """A tracestate list (`vendor=value,other=value`) with spaces around members removed, or
    None when it is not one."""
    members = [member.strip() for member in value.split(",")]
    members = [member for member in members if member]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    for member in members:
        key, eq, val = member.partition("=")
        if not eq or not _valid_key(key) or not _valid_value(val):
            return None
    return ",".join(members)


def _valid_key(key: str) -> bool:
    # `tenant@system` keys: at most 241 and 14 characters around the "@".
    tenant, at, system = key.partition("@")
    if at:
        return (0 < len(tenant) <= 241 and 0 < len(system) <= 14 and "@" not in system
                and _KEY_CHARS.issuperset(key))  # fmt: skip
    return 0 < len(key) <= 256 and key[0].isalnum() and _KEY_CHARS.issuperset(key)


def _valid_value(value: str) -> bool:
    return (0 < len(value) <= 256 and not value.endswith(" ")
            and all(" " <= c <= "~" and c not in ",=" for c in value))  # fmt: skip
