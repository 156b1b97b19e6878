"""A fault-injecting HTTP front for the receiver: each request takes the next fault of a plan
(then `pass` forever). Faults: pass, reset (RST after part of the body), delay:S, status:N[:S]
(answer N with Retry-After S, store nothing), close (answer, then close the kept-alive
connection as an idle server would), stall (read the request, never answer)."""

from __future__ import annotations

import http.client
import socket
import socketserver
import struct
import threading
import time
from typing import Any, Optional
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream: str, plan: list[str], stall_s: float = 30.0) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = list(plan)
        self.stall_s = stall_s
        self.log: list[tuple[float, str]] = []  # (time, fault) per request
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

    def _next_fault(self) -> str:
        with self._lock:
            fault = self.plan.pop(0) if self.plan else "pass"
            self.log.append((time.monotonic(), fault))
            return fault

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(60)
        reader = conn.makefile("rb")
        while not self._stop.is_set():
            request = _read_request(reader)
            if request is None:
                return
            fault = self._next_fault()
            if not self._apply(conn, fault, request):
                return

    def _apply(self, conn: socket.socket, fault: str, request: dict[str, Any]) -> bool:
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
        if kind == "delay":
            time.sleep(float(arg))
        status, body = self._forward(request)
        conn.sendall(f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        return kind != "close"

    def _forward(self, request: dict[str, Any]) -> tuple[int, bytes]:
        upstream = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30
        )
        try:
            upstream.request(request["method"], request["path"], request["body"],
                             request["headers"])  # fmt: skip
            response = upstream.getresponse()
            return response.status, response.read()
        finally:
            upstream.close()


def _read_request(reader: Any) -> Optional[dict[str, Any]]:
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
    return {"method": method, "path": path, "headers": headers, "body": body}
