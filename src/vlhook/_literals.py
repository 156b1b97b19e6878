"""What every match of a user's regular expression holds (VICTORIALOGS_REDACT): literals the
entry builder's group searches look for, so that a pattern examines only the texts that hold
one of them, as the built-in patterns do, rather than every text of every entry.

Read from the pattern's parse tree (`re._parser`; `sre_parse` before Python 3.11): runs of
literal characters and of classes of a few (`gh[pousr]_` makes five needles). A pattern
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

    #: Needles of which every match holds one; empty when none can be told.
    Needles = frozenset[str]

#: More needles than this cost more searches than examining the texts would (each ~0.04 µs a
#: line, examining a text several µs): a pattern that would need more has none.
MAX_NEEDLES = 32
#: Letters that a pattern with IGNORECASE matches in a character whose lower case is another
#: one (U+017F, the long s, for `s`; U+0130 and U+0131, the dotted and dotless I, for `i`):
#: the searches, made in lower-cased text, would miss such a match, so these letters end a
#: literal there. Checked against every character in tests/test_literals.py.
_FOLDED_AWAY = frozenset("iIsS")
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
_START = frozenset(("",))  # a run not begun: one spelling, empty


def needles_of(pattern: Pattern[str]) -> Optional[tuple[str, ...]]:
    """Lower-cased substrings one of which every match of the pattern holds (the texts are
    searched lower-cased), or None when none can be told."""
    name = "re._parser" if sys.version_info >= (3, 11) else "sre_parse"
    try:
        tree = importlib.import_module(name).parse(pattern.pattern, pattern.flags)
        found = _sequence(tree, bool(pattern.flags & IGNORECASE))
    except Exception:  # a parser of another Python version: the pattern examines every text
        return None
    return tuple(sorted(found)) or None


def _sequence(items: Iterable[Any], folded: bool) -> Needles:
    """The best needles of a sequence of items that a match goes through one after the
    other: the spellings of a run of literal characters and classes of a few (`gh[pousr]_`:
    `ghp_`, `gho_`...), or what an item that a match must go through holds (a group, an
    alternation whose every branch has needles, a repeat at least once)."""
    best: Needles = frozenset()
    run = _START  # the spellings of the literal run so far
    for op, value in items:
        kind = op.name
        spellings = _spellings(kind, value, folded)
        longer = _joined(run, spellings)
        if longer:
            run = longer
            continue
        best = _better(best, run)
        run = spellings or _START  # too many spellings with the run: a run of its own begins
        if spellings:
            continue
        if kind == "SUBPATTERN":
            _, added, removed, sub = value
            best = _better(best, _sequence(sub, _folded(folded, added, removed)))
        elif kind == "BRANCH":
            best = _better(best, _all_of([_sequence(sub, folded) for sub in value[1]]))
        elif kind in _REPEATS and value[0] >= 1:
            best = _better(best, _sequence(value[2], folded))
        elif kind == "ATOMIC_GROUP":
            best = _better(best, _sequence(value, folded))
    return _better(best, run)


def _spellings(kind: str, value: Any, folded: bool) -> frozenset[str]:
    """The spellings of an item made of literal characters alone, lower-cased: a character,
    a class of a few, a group or an alternation of runs of them (`(?:proj|ant)`); none for
    any other item, or too many spellings."""
    if kind == "SUBPATTERN":
        _, added, removed, sub = value
        return _whole(sub, _folded(folded, added, removed))
    if kind == "BRANCH":
        found = _all_of([_whole(sub, folded) for sub in value[1]])
        return found if len(found) <= MAX_NEEDLES else frozenset()
    return _letters(kind, value, folded)


def _whole(items: Iterable[Any], folded: bool) -> frozenset[str]:
    """The spellings of a sequence made of such items alone; none else."""
    run = _START
    for op, value in items:
        run = _joined(run, _spellings(op.name, value, folded))
        if not run:
            return frozenset()
    return frozenset() if run == _START else run


def _joined(run: frozenset[str], spellings: frozenset[str]) -> frozenset[str]:
    """The spellings of a run followed by an item's; none when the item has none, or they
    would be too many."""
    if not spellings or len(run) * len(spellings) > MAX_NEEDLES:
        return frozenset()
    return frozenset(head + tail for head in run for tail in spellings)


def _folded(folded: bool, added: int, removed: int) -> bool:
    """Whether a group's letters match in any case: IGNORECASE set around it or by it, and
    not taken off by it."""
    return (folded or bool(added & IGNORECASE)) and not removed & IGNORECASE


def _letters(kind: str, value: Any, folded: bool) -> frozenset[str]:
    """The characters, lower-cased, that an item matches one of: a literal character, or a
    class of literal characters (`[pousr]`, as the parser also makes `p|o|u` of single
    letters); none when it is no such item, or one of them would not be found (see
    _searchable)."""
    if kind == "LITERAL":
        codes = [value]
    elif kind == "IN" and all(member.name == "LITERAL" for member, _ in value):
        codes = [code for _, code in value]
    else:
        return frozenset()
    if not all(_searchable(code, folded) for code in codes):
        return frozenset()
    return frozenset(chr(code).lower() for code in codes)


def _searchable(code: int, folded: bool) -> bool:
    """Whether a literal character is found by the searches wherever the pattern matches it:
    ASCII (lower-casing keeps it one character), and not a letter folded away."""
    return code < 128 and not (folded and chr(code) in _FOLDED_AWAY)


def _all_of(branches: list[Needles]) -> Needles:
    """Needles of an alternation: those of every branch, when each has some."""
    return frozenset().union(*branches) if branches and all(branches) else frozenset()


def _better(one: Needles, other: Needles) -> Needles:
    """The needles that cost less: few enough, and the shortest of them the longest (a long
    needle is found in fewer texts). A run not begun (an empty spelling) is none."""
    usable = [n for n in (one, other) if n and "" not in n and len(n) <= MAX_NEEDLES]
    if not usable:
        return frozenset()
    return max(usable, key=lambda needles: (min(map(len, needles)), -len(needles)))
