"""One request to one endpoint, bounded by one deadline. Never raises: returns a Result.

An HTTP(S) endpoint keeps one keep-alive connection (see _http.py); `file://` appends the same
JSON lines to a local file. What to do with a failed request (retry, fail over, split, spool)
is the client's decision (_client.py), not the transport's.
"""

from __future__ import annotations

import os

from vlhook._delivery.http import Connection, HttpError, Response, Withdrawn
from vlhook._delivery.private import open_high
from vlhook._diag import scrub, warn

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Callable, Optional, Union

    from vlhook._config import Config, Endpoint

    Transport = Union["HttpTransport", "FileTransport"]

USER_AGENT = "vlhook/0.1"
#: A smaller body goes uncompressed: with the request's headers it fits one TCP segment either
#: way, and a process that never sends more (a one-line script, most Lambda invocations) never
#: loads zlib (~0.45 ms).
GZIP_MIN_BYTES = 1024
GZIP_MAGIC = b"\x1f\x8b"  # what every gzip body begins with, and no body of JSON lines
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Result:
    __slots__ = ("location", "message", "ok", "retry_after", "retryable", "sent", "status",
                 "timed_out")  # fmt: skip

    def __init__(
        self,
        ok: bool,
        status: int = 0,
        retryable: bool = False,
        message: str = "",
        retry_after: Optional[float] = None,
        sent: bool = False,
        location: str = "",
        timed_out: bool = False,
    ) -> None:
        self.ok = ok
        self.status = status  # HTTP status; 0 when no answer came
        self.retryable = retryable
        self.message = message
        self.retry_after = retry_after  # seconds, from Retry-After
        #: No answer, but the body began to leave: the server may have stored it (in part).
        self.sent = sent
        self.location = location  # of a redirect
        self.timed_out = timed_out  # no answer in time: the endpoint may be hung


def gzip_body(data: Union[bytes, bytearray]) -> bytes:
    import zlib  # at the first body worth compressing

    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: ~5x smaller, cheapest CPU
    return compressor.compress(data) + compressor.flush()


def insert_path(endpoint: Endpoint, config: Config) -> str:
    path = f"{endpoint.base_path}/insert/jsonline"
    if config.stream_fields:
        path += "?_stream_fields=" + _quote(",".join(config.stream_fields))
    return path


def request_headers(endpoint: Endpoint, config: Config, credentials: bool = True) -> dict[str, str]:
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
    if credentials and config.bearer_token:
        headers["Authorization"] = f"Bearer {config.bearer_token}"
    elif credentials and (endpoint.username or endpoint.password):
        from binascii import b2a_base64  # only with a password (~0.2 ms to load)

        pair = f"{endpoint.username}:{endpoint.password}".encode()
        token = b2a_base64(pair, newline=False).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    for name, value in config.headers if credentials else ():
        # Names are not case-sensitive in HTTP: the user's replaces vlhook's of that name.
        for own in [key for key in headers if key.lower() == name.lower()]:
            del headers[own]
        headers[name] = value
    return headers


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~,")


def _quote(text: str) -> str:
    """Percent-encoding for a query value (urllib.parse costs ~10 ms to import); "," kept."""
    if _UNRESERVED.issuperset(text):
        return text
    return "".join(c if c in _UNRESERVED else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
                   for c in text)  # fmt: skip


def tls_context(config: Config) -> Any:
    import ssl

    try:
        context = ssl.create_default_context(cafile=config.ca_bundle or None)
    except (OSError, ssl.SSLError) as exc:  # missing, unreadable, not PEM: still verified
        warn(f"VICTORIALOGS_CA_BUNDLE={config.ca_bundle!r} cannot be used ({exc}); using the "
             "system's trusted certificates", key="ca-bundle")  # fmt: skip
        context = ssl.create_default_context()
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _is_web_page(response: Response) -> bool:
    """VictoriaLogs answers a stored batch with an empty body. A web page in a 2xx answer is
    another server's (a web app on that port, a sign-in page in front), which stored nothing:
    taken for a delivery, every batch would be lost without a word. Other bodies are let be
    (a receiver of the same API may answer with a status in JSON)."""
    kind = response.headers.get("content-type", "")
    return kind.lower().startswith("text/html") or response.body.lstrip()[:1] == b"<"


