"""Batches and their delivery: encode entries to JSON lines, send, retry, fail over, spool.

Every line stays below the server's 256 KiB limit (a longer one would be skipped and would take
the lines after it in the request with it). A batch that cannot be delivered within its retry
budget, or before a flush deadline, goes to the spool; without a spool it is counted as dropped.
"""

from __future__ import annotations

import os
import random
import time

from vlhook import _codec, _diag
from vlhook._config import SERVER_LINE_LIMIT, Config
from vlhook._entry import Entry
from vlhook._spool import Spool
from vlhook._stats import Stats
from vlhook._transport import Result, make_transport

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Any, Callable, Optional

    from vlhook._transport import Transport

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
NODE_DOWN_S = 5.0  # an endpoint that refused a connection is skipped this long
SPOOL_MARGIN_S = 0.05  # time kept before a flush deadline to write the spool
DELIVERED, REJECTED, FAILED = "delivered", "rejected", "failed"


def constant_prefix(config: Config) -> bytes:
    """`{"container_name":...,"job":...,"host":...,"pid":...,` spliced before every entry; the
    entry's own keys come after it, so a program's own field of the same name wins."""
    fields: dict[str, Any] = {
        "container_name": config.container_name,
        "job": config.job,
        "host": os.uname().nodename if hasattr(os, "uname") else "",
        "pid": os.getpid(),
    }
    fields.update(config.fields)
    return _codec.dumps(fields)[:-1] + b","


