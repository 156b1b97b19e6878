"""Batches: encoded JSON lines gathered until VICTORIALOGS_BATCH_LINES or _BATCH_BYTES is
reached, or the oldest line has waited VICTORIALOGS_FLUSH_INTERVAL_MS.

A batch is the unit that is delivered, spooled or dropped; `seq` orders batches so a flush
knows when everything before it has been settled. The body grows with `+=` on a bytearray
(joining a list of lines held 30x the memory while a batch was built).
"""

from __future__ import annotations

import itertools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

    from vlhook._delivery.spool import Piece


class Batch:
    __slots__ = ("body", "lines", "origin", "report", "seq", "started")

    def __init__(self, seq: int, started: float, report: bool = False) -> None:
        self.seq = seq
        self.body = bytearray()
        self.lines = 0
        self.started = started  # monotonic time of its first line
        #: vlhook's own report of dropped entries, not the program's: counted apart.
        self.report = report
        #: Where in the spool it was read from (a replayed batch), else None.
        self.origin: Optional[Piece] = None


class Batcher:
    """Owns the batch being filled (sender thread only)."""

    def __init__(self, max_lines: int, max_bytes: int, max_age_s: float) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._seq = itertools.count(1)
        self.last_seq = 0  # the newest batch's
        self.open: Optional[Batch] = None

    def next_seq(self) -> int:
        self.last_seq = next(self._seq)
        return self.last_seq

    def body(self, now: float) -> Batch:
        """The open batch (a new one when none is open)."""
        batch = self.open
        if batch is None:
            batch = self.open = Batch(self.next_seq(), now)
        return batch

    def full(self) -> bool:
        batch = self.open
        return batch is not None and (
            batch.lines >= self.max_lines or len(batch.body) >= self.max_bytes
        )

    def due(self, now: float) -> Optional[float]:
        """When the open batch must be closed (monotonic), or None when none is open."""
        return None if self.open is None else self.open.started + self.max_age_s

    def close(self) -> Optional[Batch]:
        batch, self.open = self.open, None
        return batch if batch is not None and batch.lines else None
