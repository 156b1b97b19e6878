"""Delivery of one encoded batch to one endpoint. Never raises: returns a Result.

HTTP uses the standard library's http.client (one keep-alive connection per endpoint,
reopened when the server closed it) because the preferred HTTP client costs 115-185 ms to
import, paid by every short-lived process; see docs/design.md. `file://` appends the same
JSON lines to a local file.
"""

from __future__ import annotations

import base64
import os
import socket
import zlib
from dataclasses import dataclass
from urllib.parse import quote

from vlhook._config import Config, Endpoint

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Optional, Union

    Transport = Union["HttpTransport", "FileTransport"]

USER_AGENT = "vlhook/0.1"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Result:
    ok: bool
    status: int = 0  # HTTP status, 0 when no answer was received
    retryable: bool = False
    message: str = ""
    retry_after: Optional[float] = None
    #: The request went out whole and the answer did not come in time: the server may have
    #: stored the batch. Sending it again may store it twice.
    unanswered: bool = False


def gzip_body(data: Union[bytes, bytearray]) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: ~5x smaller, cheapest CPU
    return compressor.compress(data) + compressor.flush()


def insert_path(endpoint: Endpoint, config: Config) -> str:
    path = f"{endpoint.base_path}/insert/jsonline"
    if config.stream_fields:
        path += "?_stream_fields=" + quote(",".join(config.stream_fields), safe=",")
    return path


def request_headers(endpoint: Endpoint, config: Config) -> dict[str, str]:
    headers = {
        # Never the form type: the server would answer 200 and store nothing.
        "Content-Type": "application/stream+json",
        "User-Agent": USER_AGENT,
    }
    if config.compression == "gzip":
        headers["Content-Encoding"] = "gzip"
    if config.account_id:
        headers["AccountID"] = config.account_id
    if config.project_id:
        headers["ProjectID"] = config.project_id
    if config.bearer_token:
        headers["Authorization"] = f"Bearer {config.bearer_token}"
    elif endpoint.username or endpoint.password:
        token = base64.b64encode(f"{endpoint.username}:{endpoint.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    headers.update(config.headers)
    return headers


class _Unanswered(Exception):
    """The request was sent; waiting for the answer timed out."""


class HttpTransport:
    def __init__(self, endpoint: Endpoint, config: Config) -> None:
        self.endpoint = endpoint
        self.path = insert_path(endpoint, config)
        self.headers = request_headers(endpoint, config)
        self.gzip = config.compression == "gzip"
        self.timeout = config.timeout_ms / 1000
        self.tls_verify = config.tls_verify
        self.ca_bundle = config.ca_bundle
        self._conn: Any = None

    def _connect(self) -> Any:
        import http.client

        if self.endpoint.scheme == "https":
            import ssl

            context = ssl.create_default_context(cafile=self.ca_bundle or None)
            if not self.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(
                self.endpoint.host, self.endpoint.port, timeout=self.timeout, context=context
            )
        return http.client.HTTPConnection(
            self.endpoint.host, self.endpoint.port, timeout=self.timeout
        )

    def post(self, lines: Union[bytes, bytearray], timeout: Optional[float] = None) -> Result:
        body = gzip_body(lines) if self.gzip else bytes(lines)
        # A kept-alive connection the server closed while idle fails on first use: one more
        # attempt on a fresh connection is part of sending, not a retry.
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                return self._post_once(body, timeout)
            except _Unanswered as exc:
                self.close()
                message = _describe(exc.__cause__ or exc, self.endpoint)
                return Result(False, retryable=True, message=message, unanswered=True)
            except Exception as exc:
                self.close()
                if attempt == 1 and reused:
                    continue
                return Result(False, retryable=True, message=_describe(exc, self.endpoint))
        return Result(False, retryable=True, message="unreachable")

    def _post_once(self, body: bytes, timeout: Optional[float]) -> Result:
        if self._conn is None:
            self._conn = self._connect()
        self._conn.timeout = min(self.timeout, timeout) if timeout else self.timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(self._conn.timeout)
        self._conn.request("POST", self.path, body=body, headers=self.headers)
        try:
            response = self._conn.getresponse()
        except (TimeoutError, socket.timeout) as exc:  # one class since 3.10
            raise _Unanswered from exc
        text = response.read(4096).decode("utf-8", "replace").strip()
        if response.will_close:
            self.close()
        status = response.status
        if 200 <= status < 300:
            return Result(True, status)
        return Result(
            False,
            status,
            retryable=status in RETRYABLE_STATUS,
            message=f"HTTP {status} from {self.endpoint.display}: {text[:500]}",
            retry_after=_retry_after(response.getheader("Retry-After")),
        )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken socket: nothing to do
                pass


class FileTransport:
    """Appends JSON lines to a local file, created owner-only."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.path = endpoint.file_path

    def post(self, lines: Union[bytes, bytearray], timeout: Optional[float] = None) -> Result:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(lines)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            return Result(False, retryable=True, message=f"cannot write {self.path}: {exc}")
        return Result(True)

    def close(self) -> None:
        pass


def make_transport(endpoint: Endpoint, config: Config) -> Transport:
    if endpoint.scheme == "file":
        return FileTransport(endpoint)
    return HttpTransport(endpoint, config)


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _describe(exc: BaseException, endpoint: Endpoint) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {endpoint.display} not trusted ({exc.verify_message}); set "
            "VICTORIALOGS_CA_BUNDLE to its CA, or VICTORIALOGS_TLS_VERIFY=0 to skip checking"
        )
    reason = str(exc) or type(exc).__name__
    return f"cannot reach {endpoint.display}: {type(exc).__name__}: {reason}"
