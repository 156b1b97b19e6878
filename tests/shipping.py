"""Encoding and delivering entries synchronously, as the sender and one worker do (for tests of
the pieces: the encoder, the client, the transport)."""

from __future__ import annotations

import time
from typing import Optional

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