class HttpTransport:
    def __init__(self, endpoint: Endpoint, config: Config, target: str = "",
                 credentials: bool = True) -> None:  # fmt: skip
        self.endpoint = endpoint
        self.config = config
        self.target = target or insert_path(endpoint, config)
        self.headers = request_headers(endpoint, config, credentials)
        self.plain_headers = {k: v for k, v in self.headers.items() if k != "Content-Encoding"}
        tls = tls_context(config) if endpoint.scheme == "https" else None
        self.connection = Connection(endpoint.host, endpoint.port, tls)
        self.gzip = config.compression == "gzip"

    def wire(self, body: bytes, min_bytes: int = GZIP_MIN_BYTES) -> bytes:
        """The body as this endpoint takes it: compressed unless VICTORIALOGS_COMPRESSION=none
        or smaller than `min_bytes`."""
        return gzip_body(body) if self.gzip and len(body) >= min_bytes else body

    def post(
        self, wire: bytes, deadline: float, may_send: Optional[Callable[[], bool]] = None
    ) -> Result:
        """POST an already encoded (and compressed) body; the answer, or why there is none.
        `may_send`: asked right before the first byte leaves; False withdraws the request."""
        try:
            headers = self.headers if wire[:2] == GZIP_MAGIC else self.plain_headers
            response = self.connection.request("POST", self.target, headers, wire, deadline,
                                               may_send)  # fmt: skip
        except Withdrawn as exc:
            return Result(False, retryable=False, message=str(exc))
        except HttpError as exc:
            return Result(False, retryable=True, sent=exc.sent_body, timed_out=exc.timeout,
                          message=_describe(exc, self.endpoint))  # fmt: skip
        except Exception as exc:  # anything else from the socket layer: still an outcome
            self.connection.close()
            return Result(False, retryable=True, sent=True, message=_describe(exc, self.endpoint))
        status = response.status
        if 200 <= status < 300:
            if _is_web_page(response):  # the only 2xx that is not a delivery (urls_mistake)
                page = f"HTTP {status} from {self.endpoint.display}: a web page"
                return Result(False, status, message=f"{page}, not VictoriaLogs' answer")
            return Result(True, status)
        # Masked before it is cut: a credential the server echoes, cut in its middle, would no
        # longer be found whole by the masking of the message where it is shown.
        text = scrub(response.body.decode("utf-8", "replace").strip())
        return Result(
            False,
            status,
            retryable=status in RETRYABLE_STATUS,
            message=f"HTTP {status} from {self.endpoint.display}: {text[:500]}",
            retry_after=retry_after(response.headers.get("retry-after")),
            location=response.headers.get("location", ""),
        )

    def abort(self) -> None:
        self.connection.abort()

    def close(self) -> None:
        self.connection.close()


class FileTransport:
    """Appends JSON lines to a local file, created owner-only. A write is whole or undone."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.path = endpoint.file_path

    def wire(self, body: bytes, min_bytes: int = GZIP_MIN_BYTES) -> bytes:
        return body

    def post(
        self, wire: bytes, deadline: float, may_send: Optional[Callable[[], bool]] = None
    ) -> Result:
        if may_send is not None and not may_send():
            return Result(False, retryable=False, message=str(Withdrawn()))
        try:
            # Not through a link another user may have put in its place (in /tmp, say); at a
            # number the program's next files do not take (see private.open_high).
            out = open_high(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, None)
        except OSError as exc:
            return Result(False, retryable=True, message=f"cannot write {self.path}: {exc}")
        fd, start = out.fd, -1
        try:
            refusal = _not_ours(fd)
            if refusal:
                warn(f"{self.path} is {refusal}: nothing is written to it (entries are kept in "
                     "the spool)", key=f"file-refused {self.path}")  # fmt: skip
                return Result(False, retryable=False, message=f"{self.path} is {refusal}")
            start = os.lseek(fd, 0, os.SEEK_END)
            written = 0
            view = memoryview(wire)
            while written < len(view):
                written += os.write(fd, view[written:])
        except OSError as exc:
            if start >= 0 and out.held:
                _truncate(fd, start)
            return Result(False, retryable=True, message=f"cannot write {self.path}: {exc}")
        finally:
            out.close()  # not when the program closed it
        return Result(True)

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def _not_ours(fd: int) -> str:
    """Why an opened output file is not to be written ("" when it is): made by another user
    (who would read what is appended), or one more name of a file (a hard link to another's).
    A character device (/dev/null) is fine: no user can make one."""
    import stat

    info = os.fstat(fd)
    if stat.S_ISCHR(info.st_mode):
        return ""
    if info.st_uid != os.geteuid():
        return "another user's file"
    if stat.S_ISREG(info.st_mode) and info.st_nlink != 1:
        return "a file with more than one name (a hard link)"
    return ""


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)  # a partial write would leave half a line
    except OSError:
        pass


def make_transport(endpoint: Endpoint, config: Config) -> Transport:
    if endpoint.scheme == "file":
        return FileTransport(endpoint)
    return HttpTransport(endpoint, config)


def retry_after(value: Optional[str]) -> Optional[float]:
    """Retry-After as seconds (`120`) or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time
        from email.utils import parsedate_to_datetime  # rare: only for a date

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _describe(exc: BaseException, endpoint: Endpoint) -> str:
    return tls_trouble(exc.__cause__, endpoint) or f"cannot deliver to {endpoint.display}: {exc}"


def tls_trouble(error: Optional[BaseException], endpoint: Endpoint) -> Optional[str]:
    """What a TLS failure means and what to set, for delivery and the CLI alike; None for an
    error of another kind."""
    if error is not None and type(error).__name__ == "SSLCertVerificationError":
        return (
            f"TLS certificate of {endpoint.display} not trusted "
            f"({getattr(error, 'verify_message', error)}); set VICTORIALOGS_CA_BUNDLE to its CA, "
            "or VICTORIALOGS_TLS_VERIFY=0 to skip checking"
        )
    if getattr(error, "reason", None) in _NOT_TLS:
        return (
            f"{endpoint.display} does not speak TLS (its answer to the handshake: {error}); if "
            "it takes plain HTTP, write http:// in VICTORIALOGS_URL"
        )
    return None


#: OpenSSL's reasons for an answer that is no TLS (a server of plain HTTP): 3.0 and earlier,
#: then 3.2 and later.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE")
