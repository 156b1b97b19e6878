"""Regular expressions compiled at their first use.

`re` costs ~3 ms to import (~6 ms with the enum and functools modules it brings), paid by every
process that ships anything if a pattern is compiled when a module loads. Most lines never need
one (the entry builder finds level words and secrets by plain substring searches first), so a
short-lived process that printed a few plain lines never loads `re`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from re import Pattern
    from typing import Any

_METHODS = ("search", "match", "fullmatch", "finditer", "findall", "sub", "subn", "split")


class _Lazy:
    """Stands in for a compiled pattern; compiles it, once, when a method is first asked for
    (the methods are then plain attributes: later calls cost what the pattern's own do)."""

    def __init__(self, source: str) -> None:
        self.pattern = source

    def __getattr__(self, name: str) -> Any:
        import re

        compiled = re.compile(self.pattern)
        for method in _METHODS:
            setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)


def lazy(source: str) -> Pattern[str]:
    """The pattern, compiled at its first use (flags inline: `(?i)`)."""
    return _Lazy(source)  # type: ignore[return-value]
