"""Counters of what happened to every line: the answer to "where did my logs go?"."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union


class Stats:
    """Plain integer counters. Updated under the GIL without locks: a lost increment is
    possible only when two threads race on the same counter, which the sender avoids by
    owning every counter except `captured`."""

    def __init__(self) -> None:
        self.captured = 0
        self.shipped = 0
        self.batches = 0
        self.bytes_sent = 0
        self.retries = 0
        self.spooled = 0
        self.replayed = 0
        self.split = 0
        self.redacted = 0
        self.folded = 0
        self.in_flight_at_exit = 0
        self.dropped: dict[str, int] = {}
        self.rejected_message = ""

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def as_dict(self) -> dict[str, Union[int, str, dict[str, int]]]:
        return {
            "captured": self.captured,
            "shipped": self.shipped,
            "batches": self.batches,
            "bytes_sent": self.bytes_sent,
            "retries": self.retries,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "split": self.split,
            "redacted": self.redacted,
            "folded": self.folded,
            "in_flight_at_exit": self.in_flight_at_exit,
            "dropped": dict(self.dropped),
            "dropped_total": sum(self.dropped.values()),
            "last_rejection": self.rejected_message,
        }
