"""Levels: the five names entries use, and the level a printed line names at its head.

Runs on the sender thread.
"""

from __future__ import annotations

from itertools import accumulate

from vlhook._patterns import lazy

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Optional

LEVEL_WORDS = {
    "TRACE": "DEBUG", "DEBUG": "DEBUG", "DBG": "DEBUG",
    "INFO": "INFO", "NOTICE": "INFO",
    "WARN": "WARNING", "WARNING": "WARNING",
    "ERR": "ERROR", "ERROR": "ERROR",
    "CRIT": "CRITICAL", "CRITICAL": "CRITICAL", "FATAL": "CRITICAL", "PANIC": "CRITICAL",
}  # fmt: skip
# The head of a line, token by token: `[bracketed]`, `| piped |`, or a bare word. A level is
# `[LEVEL]`, `| LEVEL |`, `Level:` or an upper-case `LEVEL`, after any number of timestamp-like
# or bracketed tokens; the first ordinary word ends the head ("error rate is 5%" has no level).
_HEAD_TOKEN = lazy(r"\[\s*([^\]]{1,40}?)\s*\]|\|\s*([A-Za-z]{3,8})\s*\||([^\s\[\]|]+)")
_PREFIX_CHARS = frozenset("0123456789-:.,TZ+/")
_LOGFMT = lazy(r"\blevel=\"?([A-Za-z]{3,8})\b")


def level_name(levelno: int) -> str:
    if levelno >= 50:
        return "CRITICAL"
    if levelno >= 40:
        return "ERROR"
    if levelno >= 30:
        return "WARNING"
    if levelno >= 20:
        return "INFO"
    return "DEBUG"


def detect_level(text: str) -> str:
    """Level of a plain text line from its leading form; INFO when it shows none."""
    return named_level(text) or "INFO"


def named_level(text: str) -> Optional[str]:
    """The level a line's leading form names, or None."""
    for count, match in enumerate(_HEAD_TOKEN.finditer(text, 0, 160)):
        if count == 8:
            break
        bracketed, piped, bare = match.groups()
        if bracketed or piped:
            found = LEVEL_WORDS.get((bracketed or piped).upper())
            if found:
                return found
            continue  # [main], [12], [2024-01-01 10:00:00 +0000]: still the head
        word, colon, _ = bare.partition(":")
        found = LEVEL_WORDS.get(word.upper())
        if found and (colon or word.isupper()):
            return found
        if not _PREFIX_CHARS.issuperset(bare):
            break  # an ordinary word: the message has begun
    logfmt = _LOGFMT.search(text, 0, 200) if "level=" in text else None
    if logfmt:
        return LEVEL_WORDS.get(logfmt.group(1).upper(), "INFO")
    return None


# What a line must contain, lower-cased, for detect_level to find anything but INFO (every
# LEVEL_WORDS key other than INFO and NOTICE starts with one of these), or for it to be read
# without its colour codes (ESC).
LEVEL_HINTS = ("trac", "debu", "dbg", "warn", "err", "crit", "fatal", "panic", "\x1b")
# Its upper case is "I": "cr\u0131t".upper() == "CRIT", which the lower-cased search misses.
_DOTLESS_I = "\u0131"


def lines_containing(texts: list[str], needles: tuple[str, ...], lower: bool = False) -> Any:
    """Indexes of the texts that contain one of the needles (lower-cased first with `lower`),
    or None when that cannot be told cheaply (every text must then be examined).

    One substring search per needle over all the texts joined, in C: a batch of lines costs a
    fraction of one regular-expression call per line. A few lines more (a needle past a line's
    head) is fine: the caller examines exactly the lines named."""
    joined = "\n".join(texts)
    hay = joined.lower() if lower else joined
    if len(hay) != len(joined) or (lower and _DOTLESS_I in hay):
        return None  # lower() moved the offsets, or a letter only upper() maps to ASCII
    found: set[int] = set()
    starts: list[int] = []
    for needle in needles:
        pos = hay.find(needle)
        while pos >= 0:
            if not starts:
                from _bisect import bisect_right  # once a needle is found (~0.3 ms to load)

                starts = [0, *accumulate(len(text) + 1 for text in texts)]
            index = bisect_right(starts, pos) - 1
            found.add(index)
            pos = hay.find(needle, starts[index + 1])  # the rest of that line: already in
    return found
