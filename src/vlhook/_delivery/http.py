"""A minimal HTTP/1.1 client: one request at a time on one keep-alive connection, bounded by
one deadline for the whole request (connect, TLS handshake, send, status, headers, body).

Why not http.client: its import costs ~30 ms (it pulls in the email package), paid by every
short-lived process at its first delivery, and its timeout bounds each socket operation, not
the request: a server answering byte by byte holds it for as long as it likes. Plain HTTP uses
the C `_socket` module; `ssl` (and `socket`, which it needs) are imported for https only.
"""

from __future__ import annotations

import _socket
import errno
import os
import stat
from time import monotonic

from vlhook._delivery.private import NO_IDENTITY, close_duplicate, identity, moved_up, release
from vlhook._sync import LAST_STANDARD_FD, close_nonblocking

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Callable, Optional

MAX_HEAD = 64 << 10  # status line and headers
MAX_BODY = 64 << 10  # an answer body is kept up to this (error texts); the rest is skipped
RECV = 65536
#: A socket timeout (before Python 3.10 `socket.timeout` was not a TimeoutError).
TIMEOUTS = (TimeoutError, _socket.timeout)
#: Sockets are made non-blocking by the call that makes them (where the system can): the
#: mark by which a close tells one from a file of the program's that took its number (see
#: _sync.close_nonblocking). Elsewhere the timeout set at once makes them so.
_MARK = getattr(_socket, "SOCK_NONBLOCK", 0)


class HttpError(Exception):
    """The request failed without an answer. `sent`: bytes of the request that left (a
    request whose body began to leave may have been stored, whole or in part)."""

    def __init__(
        self, message: str, sent_body: bool, timeout: bool = False, answered: bool = False
    ) -> None:
        super().__init__(message)
        self.sent_body = sent_body
        self.timeout = timeout
        self.answered = answered  # part of an answer came: the server did read the request


class Withdrawn(HttpError):
    """The request was withdrawn before any byte of it was sent (see `may_send`)."""

    def __init__(self) -> None:
        super().__init__("withdrawn before any byte of it was sent", sent_body=False)


class Response:
    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # names lower-cased; a repeated header keeps its last value
        self.body = body


