"""The interceptor's own voice: diagnostics on the original stderr, and its internal errors.

Nothing here may raise or write through a captured stream (that would be captured and shipped).
Messages are rate-limited per key. Everything shown goes through `scrub`: the configuration's
credentials, credentials in URLs of any form, secret query parameters and the built-in patterns
are masked, whatever the message is about. What `scrub` needs (`re`, the patterns) loads with
the first message, or earlier by `ready()`: at interpreter teardown no import works, and a
message that could not be filtered then is not shown at all.
"""

from __future__ import annotations

import os
import sys  # loaded by the interpreter already
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from re import Match
    from types import TracebackType
    from typing import Optional, TextIO

    from vlhook._config import Config

RATE_LIMIT_S = 30.0
#: The rate limit's key for the line that stands in for a message that could not be shown.
NOT_SHOWN = "(not shown)"

_out: Optional[TextIO] = None
_debug = False
_last_shown: dict[str, float] = {}
#: Internal errors swallowed so far, as "where: Type: message" (the test suite asserts it is empty).
internal_errors: list[str] = []
_MAX_KEPT = 100
SHOWN = "***"
#: Shorter configured credentials are not searched for in messages (a one-letter password would
#: blank every such letter); URLs' credentials are masked whatever their length.
MIN_SECRET_CHARS = 4
_secrets: tuple[str, ...] = ()
_secret_names: tuple[str, ...] = ()
_forms: Optional[tuple[str, ...]] = None  # _secrets as messages may show them, made when needed
_who = "vlhook"  # see speak_as
_filters: Optional[_Filters] = None  # what scrub needs: loaded at the first message, or by ready()
#: What urllib.parse.quote(..., safe="") leaves as it is (that module costs ~13 ms to import).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def configure(out: Optional[TextIO], debug: bool) -> None:
    global _out, _debug
    _out = out
    _debug = debug


def speak_as(name: str) -> None:
    """What this process's messages begin with: vlhook's fd helper names itself, so that its
    own warnings and exit report (for the lines it ships) are told from the program's."""
    global _who
    _who = name


def protect(config: Config) -> None:
    """Remember the configuration's credentials (URL passwords, bearer token, header values)
    and extra secret field names: no message shows them from now on."""
    global _secrets, _secret_names, _forms
    values = [config.bearer_token, *(value for _, value in config.headers)]
    for endpoint in config.endpoints:
        if endpoint.username or endpoint.password:
            # A lone user name may be a token (`https://TOKEN@host`); the pair is base64-encoded
            # in the Basic header.
            values += [endpoint.password or endpoint.username]
            values += [f"{endpoint.username}:{endpoint.password}"]
    _secrets = tuple(value for value in values if value)
    _secret_names = config.redact_keys
    _forms = None


def ready() -> None:
    """Load everything showing a message takes, now: at interpreter teardown (an object's
    `__del__` that prints as the modules are cleared) no import works, not even of a module
    loaded already. For a process in which a message may come that late (see _exit)."""
    _loaded().redaction.default_redactor().ready()
    _secret_forms()


class _Filters:
    """What scrub needs beyond this module."""

    __slots__ = ("parameter", "redaction", "url_credentials")

    def __init__(self) -> None:
        import re

        from vlhook import _redact

        self.redaction = _redact  # the module: its functions are looked up at each call (tests
        # replace them)
        # A URL's credentials end at its last "@" before a space or a quote, whatever they hold
        # ("/", "?", "#", ",", "@", %-escapes): a message may show a URL not parsed as intended.
        self.url_credentials = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>]*@")
        self.parameter = re.compile(r"([?&;])([^=&;#\s'\"]+)=([^&;#\s'\"]*)")


def _loaded() -> _Filters:
    global _filters
    if _filters is None:
        _filters = _Filters()
    return _filters


