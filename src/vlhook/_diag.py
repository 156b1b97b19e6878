"""The interceptor's own voice: diagnostics on the original stderr, and its internal errors.

Nothing here may raise or write through a captured stream (that would be captured and shipped).
Messages are rate-limited per key. Everything shown goes through `scrub`: the configuration's
credentials, credentials in URLs of any form, secret query parameters and the built-in patterns
are masked, whatever the message is about.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, TextIO

    from vlhook._config import Config

RATE_LIMIT_S = 30.0

_out: Optional[TextIO] = None
_debug = False
_last_shown: dict[str, float] = {}
#: Internal errors swallowed so far, as "where: Type: message" (the test suite asserts it is empty).
internal_errors: list[str] = []
_MAX_KEPT = 100
_secrets: tuple[str, ...] = ()
_secret_names: tuple[str, ...] = ()


def configure(out: Optional[TextIO], debug: bool) -> None:
    global _out, _debug
    _out = out
    _debug = debug


def protect(config: Config) -> None:
    """Remember the configuration's credentials (URL passwords, bearer token, header values)
    and extra secret field names: no message shows them from now on."""
    global _secrets, _secret_names
    values = [config.bearer_token, *(value for _, value in config.headers)]
    for endpoint in config.endpoints:
        if endpoint.username or endpoint.password:
            # A lone user name may be a token (`https://TOKEN@host`); the pair is base64-encoded
            # in the Basic header.
            values += [endpoint.password or endpoint.username]
            values += [f"{endpoint.username}:{endpoint.password}"]
    _secrets = tuple(value for value in values if value)
    _secret_names = config.redact_keys


def scrub(text: str) -> str:
    """A message as it may be shown."""
    from vlhook._redact import scrub as _scrub

    return _scrub(text, _secrets, _secret_names)


def _write(text: str) -> None:
    try:
        line = f"vlhook: {scrub(text)}\n"
    except Exception:  # never the unscrubbed text
        line = "vlhook: (a message could not be shown)\n"
    try:
        if _out is not None:
            _out.write(line)
            _out.flush()
        else:
            os.write(2, line.encode("utf-8", "replace"))
    except Exception:
        pass


def warn(text: str, key: Optional[str] = None) -> None:
    """Something the user must know (bad config, data lost): shown, at most once per key/30 s."""
    now = time.monotonic()
    key = key or text
    last = _last_shown.get(key)
    if last is not None and now - last < RATE_LIMIT_S:
        return
    _last_shown[key] = now
    _write(text)


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
