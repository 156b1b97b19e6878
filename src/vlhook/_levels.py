"""Levels: the five names entries use, and the level a printed line names at its head.

`Hay` searches a group's texts at once for what may name a level, and for what the entry
builder also looks for in them (secrets' literals, characters JSON escapes). Runs on the
sender thread.
"""

from __future__ import annotations

from _operator import itemgetter  # not `operator`: a Python module, ~0.3 ms to load
from itertools import accumulate

from vlhook._patterns import lazy

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Optional

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
_LOGFMT = lazy(r"\blevel=[\"']?([A-Za-z]{3,8})\b")  # '...': structlog's KeyValueRenderer
# A warning as Python prints it (its `warnings` module, or the interpreter before that module is
# loaded): `<file>:<line>: <Category>: <message>`, the category a Warning subclass's name.
# Python's own logging of warnings (`logging.captureWarnings`) gives them WARNING.
PYTHON_WARNING_MARK = "Warning: "
_PYTHON_WARNING = lazy(r"\S.*?:\d+: \w*Warning: ")
# How far into a line named_level reads: its head tokens within the first _HEAD_CHARS
# characters, a logfmt `level=` within the first _LOGFMT_CHARS. A level word further on names
# nothing, so the group's search for level words need not look further either (LEVEL_HEAD).
_HEAD_CHARS = 160
_LOGFMT_CHARS = 200


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
    """Level of a plain text line from its leading form; INFO when it shows none. A text of
    several lines is as severe as the most severe level its lines name."""
    level = named_level(text) or "INFO"
    return level if "\n" not in text else _most_severe(text, level)


#: detect_level's order of severity.
_SEVERITY = {"DEBUG": 0, "INFO": 1, "WARNING": 2, "ERROR": 3, "CRITICAL": 4}


def _most_severe(text: str, level: str) -> str:
    """The most severe of `level` (the first line's) and the levels the other lines name. A
    terminal's progress display and the lines printed over it make one entry of several
    states (see _lines): "ERROR: item 3 failed" printed over a progress bar's state is what
    a terminal shows last, and its level the entry's. Only the lines a group's search says
    may name one are read (a bar's many states seldom do)."""
    lines = text.split("\n")
    candidates = Hay(lines).level_candidates()
    for index in range(1, len(lines)) if candidates is None else candidates - {0}:
        named = named_level(lines[index])
        if named is not None and _SEVERITY[named] > _SEVERITY[level]:
            level = named
    return level


def named_level(text: str) -> Optional[str]:
    """The level a line's leading form names, or None."""
    named_by = False  # a `name:` came first: the level must take its colon then
    for count, match in enumerate(_HEAD_TOKEN.finditer(text, 0, _HEAD_CHARS)):
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
        if found and (colon or (word.isupper() and not named_by)):
            return found
        if colon and _is_error_class(word):
            return "ERROR"
        if not _PREFIX_CHARS.issuperset(bare):
            if named_by or bare[-1] != ":":
                break  # an ordinary word: the message has begun
            # `prog: error: ...`, `file.c:10:5: warning: ...`: how argparse, GNU tools,
            # compilers and type checkers name the severity, after who says it.
            named_by = True
    if is_python_warning(text):
        return "WARNING"
    logfmt = _LOGFMT.search(text, 0, _LOGFMT_CHARS) if "level=" in text else None
    if logfmt:
        return LEVEL_WORDS.get(logfmt.group(1).upper(), "INFO")
    return None


def _is_error_class(word: str) -> bool:
    """`ValueError`, `requests.exceptions.ConnectionError`: an exception's line, as a traceback
    ends and as a program prints what it caught (`CommandError: ...` from Django)."""
    name = word.rpartition(".")[2]
    return name.endswith("Error") and name[:1].isupper() and name.isidentifier()


def is_python_warning(text: str) -> bool:
    """Whether a line is the first line of a warning as Python prints it (see
    _PYTHON_WARNING), its category named within the line's head."""
    return (
        text.find(PYTHON_WARNING_MARK, 0, _HEAD_CHARS) >= 0
        and _PYTHON_WARNING.match(text, 0, _HEAD_CHARS) is not None
    )