class Delivery:
    def __init__(self, config: Config, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.transports: list[Transport] = [make_transport(e, config) for e in config.endpoints]
        self.prefix = constant_prefix(config)
        self.spool = Spool(config.spool_dir, config.spool_max_bytes, stats) if config.spool_dir \
            else None  # fmt: skip
        self.batch = bytearray()
        self.pending_lines = 0
        self.in_flight_lines = 0  # lines of the request under way (reported if stuck at exit)
        # A batch is retried for twice the request timeout (10 s by default), then spooled.
        self.retry_budget = max(1.0, 2 * config.timeout_ms / 1000)
        self._spooled_here = False  # this process spooled: replay once the server answers
        self._next = 0
        # Endpoint index -> monotonic time before which it is not tried (it failed to connect).
        self._down_until: dict[int, float] = {}
        self._hurry_deadline: Optional[float] = None
        #: Whether the process is exiting (see send_batch); the sender answers it.
        self.is_exiting: Callable[[], bool] = lambda: False
        self._maybe_stored = False  # the batch under way went out once with no answer

    def hurry(self, deadline: Optional[float]) -> None:
        """A flush is waiting (maybe the process is exiting): stop retrying by its deadline."""
        self._hurry_deadline = deadline

    def add(self, entries: list[Entry], count: bool = True) -> None:
        self.append(entries, self.batch)
        self.pending_lines += len(entries)
        if count:
            self.stats.captured += len(entries)
        if (
            self.pending_lines >= self.config.batch_lines
            or len(self.batch) >= self.config.batch_bytes
        ):
            self.send_batch(deadline=None)

    def append(self, entries: list[Entry], body: bytearray) -> None:
        """Encode the entries as JSON lines at the end of `body`."""
        encode = self.encode
        for entry in entries:
            body += encode(entry)
            body += b"\n"

    def encode(self, entry: Entry) -> bytes:
        """One JSON line for the entry. Never raises: what cannot be encoded is made text."""
        try:
            body = _codec.dumps(entry)
        except Exception:  # too deep, self-referencing, lone surrogates, huge ints...
            try:
                body = _codec.dumps(_plain(entry))
            except Exception:
                message = _clean(_codec.safe_str(entry.get("_msg")))
                body = _codec.dumps({"_msg": message, "vlhook.encode_error": "not encodable"})
        line = self.prefix + body[1:]
        if len(line) >= SERVER_LINE_LIMIT:
            line = self._shrink(entry)
        return line

    def _shrink(self, entry: Entry) -> bytes:
        """Keep the message (already within the line budget) and drop the other big fields."""
        kept: dict[str, Any] = {
            k: entry[k] for k in ("_time", "_msg", "level", "stream", "logger") if k in entry
        }
        kept["vlhook.truncated"] = ",".join(k for k in entry if k not in kept)[:1000]
        self.stats.drop("fields_too_large_truncated")
        return self.prefix + _codec.dumps(kept)[1:]

    def send_batch(self, deadline: Optional[float]) -> bool:
        """Deliver the pending batch; True when delivered (spooled or dropped: False)."""
        if not self.pending_lines:
            return True
        body, lines = bytes(self.batch), self.pending_lines
        self.batch = bytearray()
        self.pending_lines = 0
        if self._spooled_here:
            self.replay_spool(deadline)  # older data first
        outcome = self._deliver(body, lines, deadline)
        if outcome == DELIVERED:
            self.stats.shipped += lines
        elif outcome == FAILED and self._maybe_stored and self.is_exiting():
            # The process is ending and the server got the whole batch but did not answer in
            # time: it may have stored it. Spooling it would send it twice; it is reported as
            # "in a request still under way" instead.
            self.stats.in_flight_at_exit += lines
        elif outcome == FAILED:
            self._keep(body, lines)
        return outcome == DELIVERED

    def _deliver(self, body: bytes, lines: int, deadline: Optional[float]) -> str:
        self.in_flight_lines = lines
        try:
            return self._deliver_with_retries(body, lines, deadline)
        finally:
            self.in_flight_lines = 0

    def _deliver_with_retries(self, body: bytes, lines: int, deadline: Optional[float]) -> str:
        self._maybe_stored = False
        stop = time.monotonic() + self.retry_budget
        backoff = BACKOFF_START_S
        for attempt in range(1000):
            stop = min(stop, deadline or stop, self._hurry_deadline or stop)
            remaining = stop - time.monotonic() - SPOOL_MARGIN_S
            if remaining <= 0 and attempt:
                return FAILED
            result = self._attempt(body, max(remaining, 0.05))
            self._maybe_stored = self._maybe_stored or result.unanswered
            if result.ok:
                self.stats.batches += 1
                self.stats.bytes_sent += len(body)
                return DELIVERED
            if not result.retryable:
                self._reject(result, lines)
                return REJECTED  # retrying cannot help: counted, not spooled
            self.stats.retries += 1
            _diag.debug(f"delivery failed, will retry: {result.message}")
            wait = result.retry_after if result.retry_after is not None else backoff
            wait = min(wait * random.uniform(0.8, 1.2), stop - time.monotonic() - SPOOL_MARGIN_S)  # noqa: S311
            if wait > 0:
                time.sleep(wait)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
        return FAILED

    def _attempt(self, body: bytes, timeout: float) -> Result:
        """One try: batches go round-robin over the endpoints that are up; one that cannot be
        reached is set aside for NODE_DOWN_S and the next takes the batch; once its time is
        up it is tried again (taken back when it answers)."""
        result = Result(False, retryable=True, message="no endpoint")
        for index in self._endpoint_order():
            result = self.transports[index].post(body, timeout)
            if result.ok or result.status:
                self._down_until.pop(index, None)
                return result
            self._down_until[index] = time.monotonic() + NODE_DOWN_S
            _diag.debug(f"{result.message}; trying the next endpoint")
        return result

    def _endpoint_order(self) -> list[int]:
        count = len(self.transports)
        start = self._next % count
        self._next += 1
        order = [(start + i) % count for i in range(count)]
        now = time.monotonic()
        up = [i for i in order if self._down_until.get(i, 0.0) <= now]
        return up + [i for i in order if i not in up]  # all down: try them anyway

    def _reject(self, result: Result, lines: int) -> None:
        self.stats.drop(f"rejected_http_{result.status}", lines)
        self.stats.rejected_message = result.message
        _diag.warn(f"{lines} entries rejected: {result.message}", key=f"reject{result.status}")

    def _keep(self, body: bytes, lines: int) -> None:
        if self.spool is not None and self.spool.put(body, lines):
            _diag.debug(f"{lines} entries spooled to {self.spool.directory}")
            self._spooled_here = True
            return
        self.stats.drop("undeliverable", lines)
        _diag.warn(f"{lines} entries lost: server unreachable and no spool", key="lost")

    def replay_spool(self, deadline: Optional[float] = None) -> None:
        """Send what earlier processes (or this one) spooled, oldest first. Stops at the first
        failure: the files stay for later."""
        if self.spool is None:
            return
        self._spooled_here = False
        for _ in range(10_000):
            claimed = self.spool.claim()
            if claimed is None:
                return
            path, body = claimed
            lines = body.count(b"\n")
            outcome = self._deliver(body, lines, deadline)
            self.spool.release(path, delivered=outcome != FAILED)
            if outcome == FAILED:
                self._spooled_here = True
                return
            self.stats.replayed += lines

    def close(self) -> None:
        for transport in self.transports:
            transport.close()


def _plain(entry: Entry) -> dict[str, Any]:
    """Fallback when a value cannot be encoded: strings without lone surrogates, integers
    that fit in 64 bits, and everything else (containers included) as text."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, bool) or value is None or isinstance(value, float):
            plain: Any = value
        elif isinstance(value, int):
            plain = value if -(2**63) <= value < 2**64 else str(value)
        else:
            plain = _clean(value if isinstance(value, str) else _codec.safe_str(value))
        out[_clean(str(key))] = plain
    return out


def _clean(text: str) -> str:
    """Text as valid UTF-8: bytes a surrogateescape stream smuggled in become U+FFFD, as the
    server would show them; any other lone surrogate too."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")
