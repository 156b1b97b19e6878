"""Delivery workers: one thread per endpoint (at most MAX_WORKERS), each with its own client and
connections, delivering one batch at a time. The sender thread never waits on the network: a
request that hangs holds up one worker, and the sender goes on batching, sending to the other
endpoints, flushing and spooling.
"""

from __future__ import annotations

from vlhook import _diag, _imports
from vlhook._delivery.client import Client, Health, Outcome
from vlhook._sync import Cancel, Wakeup, start_thread

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Callable, Optional

    from vlhook._config import Config
    from vlhook._delivery.batch import Batch
    from vlhook._stats import Stats

    Done = Callable[["Worker", "Batch", Outcome], None]

MAX_WORKERS = 4


class Worker:
    __slots__ = ("_inbox", "_started", "batch", "cancel", "client", "done")

    def __init__(self, client: Client, done: Done) -> None:
        self.client = client
        self.done = done
        self.cancel = Cancel()
        #: The batch being delivered; set and cleared by the sender thread only.
        self.batch: Optional[Batch] = None
        self._inbox = Wakeup()
        self._started = False

    def submit(self, batch: Batch) -> None:
        """Hand a batch over (RuntimeError when no thread can be started: at interpreter
        shutdown, Python 3.12 refuses new threads; the sender then delivers it itself)."""
        self.batch = batch
        self.client.expect()
        if not self._started:
            start_thread(self._run)
            self._started = True
        self._inbox.set()

    def abort(self) -> None:
        """At the exit deadline: end the request or the wait under way now."""
        self.client.abort()
        self.cancel.poke()

    def _run(self) -> None:
        _imports.own_thread()
        while True:
            self._inbox.wait(None)
            batch = self.batch
            if batch is None:
                continue
            try:
                outcome = self.client.deliver(bytes(batch.body), batch.lines, self.cancel)
            except Exception as exc:  # a bug here must not lose the batch: it is kept
                _diag.internal_error("delivery", exc)
                outcome = Outcome()
                outcome.kept.append((bytes(batch.body), batch.lines))
                outcome.reason = f"internal error: {exc}"
            self.done(self, batch, outcome)


def make_workers(config: Config, stats: Stats, done: Done) -> list[Worker]:
    count = max(1, min(MAX_WORKERS, len(config.endpoints)))
    # An endpoint whose request has gone unanswered for a quarter of the request timeout is
    # treated as stuck: new batches go to the others (see docs/reliability.md).
    health = Health(len(config.endpoints), stuck_s=config.timeout_ms / 4000)
    return [Worker(Client(config, stats, health), done) for _ in range(count)]