# What a line must contain, lower-cased, within its first LEVEL_HEAD characters, for
# detect_level to find anything but INFO: every LEVEL_WORDS key other than INFO and NOTICE
# starts with one of these.
LEVEL_HINTS = ("trac", "debu", "dbg", "warn", "err", "crit", "fatal", "panic")
LEVEL_HEAD = max(_HEAD_CHARS, _LOGFMT_CHARS)
_HEAD_OF = itemgetter(slice(0, LEVEL_HEAD))  # a text cut to its first LEVEL_HEAD characters
# Texts longer than this on average are cut to their heads for that search; measured over
# groups of 1,024 lines, cutting costs more than it saves below ~200 characters on average.
_CUT_FROM = LEVEL_HEAD * 5 // 4
#: What a text holding escape sequences (colours, links) holds: it is read without them.
COLOUR = ("\x1b",)
# Its upper case is "I": "cr\u0131t".upper() == "CRIT", which the lower-cased search misses.
_DOTLESS_I = "\u0131"


class Hay:
    """A group's texts joined once (and lower-cased once) for the several searches made over
    them: level words, secrets' literals, characters JSON escapes.

    One substring search per needle over all the texts joined, in C: a batch of lines costs a
    fraction of one regular-expression call per line. A few lines more (a needle past a line's
    head, or found only once lower-cased) is fine: the caller examines exactly the lines named."""

    __slots__ = ("_joined", "_lowered", "_starts", "texts")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self._joined = "\n".join(texts)
        #: The joined texts lower-cased, made by the first search that asks; "" when lower-
        #: casing moved the offsets (see lines_with).
        self._lowered: Optional[str] = None
        self._starts: list[int] = []  # each text's offset in the joined texts, once needed

    def lines_with(self, needles: tuple[str, ...], lower: bool = False) -> Optional[set[int]]:
        """Indexes of the texts that contain one of the needles (lower-cased with `lower`: the
        needles are then lower case), or None when lower-casing moved the offsets or cannot
        be trusted to find them (a letter only upper() maps to ASCII): the caller must then
        examine every text, or search without `lower`."""
        hay = self._joined
        if lower:
            if self._lowered is None:
                lowered = hay.lower()
                usable = len(lowered) == len(hay) and _DOTLESS_I not in lowered
                self._lowered = lowered if usable else ""
            if len(self._lowered) != len(hay):
                return None
            hay = self._lowered
        found: set[int] = set()
        starts = self._starts
        for needle in needles:
            pos = hay.find(needle)
            while pos >= 0:
                if not found:  # the first hit of this search (an import runs ~0.6 µs)
                    from _bisect import bisect_right  # not before one (~0.3 ms to load)

                    starts = self._line_starts()
                index = bisect_right(starts, pos) - 1
                found.add(index)
                pos = hay.find(needle, starts[index + 1])  # the rest of that line: in already
        return found

    def level_candidates(self) -> Optional[set[int]]:
        """Indexes of the texts that may name a level (a level word at most LEVEL_HEAD
        characters in) or hold colour codes; None when the search cannot tell (see
        lines_with): the caller must then examine every text.

        The level words are searched over the texts' heads alone when the texts are long:
        eight searches over a group's every character cost ~5 ns a character here, and on
        lines of 1,000 characters most of that would be spent past any place a level can be
        named (measured: 9.3 → 1.8 ms for a group of 1,024 such lines). Shorter texts are
        searched as they are."""
        heads = self
        if len(self._joined) > _CUT_FROM * len(self.texts):
            heads = Hay(list(map(_HEAD_OF, self.texts)))
        found = heads.lines_with(LEVEL_HINTS, lower=True)
        if found is not None:
            found.update(self.lines_with(COLOUR) or ())
        return found

    def count(self, needles: tuple[str, ...]) -> int:
        """How often the needles occur in the texts in all: a needle found nowhere costs one C
        search (`memchr` for a character), a needle found one count."""
        joined = self._joined
        return sum([joined.count(needle) for needle in needles if needle in joined])

    def holds_newlines(self) -> bool:
        """Whether a text holds a newline of its own (a line never does; a message may)."""
        return self._joined.count("\n") >= len(self.texts)

    def _line_starts(self) -> list[int]:
        """Each text's offset in the joined texts (made once, at the first hit of any search)."""
        if not self._starts:
            self._starts = [0, *accumulate(len(text) + 1 for text in self.texts)]
        return self._starts