def scrub(text: str) -> str:
    """A message as it may be shown: the configuration's credentials (in the forms a message
    may show them), the credentials of any URL, query parameters named like secrets and the
    redaction patterns masked."""
    filters = _loaded()
    redaction = filters.redaction
    for form in _secret_forms():
        text = text.replace(form, SHOWN)
    text = filters.url_credentials.sub(_credentials_masked, text)
    if "=" in text:
        field_name = redaction.field_name
        names = (*redaction.SECRET_NAMES, *_secret_names)
        deny = tuple({field_name(name) for name in names} - {""})

        def parameter(match: Match[str]) -> str:
            if not field_name(match.group(2)).endswith(deny):
                return match.group(0)
            return f"{match.group(1)}{match.group(2)}={SHOWN}"

        text = filters.parameter.sub(parameter, text)
    return str(redaction.redact_text(text))


def _credentials_masked(match: Match[str]) -> str:
    # A function, not the template r"\1***@": before Python 3.12 a template imports `re` at
    # each use, and no import works at interpreter teardown.
    return f"{match.group(1)}{SHOWN}@"


def _secret_forms() -> tuple[str, ...]:
    """Each credential as is, %-escaped (in a URL), escaped as Python shows it in a str or
    bytes repr (in an exception's text) and base64-encoded (`user:password` in a Basic header);
    longest first, so that no part of a longer one is left."""
    global _forms
    if _forms is None:
        forms: set[str] = set()
        if _secrets:
            import binascii

            for secret in _secrets:
                raw = secret.encode("utf-8", "replace")
                forms.update((secret, _escaped(raw), repr(secret)[1:-1], repr(raw)[2:-1],
                              binascii.b2a_base64(raw, newline=False).decode()))  # fmt: skip
        long_enough = (form for form in forms if len(form) >= MIN_SECRET_CHARS)
        _forms = tuple(sorted(long_enough, key=len, reverse=True))
    return _forms


def _escaped(raw: bytes) -> str:
    """`raw` %-escaped as urllib.parse.quote(..., safe="") writes it."""
    return "".join(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in raw)


def _write(text: str) -> bool:
    """Whether the message itself was shown (else at most a line saying it could not be)."""
    # At interpreter teardown no import works: a message whose filter is not loaded (see
    # ready), or that needs an import all the same, is not shown (never unfiltered, and never
    # a word in place of it in the program's last output).
    if _filters is None and sys.is_finalizing():
        return False
    shown = True
    try:
        line = f"{_who}: {scrub(text)}\n"
    except Exception as exc:  # never the unscrubbed text
        if sys.is_finalizing():  # no import works, and a module may be wiped already
            return False
        # Why, when the filter's files could not be opened (a program at its limit of open
        # files): vlhook's own words, no part of the message.
        why = f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else ""
        line, shown = f"vlhook: (a message could not be shown{why})\n", False
        now = time.monotonic()
        if _held_back(NOT_SHOWN, now):
            return False
        _last_shown[NOT_SHOWN] = now
    try:
        if _out is not None:
            _out.write(line)
            _out.flush()
        else:
            os.write(2, line.encode("utf-8", "replace"))
    except Exception:
        pass
    return shown


def _held_back(key: str, now: float) -> bool:
    """Whether a line under `key` was shown less than RATE_LIMIT_S ago."""
    last = _last_shown.get(key)
    return last is not None and now - last < RATE_LIMIT_S


def warn(text: str, key: Optional[str] = None) -> bool:
    """Something the user must know (bad config, data lost): shown, at most once per key/30 s.
    True when it was shown; one that could not be (see _write) is not held back next time,
    and what it told of is left to the exit's report (see Sender.untold_drops)."""
    now = time.monotonic()
    key = key or text
    if _held_back(key, now) or not _write(text):
        return False
    _last_shown[key] = now
    return True


def debug(text: str) -> None:
    if _debug:
        _write(text)


def internal_error(where: str, exc: BaseException) -> None:
    """An error inside the interceptor, swallowed so the program never sees it."""
    try:
        record = f"{where}: {type(exc).__name__}: {exc}"
        if len(internal_errors) < _MAX_KEPT:
            internal_errors.append(record)
        warn(f"internal error in {record} (the program is not affected)", key=where)
    except Exception:
        pass


class guard:
    """The one guard around every hook body: an exception inside is reported as an internal
    error (once per place, rate-limited) and swallowed, so it never reaches the program."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: the program's, never swallowed
        internal_error(self.where, exc)
        return True
