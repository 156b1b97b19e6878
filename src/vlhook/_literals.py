"""What every match of a user's regular expression holds (VICTORIALOGS_REDACT): literals the
entry builder's group searches look for, so that a pattern examines only the texts that hold
one of them, as the built-in patterns do, rather than every text of every entry.

Read from the pattern's parse tree (`re._parser`; `sre_parse` before Python 3.11). A pattern
the reading does not understand, or that has no such literal (`\\d{16}`), has none: it then
examines every text, as before. Loaded only with patterns of the user's, when `re` is loaded.
"""

from __future__ import annotations

import importlib
import sys
from re import IGNORECASE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from re import Pattern
    from typing import Any, Optional

    Needles = Optional[frozenset[str]]

#: More needles than this cost more searches than examining the texts would (each ~0.04 µs a
#: line, examining a text several µs): a pattern that would need more has none.
MAX_NEEDLES = 32
#: Letters that a pattern with IGNORECASE matches in a character whose lower case is another
#: one (U+017F, the long s, for `s`; U+0130 and U+0131, the dotted and dotless I, for `i`):
#: the searches, made in lower-cased text, would miss such a match, so these letters end a
#: literal there. Checked against every character in tests/test_literals.py.
_FOLDED_AWAY = frozenset("iIsS")
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def needles_of(pattern: Pattern[str]) -> Optional[tuple[str, ...]]:
    """Lower-cased substrings one of which every match of the pattern holds (the texts are
    searched lower-cased), or None when none can be told."""
    name = "re._parser" if sys.version_info >= (3, 11) else "sre_parse"
    try:
        tree = importlib.import_module(name).parse(pattern.pattern, pattern.flags)
        found = _sequence(tree, bool(pattern.flags & IGNORECASE))
    except Exception:  # a parser of another Python version: the pattern examines every text
        return None
    return tuple(sorted(found)) if found else None


def _sequence(items: Iterable[Any], folded: bool) -> Needles:
    """The best needles of a sequence of items that a match goes through one after the
    other: a run of literal characters, or what an item that a match must go through holds
    (a group, an alternation whose every branch has needles, a repeat at least once)."""
    best: Needles = None
    run: list[str] = []
    for op, value in items:
        kind = op.name
        if kind == "LITERAL" and _searchable(value, folded):
            run.append(chr(value).lower())
            continue
        best = _better(best, _literal(run))
        run = []
        if kind == "SUBPATTERN":
            _, added, removed, sub = value
            best = _better(best, _sequence(sub, (folded or bool(added & IGNORECASE))
                                           and not removed & IGNORECASE))  # fmt: skip
        elif kind == "BRANCH":
            best = _better(best, _any_of([_sequence(sub, folded) for sub in value[1]]))
        elif kind in _REPEATS and value[0] >= 1:
            best = _better(best, _sequence(value[2], folded))
        elif kind == "ATOMIC_GROUP":
            best = _better(best, _sequence(value, folded))
    return _better(best, _literal(run))


def _searchable(code: int, folded: bool) -> bool:
    """Whether a literal character is found by the searches wherever the pattern matches it:
    ASCII (lower-casing keeps it one character), and not a letter folded away."""
    return code < 128 and not (folded and chr(code) in _FOLDED_AWAY)


def _literal(run: list[str]) -> Needles:
    return frozenset(("".join(run),)) if run else None


def _any_of(branches: list[Needles]) -> Needles:
    """Needles of an alternation: those of every branch, when each has some."""
    if not branches or any(needles is None for needles in branches):
        return None
    return frozenset().union(*branches)  # type: ignore[arg-type]


def _better(one: Needles, other: Needles) -> Needles:
    """The needles that cost less: few enough, and the shortest of them the longest (a long
    needle is found in fewer texts)."""
    usable = [n for n in (one, other) if n is not None and len(n) <= MAX_NEEDLES]
    if not usable:
        return None
    return max(usable, key=lambda needles: (min(map(len, needles)), -len(needles)))
