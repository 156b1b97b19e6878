"""Encoding and delivering entries synchronously, as the sender and one worker do (for tests of
the pieces: the encoder, the client, the transport), and a raw HTTP server to deliver to."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Callable, Optional

from vlhook._config import Config
from vlhook._delivery.client import Client, Health, Outcome
from vlhook._delivery.encode import Encoder, constant_fields
from vlhook._entry import Entry
from vlhook._stats import Stats
from vlhook._sync import Cancel


class Shipper:
    def __init__(self, config: Config, stats: Optional[Stats] = None) -> None:
        self.config = config
        self.stats = stats or Stats()
        self.encoder = Encoder(constant_fields(config), self.stats)
        self.health = Health(len(config.endpoints), stuck_s=config.timeout_ms / 4000)
        self.client = Client(config, self.stats, self.health)
        self.cancel = Cancel()
        self.body = bytearray()
        self.lines = 0

    def add(self, entries: list[Entry]) -> None:
        self.encoder.append(entries, self.body)
        self.lines += len(entries)

    def encode(self, entry: Entry) -> bytes:
        return self.encoder.encode(entry)

    def send(self, timeout: Optional[float] = None) -> Outcome:
        """Deliver what was added; `timeout`: a flush's deadline that far ahead."""
        body, lines = bytes(self.body), self.lines
        self.body, self.lines = bytearray(), 0
        self.cancel.deadline = None if timeout is None else time.monotonic() + timeout
        return self.client.deliver(body, lines, self.cancel)

    def close(self) -> None:
        self.client.close()


class RawServer:
    """Reads whole requests (head and Content-Length body) on any number of connections and
    answers each with `answer(index)`: byte strings sent in turn, a number a pause between
    them. Every request's body is kept, in order, whatever was answered."""

    def __init__(self, answer: Callable[[int], list[Any]]) -> None:
        self.answer = answer
        self.bodies: list[bytes] = []
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client that closed: that connection ends
            self._requests(conn)

    def _requests(self, conn: socket.socket) -> None:
        data = b""
        for _ in range(100):
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(data) < length:
                data += conn.recv(65536)
            self.bodies.append(data[:length])
            data = data[length:]
            for part in self.answer(len(self.bodies) - 1):
                if isinstance(part, bytes):
                    conn.sendall(part)
                else:
                    time.sleep(part)

    def close(self) -> None:
        self.listener.close()