class Connection:
    """One connection to host:port (TLS when `tls` is an ssl.SSLContext), opened on demand,
    reopened after the server closed it. Used by one thread; `abort()` from any thread."""

    def __init__(self, host: str, port: int, tls: Any = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.host_header = (f"[{host}]" if ":" in host else host) + f":{port}"
        self._sock: Any = None
        self._identity = NO_IDENTITY  # of the socket's descriptor: see _owned
        #: The program closed a socket of this connection's: it closes descriptors it did not
        #: open, and the next sockets are moved up where its next files do not go (_socket).
        self._closes_ours = False
        self._pending = b""  # bytes read past a 1xx answer: the start of the next
        self._aborted = False
        self._may_send: Optional[Callable[[], bool]] = None  # of the request under way

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
        may_send: Optional[Callable[[], bool]] = None,
    ) -> Response:
        """Send one request and read its answer, all before `deadline` (monotonic).
        `may_send` is asked once the connection is open, right before the first byte goes:
        False withdraws the request (Withdrawn), with nothing of it sent."""
        self._aborted = False
        self._may_send = may_send
        if self._sock is not None and (not self._owned(self._sock) or self._stale()):
            self.close()
        if self._sock is None:
            self._sock = self._connect(deadline)
            return self._exchange(method, target, headers, body, deadline)
        try:
            return self._exchange(method, target, headers, body, deadline)
        except HttpError as exc:
            if exc.timeout or exc.answered or self._aborted:
                raise
            first = exc
        # A kept-alive connection the server closed while it was idle fails on first use:
        # sending again on a new one is part of sending (the server never read it).
        try:
            self._sock = self._connect(deadline)
            return self._exchange(method, target, headers, body, deadline)
        except HttpError as exc:
            exc.sent_body = exc.sent_body or first.sent_body  # unsure: as if it had been read
            raise

    def _exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes, deadline: float
    ) -> Response:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}",
                f"Content-Length: {len(body)}"]  # fmt: skip
        head.extend(f"{name}: {value}" for name, value in headers.items())
        data = _head_bytes(head)
        may_send = self._may_send
        if may_send is not None and not may_send():
            raise Withdrawn()
        try:
            self._send_all(data, body, deadline)
            response, keep = self._read_response(deadline)
        except HttpError:
            self.close()
            raise
        if not keep:
            self.close()
        return response

    def _stale(self) -> bool:
        """Whether the idle kept-alive connection has something to read before a request is
        sent on it: the server closed it, or sent bytes no request asked for. An answer read
        on it could not be told from those bytes (a request then stored but taken for
        unanswered is stored twice): a new connection is opened instead. Plain TCP only: TLS
        records cannot be peeked at; an answer that does not parse still counts as one."""
        if self.tls is not None:
            return False
        try:
            self._sock.settimeout(0.0)
            self._sock.recv(1, _socket.MSG_PEEK)
        except BlockingIOError:
            return False  # nothing to read: idle, as it should be
        except OSError:
            pass  # reset: closed
        return True

    def abort(self) -> None:
        """Make a request under way on another thread fail at once (at exit)."""
        sock = self._sock
        if sock is not None and self._owned(sock):
            self._aborted = True
            try:
                sock.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._pending = b""
        if sock is not None:
            self._let_go(sock)

    def _let_go(self, sock: Any) -> None:
        try:
            if not self._owned(sock):  # detached: its number is left to the program
                sock.detach()
                self._closes_ours = True
            elif os.name == "posix":
                close_nonblocking(sock.detach())  # the look above may be stale by now
            else:  # a socket is not a descriptor there (see close_nonblocking)
                sock.close()
        except OSError:
            pass

    def _owned(self, sock: Any) -> bool:
        """Whether the socket's descriptor is still the one opened here. A program that closes
        every descriptor it does not know of (a daemon's `os.closerange(3, ...)`) and opens a
        file may get that very number: closing it, or sending on it, would close or write into
        the program's file. Such a socket is let go without closing its number, and a new one
        is opened. Checked before each call on the socket (_checked) and each close: the
        program could still close and reuse the number between the check and the use (the
        checking thread may wait for the interpreter lock between the two calls); once it has
        closed one, the next sockets are moved where its next files do not go (_socket). A
        close looks once more, where nothing can come between (see _let_go)."""
        return identity(sock.fileno()) == self._identity

    def _checked(self, deadline: float, sent_body: bool, answered: bool = False) -> Any:
        """The socket, with what is left of the request as its timeout; checked first to be
        still the one opened here (see _owned). Under the program's number, a socket of the
        program's would carry vlhook's bytes or lose its own to vlhook, and settimeout would
        make the program's descriptor non-blocking."""
        sock = self._sock
        if not self._owned(sock):
            raise HttpError("the connection was closed by the program", sent_body=sent_body,
                            answered=answered)  # fmt: skip
        sock.settimeout(_remaining(deadline, sent_body=sent_body))
        return sock

    # -- connecting ---------------------------------------------------------------------------

    def _connect(self, deadline: float) -> Any:
        try:
            infos = _socket.getaddrinfo(_host_bytes(self.host), self.port, 0, _socket.SOCK_STREAM)
        except OSError as exc:
            raise HttpError(f"cannot resolve {self.host}: {exc}", sent_body=False) from exc
        error: Optional[BaseException] = None
        for family, kind, proto, _, address in infos:
            try:
                sock = self._socket(family, kind, proto)
            except OSError as exc:
                error = exc
                continue
            try:
                sock.settimeout(_remaining(deadline, sent_body=False))
                sock.connect(address)
                if not self._owned(sock):
                    raise OSError(errno.EBADF, "closed by the program while it connected")
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                return self._wrap(sock, deadline) if self.tls is not None else sock
            except HttpError:
                self._let_go(sock)
                raise
            except OSError as exc:
                self._let_go(sock)
                error = exc
        raise HttpError(_describe(error, "cannot connect"), sent_body=False,
                        timeout=isinstance(error, TIMEOUTS)) from error  # fmt: skip

    def _socket(self, family: int, kind: int, proto: int) -> Any:
        """A new socket, its identity recorded before any use (see _owned). Raises OSError:
        none left, or its number taken by the program before vlhook looked at it (EBADF:
        the program's file is left to it)."""
        if self.tls is None:
            make: Any = _socket.socket
        else:
            import socket  # needed by ssl anyway: https only

            make = socket.socket
        sock = make(family, kind | _MARK, proto)
        mine = _socket_identity(sock.fileno())
        if mine == NO_IDENTITY:  # a file of the program's took the number: left to it
            sock.detach()
            self._closes_ours = True
            raise OSError(errno.EBADF, "closed by the program before vlhook used it")
        # Moved up too when it took the number of a standard stream the program closed (a
        # daemon's, `>&-`): the program's writes to that stream went into the connection.
        if self._closes_ours or sock.fileno() <= LAST_STANDARD_FD:
            sock = make(family, kind, proto, self._moved_up(sock.detach(), mine))
        self._identity = mine
        return sock

    @staticmethod
    def _moved_up(low: int, mine: tuple[int, int]) -> int:
        """The socket `mine` under `low`, moved up as the spool's files are (private.HIGH_FD),
        once the program was seen to close a socket of ours: moving costs every process
        fcntl's import (~0.2 ms) at its first delivery, so a program that never does pays
        nothing. The low number is let go once the moved one is seen to be that socket
        (private.release)."""
        fd = moved_up(low)
        if fd == low:
            return fd
        if identity(fd) != mine:  # the program took the number before it was moved
            close_duplicate(fd)
            raise OSError(errno.EBADF, "closed by the program before vlhook used it")
        release(low, fd)
        return fd

    def _wrap(self, sock: Any, deadline: float) -> Any:
        sock.settimeout(_remaining(deadline, sent_body=False))
        return self.tls.wrap_socket(sock, server_hostname=self.host)

    # -- sending ------------------------------------------------------------------------------

    def _send_all(self, head: bytes, body: bytes, deadline: float) -> None:
        view = memoryview(head + body)
        sent = 0
        while sent < len(view):
            sock = self._checked(deadline, sent_body=sent > len(head))
            try:
                sent += sock.send(view[sent:])
            except OSError as exc:
                raise HttpError(_describe(exc, "sending failed"), sent_body=sent > len(head),
                                timeout=isinstance(exc, TIMEOUTS)) from exc  # fmt: skip

    # -- reading ------------------------------------------------------------------------------

    def _recv(self, deadline: float, answered: bool = True) -> bytes:
        """Bytes of the answer; `answered`: some of it came already."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        sock = self._checked(deadline, sent_body=True, answered=answered)
        try:
            data = bytes(sock.recv(RECV))
        except OSError as exc:
            raise HttpError(_describe(exc, "no answer"), sent_body=True, answered=answered,
                            timeout=isinstance(exc, TIMEOUTS)) from exc  # fmt: skip
        if not data:
            raise HttpError("connection closed before the answer ended", sent_body=True,
                            answered=answered)  # fmt: skip
        return data

    def _read_response(self, deadline: float) -> tuple[Response, bool]:
        informed = False  # a 1xx answer came: the server read the request
        while True:  # 1xx answers (100 Continue) precede the real one
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                if len(buffer) > MAX_HEAD:
                    raise HttpError("answer headers too long", sent_body=True, answered=True)
                buffer += self._recv(deadline, answered=informed or bool(buffer))
            head, _, rest = buffer.partition(b"\r\n\r\n")
            status, reason, version, headers = _parse_head(head)
            if not 100 <= status < 200:
                break
            self._pending, informed = rest, True
        body, complete = self._read_body(status, headers, rest, deadline)
        keep = complete and version != "HTTP/1.0" and headers.get("connection") != "close"
        return Response(status, reason, headers, body), keep

    def _read_body(
        self, status: int, headers: dict[str, str], data: bytes, deadline: float
    ) -> tuple[bytes, bool]:
        """The body (up to MAX_BODY) and whether the connection can carry the next request."""
        if status in (204, 304):
            return b"", not data
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked(data, deadline)
        length_text = headers.get("content-length")
        if length_text is None:  # until the server closes
            return self._read_until_close(data, deadline), False
        try:
            length = int(length_text)
        except ValueError:
            raise HttpError("bad Content-Length in the answer", sent_body=True,
                            answered=True) from None  # fmt: skip
        if length > MAX_BODY:
            return data[:MAX_BODY], False  # not worth reading: the connection is dropped
        while len(data) < length:
            data += self._recv(deadline)
        # Bytes past the answer were asked for by no request: the connection is not reused.
        return data[:length], len(data) == length

    def _read_chunked(self, data: bytes, deadline: float) -> tuple[bytes, bool]:
        body = b""
        while True:
            while b"\r\n" not in data:
                data += self._recv(deadline)
            size_line, _, data = data.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise HttpError("bad chunk in the answer", sent_body=True,
                                answered=True) from None  # fmt: skip
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + data:  # trailers, then the blank line
                    data += self._recv(deadline)
                end = (b"\r\n" + data).index(b"\r\n\r\n") + 2
                return body, end == len(data)  # bytes past it: not reused (see above)
            if len(body) > MAX_BODY:
                return body[:MAX_BODY], False
            while len(data) < size + 2:
                data += self._recv(deadline)
            body += data[:size]
            data = data[size + 2 :]

    def _read_until_close(self, data: bytes, deadline: float) -> bytes:
        while len(data) < MAX_BODY:
            try:
                data += self._recv(deadline)
            except HttpError as exc:
                if exc.timeout:
                    raise
                break  # closed: the end of the body
        return data[:MAX_BODY]


def _head_bytes(lines: list[str]) -> bytes:
    """The request head; a header that would split it (a line break in a value) or that is not
    Latin-1 text is refused, never sent (the value is not repeated: it may be a secret)."""
    for line in lines:
        if "\r" in line or "\n" in line or "\0" in line:
            name = line.partition(":")[0] if ":" in line else "the request line"
            raise HttpError(f"header {name} holds a line break; not sent", sent_body=False)
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise HttpError("a header holds characters HTTP cannot carry (not Latin-1); not sent",
                        sent_body=False) from None  # fmt: skip


def _parse_head(head: bytes) -> tuple[int, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        from vlhook._diag import scrub  # masked before it is cut (see transport.post)

        first = scrub(lines[0])[:80]
        raise HttpError(f"not an HTTP answer: {first!r}", sent_body=True, answered=True)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(code), reason.strip(), version, headers


def _host_bytes(host: str) -> Any:
    """An ASCII host name as bytes: a str one makes getaddrinfo load the IDNA codec (~2 ms)."""
    return host.encode("ascii") if host.isascii() else host


def _socket_identity(fd: int) -> tuple[int, int]:
    """The identity of the socket just made under `fd`, NO_IDENTITY when what `fd` holds is
    not a socket made non-blocking (_MARK): a file of the program's took the number first
    (or a socket of the program's, made so, in that instant)."""
    try:
        info = os.fstat(fd)
        if stat.S_ISSOCK(info.st_mode) and not (_MARK and os.get_blocking(fd)):
            return info.st_dev, info.st_ino
    except OSError:
        pass
    return NO_IDENTITY


def _remaining(deadline: float, sent_body: bool) -> float:
    left = deadline - monotonic()
    if left <= 0:
        raise HttpError("timed out", sent_body=sent_body, timeout=True)
    return left


def _describe(exc: Optional[BaseException], what: str) -> str:
    if exc is None:
        return what
    if isinstance(exc, TIMEOUTS):
        return f"{what}: timed out"
    return f"{what}: {type(exc).__name__}: {exc}"
