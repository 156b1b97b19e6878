"""A local AWS Lambda Runtime API, enough to drive the real awslambdaric in tests.

Serves queued events on `GET .../invocation/next`, records responses and errors, and when the
queue is empty drops the /next connection so the runtime exits (status 1, atexit handlers run).
Every event is timestamped (time.monotonic) when served, when its response arrived, and when
the next /next came, so tests can prove: response -> flush -> next.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

PREFIX = "/2018-06-01/runtime"


@dataclass
class Invocation:
    event: Any
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_id: str = ""
    client_context: Optional[dict[str, Any]] = None
    tenant_id: str = ""  # a function in tenant isolation mode: the invocation's tenant
    deadline_ms: int = 0
    served: float = 0.0
    answered: float = 0.0
    response: Optional[bytes] = None
    error: Optional[bytes] = None
    served_pid: int = 0


class RuntimeApi:
    def __init__(self, *, linger: float = 0.0) -> None:
        self.queue: list[Invocation] = []
        self.done: list[Invocation] = []
        self.next_calls: list[float] = []
        self.init_errors: list[bytes] = []
        self.linger = linger  # hold the last /next open this long before ending the runtime
        #: index of an invocation -> called just before it is served (to change the world)
        self.before_serving: dict[int, Any] = {}
        #: SnapStart: called when the runtime asks for /restore/next, after its init phase,
        #: the moment Lambda snapshots the environment; answered when it returns.
        self.at_snapshot: Optional[Any] = None
        self.snapshots = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        port = self._server.server_address[1]
        return f"127.0.0.1:{port}"

    def add(self, event: Any, **kw: Any) -> Invocation:
        invocation = Invocation(event, **kw)
        self.queue.append(invocation)
        return invocation

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Optional[Invocation]:
        with self._lock:
            self.next_calls.append(time.monotonic())
            if not self.queue:
                return None
            hook = self.before_serving.get(len(self.done))
            if hook is not None:
                hook()
            invocation = self.queue.pop(0)
            invocation.served = time.monotonic()
            self.done.append(invocation)
            return invocation

    def _answer(self, request_id: str, kind: str, body: bytes) -> None:
        for invocation in self.done:
            if invocation.request_id == request_id:
                invocation.answered = time.monotonic()
                setattr(invocation, kind, body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle and delayed
                # ACKs add ~40 ms to every exchange and drown what the benchmarks measure.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _reply(self, status: int, body: bytes = b"", headers: Any = ()) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == f"{PREFIX}/restore/next":
                    api.snapshots += 1
                    if api.at_snapshot is not None:
                        api.at_snapshot()
                    self._reply(200)
                    return
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404)
                    return
                invocation = api._next()
                if invocation is None:
                    # Go away like a Runtime API that stopped: the runtime raises "Failed to get
                    # next" and exits with status 1. (An HTTP error here crashes the native
                    # client with SIGSEGV, with or without vlhook.)
                    time.sleep(api.linger)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                deadline = invocation.deadline_ms or int((time.time() + 30) * 1000)
                headers = [
                    ("Lambda-Runtime-Aws-Request-Id", invocation.request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:eu-west-1:123456789012:function:orders"),
                    ("Content-Type", "application/json"),
                ]  # fmt: skip
                if invocation.trace_id:
                    headers.append(("Lambda-Runtime-Trace-Id", invocation.trace_id))
                if invocation.tenant_id:
                    headers.append(("Lambda-Runtime-Aws-Tenant-Id", invocation.tenant_id))
                if invocation.client_context is not None:
                    headers.append(
                        ("Lambda-Runtime-Client-Context", json.dumps(invocation.client_context))
                    )
                self._reply(200, json.dumps(invocation.event).encode(), headers)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    api.init_errors.append(body)
                elif len(parts) == 3 and parts[0] == "invocation":
                    api._answer(parts[1], "response" if parts[2] == "response" else "error", body)
                self._reply(202, b"{}")

        return Handler
