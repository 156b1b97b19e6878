"""Reading from VictoriaLogs' `/select/logsql/*` with shipping's settings: the same URLs (the
first that answers), credentials, extra headers, tenancy and TLS. Errors are plain sentences,
never with credentials (endpoints are shown by `Endpoint.display`)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import urlencode

from vlhook._config import Config, Endpoint, load
from vlhook._delivery.transport import request_headers
from vlhook.cli._diagnose import why_inactive

GATEWAY_DOWN = frozenset({502, 503, 504})


class SelectError(Exception):
    """What went wrong, as the user should read it."""


def configured(command: str) -> Optional[Config]:
    """The shipping configuration, or None after saying why there is nothing to read from."""
    config = load()
    for warning in config.warnings:
        print(f"vlhook {command}: warning: {warning}", file=sys.stderr)
    if not config.active:
        print(f"vlhook {command}: {why_inactive(os.environ)}", file=sys.stderr)
        return None
    return config


def headers_for(endpoint: Endpoint, config: Config) -> dict[str, str]:
    headers = request_headers(endpoint, config)
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
        raise SelectError("VICTORIALOGS_URL names only files (file://): there is no server to ask")
    failures = []
    for endpoint in endpoints:
        try:
            return _request(endpoint, config, path, params, follow)
        except _Unreachable as exc:
            failures.append(str(exc))
    raise SelectError("; ".join(failures))


class _Unreachable(Exception):
    pass


def _request(
    endpoint: Endpoint, config: Config, path: str, params: dict[str, str], follow: bool
) -> Answer:
    from http.client import HTTPException

    conn = _connection(endpoint, config)
    try:
        conn.request("POST", endpoint.base_path + path, urlencode(params).encode(),
                     headers_for(endpoint, config))  # fmt: skip
        response = conn.getresponse()
    except (OSError, HTTPException) as exc:
        conn.close()
        raise _Unreachable(_unreachable(exc, endpoint)) from None
    if response.status != 200:
        text = response.read(4096).decode("utf-8", "replace").strip()
        conn.close()
        message = f"HTTP {response.status} from {endpoint.display}: {text}"
        # A proxy's "nothing behind me" is no answer: the next URL may have one.
        raise (_Unreachable if response.status in GATEWAY_DOWN else SelectError)(message)
    if follow and conn.sock is not None:
        conn.sock.settimeout(None)  # a quiet stream is not a dead one
    return Answer(endpoint, conn, response)


def _connection(endpoint: Endpoint, config: Config) -> Any:
    import http.client

    timeout = config.timeout_ms / 1000
    if endpoint.scheme != "https":
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    import ssl

    context = ssl.create_default_context(cafile=config.ca_bundle or None)
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(
        endpoint.host, endpoint.port, timeout=timeout, context=context
    )


def _unreachable(exc: BaseException, endpoint: Endpoint) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {endpoint.display} not trusted ({exc.verify_message}); set "
            "VICTORIALOGS_CA_BUNDLE to its CA, or VICTORIALOGS_TLS_VERIFY=0 to skip checking"
        )
    if isinstance(exc, socket.timeout):
        return f"{endpoint.display} did not answer in time (VICTORIALOGS_TIMEOUT_MS)"
    return f"cannot reach {endpoint.display}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
