"""Reading from VictoriaLogs' `/select/logsql/*` with shipping's settings: the same URLs (the
first that answers), credentials, extra headers, tenancy, TLS and redirects. Errors are plain
sentences, never with credentials (endpoints are shown by `Endpoint.display`, the server's own
text is masked by `_diag.scrub`)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import urlencode

from vlhook import _diag
from vlhook._activation import unsaid
from vlhook._config import Config, Endpoint, load
from vlhook._delivery.client import MAX_REDIRECTS, _redirect_target
from vlhook._delivery.transport import request_headers, tls_context, tls_trouble
from vlhook.cli._diagnose import why_inactive

GATEWAY_DOWN = frozenset({502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: As shipping: only these keep the method and the body (301, 302 and 303 would turn a POST
#: into a GET without its query).
FOLLOWED = frozenset({307, 308})
ERROR_READ_BYTES = 65536
ERROR_SHOWN_CHARS = 500


class SelectError(Exception):
    """What went wrong, as the user should read it."""


class NothingToAsk(SelectError):
    """No server is configured to ask (only file:// URLs): exit status 2, as without a URL."""


def say(command: str, text: str) -> None:
    """A message of `vlhook <command>` on stderr, masked as every message vlhook prints."""
    print(_diag.scrub(f"vlhook {command}: {text}"), file=sys.stderr, flush=True)


def configured(command: str) -> Optional[Config]:
    """The shipping configuration, or None after saying why there is nothing to read from."""
    config = load()
    _diag.protect(config)  # from here on, no message shows its credentials
    for warning in unsaid(config.warnings):
        say(command, f"warning: {warning}")
    if not config.active:
        say(command, why_inactive(os.environ))
        return None
    return config


def headers_for(endpoint: Endpoint, config: Config, credentials: bool = True) -> dict[str, str]:
    headers = request_headers(endpoint, config, credentials)
    headers.pop("Content-Encoding", None)  # the request body is a small form, sent as is
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return headers


class Answer:
    """An open 200 answer: its body line by line, as it arrives."""

    def __init__(self, endpoint: Endpoint, conn: Any, response: Any) -> None:
        self.endpoint = endpoint
        self._conn = conn
        self._response = response

    def lines(self) -> Iterator[bytes]:
        """Non-empty lines until the server ends the answer; SelectError if the connection
        breaks first."""
        from http.client import HTTPException

        while True:
            try:
                line = self._response.readline()
            except (OSError, HTTPException) as exc:
                raise SelectError(
                    f"the connection to {self.endpoint.display} broke: {_reason(exc)}"
                ) from None
            if not line:
                return
            if line.strip():
                yield line.rstrip(b"\r\n")

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass


def open_select(config: Config, path: str, params: dict[str, str], follow: bool) -> Answer:
    """POST `params` to `path` on the first endpoint that answers. `follow`: the answer is a
    live stream, read with no timeout once it has started."""
    endpoints = [e for e in config.endpoints if e.scheme != "file"]
    if not endpoints:
        raise NothingToAsk("VICTORIALOGS_URL names only files (file://): there is no server to ask")
    failures = []
    for endpoint in endpoints:
        try:
            return _request(endpoint, config, path, params, follow)
        except _Unreachable as exc:
            failures.append(str(exc))
    raise SelectError("; ".join(failures))


class _Unreachable(SelectError):
    """No answer from this endpoint: the next one may have one."""


def _request(
    endpoint: Endpoint, config: Config, path: str, params: dict[str, str], follow: bool
) -> Answer:
    body = urlencode(params).encode()
    timeout = config.timeout_ms / 1000
    conn, response, hop = exchange(endpoint, config, "POST", endpoint.base_path + path, body,
                                   timeout)  # fmt: skip
    if response.status != 200:
        text = error_text(response)
        conn.close()
        message = f"HTTP {response.status} from {hop.display}{_redirected(endpoint, hop)}: {text}"
        # A proxy's "nothing behind me" is no answer: the next URL may have one.
        raise (_Unreachable if response.status in GATEWAY_DOWN else SelectError)(message)
    if follow and conn.sock is not None:
        conn.sock.settimeout(None)  # a quiet stream is not a dead one
    return Answer(hop, conn, response)


def exchange(
    endpoint: Endpoint,
    config: Config,
    method: str,
    target: str,
    body: Optional[bytes],
    timeout: float,
) -> tuple[Any, Any, Endpoint]:
    """(connection, response, endpoint that answered) of one request, with redirects followed
    as shipping follows them: 307 and 308 only, within the same scheme (never https to http),
    at most MAX_REDIRECTS times, and the credentials (Authorization, VICTORIALOGS_HEADERS) sent
    only to the configured endpoint's own host and port. A redirect not followed is a
    SelectError that says so; no answer is an _Unreachable."""
    from http.client import HTTPException

    hop, path = endpoint, target
    for _ in range(MAX_REDIRECTS + 1):
        headers = headers_for(endpoint, config, credentials=_same_server(hop, endpoint))
        conn = _connection(hop, config, timeout)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
        except (OSError, HTTPException) as exc:
            conn.close()
            raise _Unreachable(_unreachable(exc, hop)) from None
        except ValueError as exc:  # a header value with a line break: every endpoint gets it
            conn.close()
            raise SelectError(f"cannot ask {hop.display}: {_reason(exc)}") from None
        if response.status not in REDIRECTS:
            return conn, response, hop
        location = response.getheader("Location") or ""
        conn.close()
        hop, path = _next_hop(hop, response.status, location)
    raise SelectError(f"{endpoint.display} redirects more than {MAX_REDIRECTS} times: not followed")


def _same_server(a: Endpoint, b: Endpoint) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _redirected(endpoint: Endpoint, hop: Endpoint) -> str:
    """Why an answer from another server came without the credentials being sent to it."""
    if _same_server(hop, endpoint):
        return ""
    return f" (where {endpoint.display} redirects; sent without credentials)"


def _next_hop(origin: Endpoint, status: int, location: str) -> tuple[Endpoint, str]:
    """Where a redirect leads, if it is one shipping would follow; SelectError if not."""
    target = _redirect_target(origin, location) if status in FOLLOWED else None
    if target is None:
        where = repr(location) if location else "nowhere (no Location)"
        raise SelectError(
            f"{origin.display} redirects (HTTP {status}) to {where}: not followed (only 307 and "
            "308 within the same scheme are); set VICTORIALOGS_URL to the new address"
        )
    return target


def error_text(response: Any) -> str:
    """The start of an error answer's body, masked: the whole text read is masked first, then
    cut (a credential cut in its middle would no longer be recognised)."""
    data = response.read(ERROR_READ_BYTES + 1)
    if len(data) > ERROR_READ_BYTES:
        # The read itself cut the body: only whole lines are kept, as a credential (a header
        # value) cannot hold a line break.
        data = data[:ERROR_READ_BYTES].rpartition(b"\n")[0]
    text = _diag.scrub(data.decode("utf-8", "replace").strip())
    return text if len(text) <= ERROR_SHOWN_CHARS else text[:ERROR_SHOWN_CHARS] + " ..."


def _connection(endpoint: Endpoint, config: Config, timeout: float) -> Any:
    import http.client

    if endpoint.scheme != "https":
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    return http.client.HTTPSConnection(
        endpoint.host, endpoint.port, timeout=timeout, context=tls_context(config)
    )


def _unreachable(exc: BaseException, endpoint: Endpoint) -> str:
    trouble = tls_trouble(exc, endpoint)
    if trouble is not None:
        return trouble
    if isinstance(exc, socket.timeout):
        return f"{endpoint.display} did not answer in time (VICTORIALOGS_TIMEOUT_MS)"
    return f"cannot reach {endpoint.display}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
