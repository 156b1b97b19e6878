"""Counters of what happened to every entry: the answer to "where did my logs go?".

Every entry the process captured is, at any moment, pending (in memory), delivered (`shipped`),
kept in the spool (`spooled`), dropped with a reason, or in a request still under way at exit
(`in_flight`): captured = shipped + spooled + dropped + in_flight + pending. Other counters
(`replayed`, `spool_evicted`, ...) describe the spool, which may hold earlier processes' data.

Counters are updated from several threads (the sender, its delivery workers, writers shedding
under a full buffer). An update takes no lock: it is one append to a queue, which readers fold
into the totals under a lock of theirs. A lock taken by updates would be held, now and then, by
the program's main thread while it sheds a line, and Python runs a signal handler on that
thread between any two of its operations: the exit that SIGTERM leads to (vlhook's handler, or
the program's) counts too, and waited forever for that lock (measured: 1 in 20 floods stopped
with SIGTERM never ended).
"""

from __future__ import annotations

# The C type itself: `collections` costs ~2 ms at start-up.
from _collections import deque  # type: ignore[import-not-found]

from vlhook._sync import RLock

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
        self._start()

    def _start(self) -> None:
        # Reentrant: a signal handler may read the counters while its thread was reading them.
        self._lock = RLock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._dropped: dict[str, int] = {}
        #: Updates not yet in the totals: (counter, count) and (reason, count, captured).
        self._added: deque[tuple[str, int]] = deque()
        self._shed: deque[tuple[str, int, bool]] = deque()
        self.last_rejection = ""

    def after_fork(self) -> None:
        """In a forked child: a process of its own, counted from nothing (what the parent
        captured, shipped and dropped is the parent's, and so are its reports of it), under a
        lock no thread of the parent can be holding."""
        self._start()

    def add(self, name: str, count: int = 1) -> None:
        self._added.append((name, count))

    def drop(self, reason: str, count: int = 1, captured: bool = False) -> None:
        """Entries lost for `reason`; `captured`: they were never counted as captured (lines
        shed before they became entries)."""
        self._shed.append((reason, count, captured))

    def _fold(self) -> None:
        """The updates made since into the totals (under the lock: one reader at a time takes
        each update, and a popped one is counted even if a handler interrupts)."""
        counts, dropped = self._counts, self._dropped
        added, shed = self._added.popleft, self._shed.popleft
        while True:
            try:
                name, count = added()
            except IndexError:
                break
            counts[name] += count
        while True:
            try:
                reason, count, captured = shed()
            except IndexError:
                break
            dropped[reason] = dropped.get(reason, 0) + count
            if captured:
                counts["captured"] += count

    def __getattr__(self, name: str) -> int:
        counts = self.__dict__.get("_counts")
        if counts is None or name not in counts:
            raise AttributeError(name)
        with self._lock:
            self._fold()
            return int(counts[name])

    @property
    def dropped(self) -> dict[str, int]:
        with self._lock:
            self._fold()
            return dict(self._dropped)

    @property
    def dropped_total(self) -> int:
        with self._lock:
            self._fold()
            return sum(self._dropped.values())

    def as_dict(self) -> dict[str, Union[int, str, dict[str, int]]]:
        with self._lock:
            self._fold()
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


class ExitReport:
    """What became, during the exit, of everything not yet delivered when it began."""

    __slots__ = ("delivered", "dropped", "dropped_before", "in_flight", "problem", "spool",
                 "spooled", "untold")  # fmt: skip

    def __init__(self) -> None:
        self.delivered = 0
        self.spooled = 0
        self.in_flight = 0
        self.dropped: dict[str, int] = {}  # during the exit, by reason
        self.dropped_before: dict[str, int] = {}  # earlier in the process's life
        self.problem = ""  # why delivery did not succeed, as last seen
        self.spool = ""  # where kept entries are (or why there is no spool)
        self.untold = 0  # entries dropped earlier that no message has told of yet

    @property
    def complete(self) -> bool:
        return not (self.spooled or self.in_flight or self.dropped)

    def message(self, exit_timeout_ms: int) -> str:
        """One plain line for stderr ("" when everything was delivered and nothing dropped
        earlier went untold)."""
        if self.complete:
            if not self.untold:
                return ""
            tally = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped_before.items()))
            return f"entries were dropped while the program ran ({tally} in all)"
        parts = [f"{self.delivered} delivered"] if self.delivered else []
        if self.spooled:
            parts.append(f"{self.spooled} kept in the spool {self.spool} (sent by the next run)")
        if self.in_flight:
            parts.append(f"{self.in_flight} in a request still under way with no answer "
                         "(the server may or may not store them)")  # fmt: skip
        for reason, count in sorted(self.dropped.items()):
            parts.append(f"{count} dropped: {_why_dropped(reason, exit_timeout_ms)}")
        text = "at exit, of the entries not yet delivered: " + "; ".join(parts)
        if self.problem:
            text += f". Last delivery problem: {self.problem}"
        if self.dropped_before:
            tally = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped_before.items()))
            text += f" (dropped earlier: {tally})"
        return text


def _why_dropped(reason: str, exit_timeout_ms: int) -> str:
    if reason == "exit_timeout":
        return f"no time left within VICTORIALOGS_EXIT_TIMEOUT_MS={exit_timeout_ms}"
    if reason.startswith("rejected_http_"):
        return f"rejected by the server (HTTP {reason[14:]})"
    return explain_drop(reason)
