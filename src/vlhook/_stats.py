"""Counters of what happened to every entry: the answer to "where did my logs go?".

Every entry the process captured is, at any moment, pending (in memory), delivered (`shipped`),
kept in the spool (`spooled`), dropped with a reason, or in a request still under way at exit
(`in_flight`): captured = shipped + spooled + dropped + in_flight + pending. Other counters
(`replayed`, `spool_evicted`, ...) describe the spool, which may hold earlier processes' data.
Counters are updated from several threads (the sender, its delivery workers, writers shedding
under a full buffer), so every update takes one lock; updates are per batch or rare, never per
write on the program's fast path.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

COUNTERS = (
    "captured", "shipped", "spooled", "in_flight", "batches", "bytes_sent", "retries",
    "replayed", "replay_rejected", "spool_evicted", "split", "truncated", "redacted", "folded",
    "batches_split", "reports", "room_waits", "room_wait_ms",
)  # fmt: skip


class Stats:
    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._dropped: dict[str, int] = {}
        self.last_rejection = ""

    def after_fork(self) -> None:
        """In a forked child: a process of its own, counted from nothing (what the parent
        captured, shipped and dropped is the parent's, and so are its reports of it), under a
        lock no thread of the parent can be holding."""
        self._lock = _thread.allocate_lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._dropped = {}
        self.last_rejection = ""

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

    def drop(self, reason: str, count: int = 1, captured: bool = False) -> None:
        """Entries lost for `reason`; `captured`: they were never counted as captured (lines
        shed before they became entries)."""
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + count
            if captured:
                self._counts["captured"] += count

    def __getattr__(self, name: str) -> int:
        counts = self.__dict__.get("_counts")
        if counts is None or name not in counts:
            raise AttributeError(name)
        return int(counts[name])

    @property
    def dropped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dropped)

    @property
    def dropped_total(self) -> int:
        with self._lock:
            return sum(self._dropped.values())

    def as_dict(self) -> dict[str, Union[int, str, dict[str, int]]]:
        with self._lock:
            out: dict[str, Union[int, str, dict[str, int]]] = dict(self._counts)
            out["dropped"] = dict(self._dropped)
            out["dropped_total"] = sum(self._dropped.values())
        out["last_rejection"] = self.last_rejection
        return out


def explain_drop(reason: str) -> str:
    return {
        "spool_off": "the spool is off (VICTORIALOGS_SPOOL_DIR=off)",
        "spool_unwritable": "the spool cannot be written",
        "spool_refused": "the spool directory is not safe to use (see the warning about it)",
        "spool_no_space": "the disk of the spool is full",
        "spool_full": "the spool is full (VICTORIALOGS_SPOOL_MAX_BYTES)",
        "sender_failed": "vlhook could not start its sender (the internal error above says why)",
    }.get(reason, reason)
