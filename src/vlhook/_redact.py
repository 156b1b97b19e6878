"""Redaction of secrets before anything leaves the process.

Each built-in pattern has a literal that any match must contain; the regex runs only when that
literal is present, so a line without secrets costs a few substring tests.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from collections.abc import Sequence
    from typing import Callable, Optional

MASK = "[REDACTED]"

# (literals any match contains, pattern, replacement)
_BUILTIN: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("AKIA", "ASIA", "AIDA", "AROA"),
        r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b",
        MASK,
    ),
    (
        ("ecret", "ECRET"),
        r"(?i)(secret_?access_?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40}",
        r"\1" + MASK,
    ),
    (("earer", "EARER"), r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*", r"\1" + MASK),
    (("eyJ",), r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", MASK),
    (("://",), r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@", r"\1" + MASK + "@"),
)


class Redactor:
    """Applies the built-in patterns and the user's own (`VICTORIALOGS_REDACT`)."""

    def __init__(self, extra: Sequence[str] = (), builtin: bool = True) -> None:
        self._rules: list[tuple[tuple[str, ...], re.Pattern[str], str]] = []
        self._hint: Optional[re.Pattern[str]] = None
        literals: list[str] = []
        if builtin:
            self._rules = [(lit, re.compile(p), rep) for lit, p, rep in _BUILTIN]
            # One search in C for any of the literals: most lines stop here.
            literals = sorted({lit for lits, _, _ in _BUILTIN for lit in lits})
            self._hint = re.compile("|".join(re.escape(lit) for lit in literals))
        self._extra = [re.compile(p) for p in extra]
        #: Substrings every match contains, or None when a user pattern may match anything.
        self.needles = None if self._extra else tuple(literals)

    def __call__(self, text: str) -> Optional[str]:
        """The redacted text, or None when nothing matched (the common, cheap case)."""
        out = text
        if self._hint is not None and self._hint.search(text):
            for literals, pattern, replacement in self._rules:
                for literal in literals:
                    if literal in out:
                        out = pattern.sub(replacement, out)
                        break
        for pattern in self._extra:
            out = pattern.sub(MASK, out)
        return None if out == text else out


_default: Optional[Callable[[str], Optional[str]]] = None


def redact_text(text: str) -> str:
    """Built-in redaction for the interceptor's own messages."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default(text) or text
