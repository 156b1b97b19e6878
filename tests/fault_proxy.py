"""Fronts for a server that break the client's view of it.

`FaultProxy`: an HTTP front where each request takes the next fault of a plan (then `pass`
forever), and every request is recorded (time, path, headers, body). Faults: pass, reset (RST
after reading the request), delay:S, status:N[:S] (answer N with Retry-After S, store nothing),
close (answer, then close the kept-alive connection as an idle server would), stall (read the
request, never answer), redirect:N:BASE (answer N with Location: BASE + the request's path and
query, store nothing), page (answer 200 with a web page, as a web app on the wrong port does,
store nothing), drip:S (forward, then send the answer one byte every S seconds). With
`max_body` set, a body larger than that many bytes (as sent, compressed) gets 413 whatever the
plan says, as nginx's `client_max_body_size` does.

`CutProxy`: a TCP pass-through that can be cut (every connection dropped, the port refusing)
and restored on the same port: a node that is lost and comes back, as the client sees it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(
        self, upstream: str, plan: list[str], stall_s: float = 30.0, max_body: int = 0
    ) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = list(plan)
        self.stall_s = stall_s
        self.max_body = max_body
        self.log: list[tuple[float, str]] = []  # (time, fault) per request
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def faults(self) -> list[str]:
        return [fault for _, fault in self.log]

    def _next_fault(self, request: Request) -> str:
        with self._lock:
            if self.max_body and len(request.body) > self.max_body:
                fault = "status:413"
            else:
                fault = self.plan.pop(0) if self.plan else "pass"
            self.log.append((request.received, fault))
            self.requests.append(request)
            return fault

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        reader = conn.makefile("rb")
        while not self._stop.is_set():
            request = _read_request(reader)
            if request is None:
                return
            fault = self._next_fault(request)
            if not self._apply(conn, fault, request):
                return

    def _apply(self, conn: socket.socket, fault: str, request: Request) -> bool:
        """Returns whether the connection stays open."""
        kind, _, arg = fault.partition(":")
        if kind == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        if kind == "stall":
            self._stop.wait(self.stall_s)
            return False
        if kind == "status":
            code, _, retry_after = arg.partition(":")
            extra = f"Retry-After: {retry_after}\r\n" if retry_after else ""
            body = b"injected fault"
            conn.sendall(
                f"HTTP/1.1 {code} Fault\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
                + body
            )
            return True
        if kind == "page":
            page = b"<!DOCTYPE html><html><body>Sign in</body></html>"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(page), page))  # fmt: skip
            return True
        if kind == "redirect":
            code, _, base = arg.partition(":")
            conn.sendall(f"HTTP/1.1 {code} Moved\r\nLocation: {base}{request.path}\r\n"
                         "Content-Length: 0\r\n\r\n".encode())  # fmt: skip
            return True
        if kind == "delay":
            time.sleep(float(arg))
        status, body = self._forward(request)
        answer = f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        if kind == "drip":
            return self._drip(conn, answer, float(arg))
        conn.sendall(answer)
        return kind != "close"

    def _drip(self, conn: socket.socket, answer: bytes, delay: float) -> bool:
        for index in range(len(answer)):
            if self._stop.wait(delay):
                return False
            try:
                conn.sendall(answer[index : index + 1])
            except OSError:
                return False
        return True

    def _forward(self, request: Request) -> tuple[int, bytes]:
        upstream = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            upstream.request(request.method, request.path, request.body, request.headers)
            response = upstream.getresponse()
            return response.status, response.read()
        finally:
            upstream.close()


@dataclass
class Request:
    received: float  # time.monotonic()
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines the request carried."""
        body = self.body
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def _read_request(reader: Any) -> Optional[Request]:
    try:
        line = reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            header = reader.readline().decode("latin-1")
            if header in ("\r\n", "\n", ""):
                break
            name, _, value = header.partition(":")
            headers[name.strip()] = value.strip()
        length = int(headers.get("Content-Length", "0"))
        body = reader.read(length) if length else b""
    except (OSError, ValueError):
        return None
    return Request(time.monotonic(), method, path, headers, body)


class CutProxy:
    """Bytes pass both ways between a client and `upstream` ("host:port") until `cut()`."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.connections = 0  # accepted since the start
        self._listener: Optional[socket.socket] = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.port = self._listen(0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return int(listener.getsockname()[1])

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def open_connections(self, settle_s: float = 0.0) -> int:
        """Client connections open now; with `settle_s`, the fewest seen within that time (a
        connection the client just closed ends here when its pump reads the end)."""
        deadline = time.monotonic() + settle_s
        while True:
            with self._lock:
                count = len(self._open) // 2
            if count == 0 or time.monotonic() >= deadline:
                return count
            time.sleep(0.01)

    def cut(self) -> None:
        """Refuse new connections and drop every open one, both ways."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            self._drop(sock)

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._listener is None:
            self._listen(self.port)

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
