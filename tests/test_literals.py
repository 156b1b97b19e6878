"""The literals every match of a user's pattern holds (`vlhook._literals`), and the searches
that use them: a text without one is never examined, a text with one is redacted exactly as
examining every text would."""

from __future__ import annotations

import re
import string
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlhook import _literals
from vlhook._captures import line as make_line
from vlhook._config import load
from vlhook._entry import EntryBuilder
from vlhook._literals import needles_of
from vlhook._redact import MASK, Redactor
from vlhook._stats import Stats

T_NS = 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    ("pattern", "needles"),
    [
        (r"ghp_[A-Za-z0-9]{36}", ("ghp_",)),
        (r"xox[abpr]-[A-Za-z0-9-]{10,}", ("xoxa-", "xoxb-", "xoxp-", "xoxr-")),  # a class
        (r"gh[pousr]_\w{36}", ("gho_", "ghp_", "ghr_", "ghs_", "ghu_")),
        (r"(?:ghp|gho)_\w+", ("gho_", "ghp_")),  # the parser makes `gh[po]` of it
        (r"sk-(?:proj|ant)-\w+", ("sk-ant-", "sk-proj-")),  # a group of runs: each spelling
        (r"(?:a|)bc", ("bc",)),  # an empty branch: the group holds nothing for certain
        (r"\bAKIA[0-9A-Z]{16}\b", ("akia",)),  # lower-cased: the texts are searched so
        (r"card=\d+", ("card=",)),
        (r"[a-z]+_live_[0-9a-zA-Z]{24}", ("_live_",)),  # a literal inside the match
        (r"sk_live_\w+|rk_live_\w+", ("rk_live_", "sk_live_")),  # one of each branch
        (r"(?:token|secret)=\S+", ("secret=", "token=")),
        (r"(foo)+bar", ("foo",)),  # a repeat at least once holds `foo`; `bar` is no longer
        (r"(?x) hello \s world", ("hello",)),  # verbose: spaces are no literals
        (r"(?:a|b)c\d", ("ac", "bc")),  # single characters make a class
        (r"(?>abc)d", ("abc",)),
        # IGNORECASE: `s` and `i` match characters whose lower case is another (U+017F...)
        (r"(?i)secret\d+", ("ecret",)),
        (r"(?i)token-[a-z]+", ("token-",)),
        (r"a(?i:bcs)d", ("bc",)),
        (r"(?i)a(?-i:sb)c", ("asbc",)),  # case-sensitive again inside: `s` is itself there
        (r"(?i)x[ks]y", ("x",)),  # a class holding a letter folded away ends the run
        (r"(?i:İstanbul)", ("tanbul",)),  # not ASCII: no needle holds it
        # No literal every match holds: every text is examined, as before.
        (r"\d{16}", None),
        (r"x*", None),
        (r"(?:abc)?\d+", None),  # an optional group
        (r"abc|\d+", None),  # a branch without one
        (r"(?=abc)\w+", None),  # a lookahead matches nothing itself
        # More searches than examining would cost (the parser keeps no common prefix here).
        ("|".join(f"{a}{b}q" for a in "abcdef" for b in "ghijkl"), None),
    ],
)
def test_needles_of_a_pattern(pattern: str, needles: Optional[tuple[str, ...]]) -> None:
    if pattern.startswith("(?>") and not hasattr(re, "NOFLAG"):  # atomic groups: 3.11
        pytest.skip("atomic groups came with Python 3.11")
    assert needles_of(re.compile(pattern)) == needles


def test_every_match_holds_one_of_its_needles() -> None:
    """The needles' promise, checked on matches: each one holds a needle, lower-cased."""
    cases = {
        r"(?i)internal-\d+": ["INTERNAL-42", "Internal-7", "internal-0"],
        r"(?:ghp|gho)_[A-Za-z0-9]{4}": ["ghp_abcd", "gho_AB12"],
        r"(?i)pass(?:word)?=\S+": ["PASS=x", "Password=y", "pAsSwOrD=z"],
        r"(foo)+bar": ["foofoobar", "foobar"],
    }
    for pattern, texts in cases.items():
        needles = needles_of(re.compile(pattern))
        assert needles is not None, pattern
        for text in texts:
            found = re.compile(pattern).search(text)
            assert found is not None, (pattern, text)
            assert any(needle in found.group().lower() for needle in needles), (pattern, text)


def test_the_letters_folded_away_are_all_of_them() -> None:
    """Every character that a pattern with IGNORECASE matches for an ASCII letter, and whose
    lower case is not that letter's, is one of _FOLDED_AWAY's: such a letter must end a
    needle, or the lower-cased search would miss the match."""
    letters = re.compile(r"(?i)[a-z]")
    folded_away = set()
    for code in range(128, 0x110000):
        char = chr(code)
        if letters.fullmatch(char) and not char.lower().isascii():
            folded_away |= {c for c in string.ascii_letters if re.fullmatch(f"(?i){c}", char)}
        elif letters.fullmatch(char) and len(char.lower()) > 1:  # İ: `i` and a dot above
            folded_away |= {c for c in string.ascii_letters if re.fullmatch(f"(?i){c}", char)}
    assert folded_away == set(_literals._FOLDED_AWAY)


def test_a_parser_that_fails_leaves_the_pattern_examining_every_text(monkeypatch: Any) -> None:
    """The parse tree is the interpreter's own: a Python whose tree reads otherwise costs
    speed, never a secret."""

    class Broken:
        @staticmethod
        def parse(source: str, flags: int) -> Any:
            return [(object(), None)]  # no `.name`: not a tree this reading knows

    monkeypatch.setattr("vlhook._literals.importlib.import_module", lambda name: Broken)
    assert needles_of(re.compile("ghp_x")) is None
    redactor = Redactor(["ghp_x"])
    assert redactor.needles is None and redactor.may_match("anything")


# -- the searches that use them ---------------------------------------------------------------


def builder(**env: str) -> EntryBuilder:
    return EntryBuilder(load(env), Stats())


def lines(texts: list[str]) -> list[Any]:
    return [make_line(0, text, T_NS + i, None, "") for i, text in enumerate(texts)]


TEXTS = [
    "plain line without anything",
    "token ghp_" + "a1" * 18 + " in the middle",
    "GHP_" + "B2" * 18 + " upper case: the pattern is case-sensitive, not matched",
    "\u017fsn-1: a long s, which the pattern matches for its s",
    "SSN-2 upper case",
    '{"msg": "json", "k": "gh\\u0070_' + "c3" * 18 + '"}',  # an escape: examined whole
    '{"msg": "json", "k": "ssn-4"}',
    "ss n-5 is not one",
    "level=error ssn-6",
]
PATTERNS = r"ghp_[a-z0-9]{36},,(?i)ssn-\d"


@pytest.mark.parametrize("dotted", [False, True])
def test_a_group_masks_what_examining_each_text_masks(dotted: bool) -> None:
    """The group's searches (from_lines, written_lines) against from_line, which examines
    every text: the same entries, and each secret masked. With an `İ` in the group (lower-
    casing makes it two characters) the searches cannot be trusted, and every text is
    examined."""
    b = builder(VICTORIALOGS_REDACT=PATTERNS)
    assert b.redactor.needles is not None  # the searches are used, not every text examined
    made = lines(TEXTS + ["İstanbul ssn-3 after a dotted capital I"] * dotted)
    one_by_one = [entry for one in made for entry in b.from_line(one)]
    assert b.from_lines(made) == one_by_one
    assert b.written_lines(made) == builder(VICTORIALOGS_REDACT=PATTERNS).written_lines(made)
    shipped = repr(one_by_one)
    assert "ghp_a1" not in shipped and "ghp_c3" not in shipped and "gh\\\\u0070" not in shipped
    for secret in ("\u017fsn-1", "SSN-2", "ssn-3", "ssn-4", "ssn-6"):
        assert secret not in shipped, secret
    assert "GHP_B2" in shipped and "ss n-5" in shipped
    assert shipped.count(MASK) == 6 + dotted


def test_the_fields_every_entry_carries_are_masked_by_a_needle_in_any_case() -> None:
    b = builder(VICTORIALOGS_REDACT=r"(?i)tenant-\d+",
                VICTORIALOGS_FIELDS="owner=TENANT-42,Tenant-7=x")  # fmt: skip
    assert b.constants({"owner": "TENANT-42", "Tenant-7": "x", "env": "prod"}) == {
        "owner": MASK, MASK: "x", "env": "prod"}  # fmt: skip


def test_a_pattern_without_needles_examines_every_text() -> None:
    b = builder(VICTORIALOGS_REDACT=r"\d{16}")
    assert b.redactor.needles is None
    made = lines(["card 1234567812345678", "plain"])
    assert [e["_msg"] for e in b.from_lines(made)] == [f"card {MASK}", "plain"]


_PIECES = st.sampled_from(
    ["\u017fsn-9", "SSN-1", "ssn-", "sn-2", "Card=42", "card =1", "ghp_" + "x1" * 18, "GHP_", "x",
     " ", "\n", "\u0130", "\u0131", "\u00e9", "level=error", "plain", "AKIAIOSFODNN7EXAMPLE",
     "xoxb-abcd", "XOXP-1234", "xoxq-", "sk-proj-abc", "sk-ant-xyz", "sk-x", "-", "xYSz",
     "xy\u017fz"]
)  # fmt: skip
_TEXTS = st.lists(st.lists(_PIECES, min_size=1, max_size=8).map("".join), min_size=1,
                  max_size=12)  # fmt: skip
_USERS = st.sampled_from(
    [r"(?i)ssn-\d", r"card=\d+", r"ghp_\w{36}", r"(?i)card\s*=\s*\d|ssn-\d",
     r"(?i)xox[abp]-\w{4}", r"sk-(?:proj|ant)-\w{3},,x[o]x[bp]-\w{4}", r"x(?i:ys)z"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_TEXTS, _USERS)
def test_a_group_stores_each_text_as_the_redactor_makes_it(texts: list[str], users: str) -> None:
    """Against the redactor itself, which tries a user's pattern on any text it is given:
    whatever the group's searches found or missed, each plain text goes as it makes it."""
    b = builder(VICTORIALOGS_REDACT=users)
    expected = [b.redactor(text) or text for text in texts if text.strip()]
    made = lines([text for text in texts if text.strip()])
    assert ["\n".join(e["_msg"] for e in b.from_lines([one])) for one in made] == expected
    assert [e["_msg"] for e in b.from_lines(made)] == expected


def test_vlhooks_own_ids_are_examined_when_a_users_literal_is_in_them() -> None:
    """Lines carry vlhook's own ids (a trace's, here from a context as TRACEPARENT makes one)
    unexamined, since no built-in pattern can match them; a pattern of the user's can, and
    its literal is looked for in them."""
    ids = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
           "trace_flags": "01"}  # fmt: skip
    made = [make_line(0, f"plain {i}", T_NS + i, (None, ids), "") for i in range(3)]
    b = builder(VICTORIALOGS_REDACT=r"b7ad6b71\d+")
    for entries in (b.from_lines(made), b.written_lines(made)):
        assert "b7ad6b71" not in repr(entries) and repr(entries).count(MASK) == 3
    other = builder(VICTORIALOGS_REDACT=r"ghp_\w+")  # its literal is in no id: as they are
    assert repr(other.written_lines(made)).count("b7ad6b7169203331") == 3
