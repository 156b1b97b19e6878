"""The client: delivers one batch and says what became of every line of it.

`Client.deliver(body, lines, cancel) -> Outcome` runs on a delivery worker thread (one client
per worker, each with its own connections) and owns everything between "send this" and "it is
stored": failover over several endpoints, retries with jittered exponential backoff and
Retry-After, hedging (new batches avoid an endpoint whose request is stuck), splitting a batch
the server finds too large (413), and redirects. It never raises and never spools: lines it
could not deliver come back in the Outcome as `kept` (safe to send again: the sender spools
them), `rejected` (the server refused them: dropped, with its reason) or `maybe` (they left
in a request that got no answer before the deadline: the server may have stored them).
"""

from __future__ import annotations

from time import monotonic

from vlhook import _diag
from vlhook._delivery.transport import HttpTransport, Result, make_transport
from vlhook._sync import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~12 ms to import: never at run time
    from typing import Optional

    from vlhook._config import Config, Endpoint
    from vlhook._delivery.transport import Transport
    from vlhook._stats import Stats
    from vlhook._sync import Cancel

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0
NODE_DOWN_S = 5.0  # an endpoint that could not be reached is avoided this long
MAX_REDIRECTS = 3


def _jitter() -> float:
    """0 to 1, to spread retries in time (not cryptography). The C generator itself
    (`random` costs ~5 ms to import), loaded at the first retry: most processes never retry."""
    global _jitter
    from _random import Random

    _jitter = Random().random
    return _jitter()


OK, TOO_LARGE, REJECTED, KEEP, MAYBE = range(5)


class Outcome:
    """What became of the lines of one batch."""

    __slots__ = ("delivered", "kept", "maybe", "reason", "rejected")

    def __init__(self) -> None:
        self.delivered = 0
        self.kept: list[tuple[bytes, int]] = []  # (JSON lines, count): not stored, send again
        self.maybe = 0
        self.rejected: dict[str, int] = {}  # drop reason -> lines
        self.reason = ""  # why lines were kept, or the last rejection's message

    @property
    def kept_lines(self) -> int:
        return sum(count for _, count in self.kept)


class Health:
    """Shared by the workers' clients: endpoints that failed to connect lately, requests under
    way (an endpoint whose request has gone unanswered for `stuck_s` gets no new batch while
    another can take it), the body size a 413 taught, round-robin position."""

    def __init__(self, endpoints: int, stuck_s: float) -> None:
        self._lock = allocate_lock()
        self.stuck_s = stuck_s
        self.down_until = [0.0] * endpoints  # could not be reached: tried last
        self.hung_until = [0.0] * endpoints  # gave no answer in time: not tried by a flush
        self.under_way: list[list[float]] = [[] for _ in range(endpoints)]
        self.max_body = 0  # uncompressed bytes a request may carry (0: no limit seen)
        self.latency = 0.05  # seconds a request takes, smoothed (answered ones)
        self._next = 0

    def order(self) -> list[int]:
        """Endpoints to try, best first: up, idle, not stuck; round-robin among equals."""
        now = monotonic()
        with self._lock:
            count = len(self.down_until)
            start = self._next % count
            self._next += 1
            rotated = [(start + i) % count for i in range(count)]

            def rank(i: int) -> tuple[bool, bool, int]:
                stuck = any(now - t > self.stuck_s for t in self.under_way[i])
                return self.down_until[i] > now, stuck, len(self.under_way[i])

            return sorted(rotated, key=rank)

    def unreachable(self) -> bool:
        """Whether no endpoint answered its last request (each within NODE_DOWN_S)."""
        now = monotonic()
        return all(until > now for until in self.down_until)

    def is_hung(self, index: int) -> bool:
        return self.hung_until[index] > monotonic()

    def all_hung_past(self, deadline: float) -> bool:
        """Whether every endpoint left a request unanswered lately, and is skipped by a flush
        (see Client._attempt) until after `deadline`."""
        return all(until >= deadline for until in self.hung_until)

    def begin(self, index: int) -> float:
        started = monotonic()
        with self._lock:
            self.under_way[index].append(started)
        return started

    def end(self, index: int, started: float, result: Result) -> None:
        answered = result.ok or bool(result.status)
        now = monotonic()
        later = now + NODE_DOWN_S
        with self._lock:
            self.under_way[index].remove(started)
            if answered:
                self.latency += (now - started - self.latency) / 4
            self.down_until[index] = 0.0 if answered else later
            self.hung_until[index] = later if result.timed_out else 0.0

    def learn_limit(self, size: int) -> None:
        with self._lock:
            self.max_body = size if not self.max_body else min(self.max_body, size)


class Client:
    def __init__(self, config: Config, stats: Stats, health: Health) -> None:
        self.config = config
        self.stats = stats
        self.health = health
        self.transports: list[Transport] = [make_transport(e, config) for e in config.endpoints]
        self.timeout = config.timeout_ms / 1000
        # A batch is retried for twice the request timeout (10 s by default), then kept.
        self.retry_budget = max(1.0, 2 * self.timeout)
        self._active: Optional[Transport] = None
        self._aborted = False
        # Whether any byte of the batch under way may have left, and whether the sender took
        # the batch back before that (at exit): decided under one lock, so never both.
        self._gate = allocate_lock()
        self._touched = False
        self._taken_back = False

    def expect(self) -> None:
        """A new batch is on its way to deliver(): nothing of it has left yet. Called where
        the batch is handed over, not in deliver(): a take-back may come before it starts."""
        with self._gate:
            self._touched = self._taken_back = False

    def deliver(self, body: bytes, lines: int, cancel: Cancel) -> Outcome:
        outcome = Outcome()
        pieces = _presplit(body, lines, self.health.max_body)
        while pieces:
            piece, count = pieces.pop(0)
            kind, result = self._send(piece, cancel)
            if kind == OK:
                outcome.delivered += count
            elif kind == TOO_LARGE and count > 1:
                self.stats.add("batches_split")
                pieces[:0] = _halves(piece, count)
                self.health.learn_limit(max(1, len(piece) // 2))
            elif kind in (TOO_LARGE, REJECTED):
                reason = f"rejected_http_{result.status}"
                outcome.rejected[reason] = outcome.rejected.get(reason, 0) + count
                outcome.reason = result.message
            else:  # KEEP or MAYBE: the rest cannot be tried now either
                if kind == MAYBE:
                    outcome.maybe += count
                else:
                    outcome.kept.append((piece, count))
                outcome.kept.extend(pieces)
                outcome.reason = result.message
                break
        return outcome

    def take_back(self) -> bool:
        """From the sender thread (at exit): True when no byte of the batch under way has
        left, and none will (the sender keeps it); False when the server may have it."""
        with self._gate:
            if self._touched:
                return False
            self._taken_back = True
            return True

    def abort(self) -> None:
        """From another thread (at exit): end the request under way now."""
        active = self._active
        if active is not None:
            self._aborted = True
            active.abort()

    def close(self) -> None:
        for transport in self.transports:
            transport.close()

    # -- one piece, with retries --------------------------------------------------------------

    def _send(self, piece: bytes, cancel: Cancel) -> tuple[int, Result]:
        wires: dict[type, bytes] = {}  # the piece as each kind of endpoint takes it, made once
        stop = monotonic() + self.retry_budget
        backoff = BACKOFF_START_S
        maybe_stored = False
        result = _no_attempt()
        for _attempt in range(10_000):  # ends by time: `stop` or the cancel deadline
            deadline = cancel.deadline
            if deadline is not None and monotonic() >= deadline:
                kind = MAYBE if maybe_stored and cancel.final else KEEP
                return kind, _give_up(result, "deadline reached")

            result = self._attempt(piece, wires, deadline)
            maybe_stored = maybe_stored or result.sent
            kind = _classify(result)
            if kind != KEEP or not result.retryable:
                return kind, result
            if result.sent and cancel.final:
                # The process is ending and this got no answer: sending it again (or spooling
                # it) could store it twice (a frozen server stores both when it wakes). It is
                # reported as under way instead.
                return MAYBE, result
            if deadline is not None and self.health.all_hung_past(deadline):
                # No endpoint will be tried before the deadline (see _attempt): waiting for
                # the retries only spends the flush's time (a Lambda invocation's, billed).
                return (MAYBE if maybe_stored and cancel.final else KEEP), result
            # The server's Retry-After is a floor over the backoff, never a shortcut: 0, a
            # negative number or a past date would otherwise retry at once, thousands of
            # times a second, against a server that says it is overloaded.
            wait = max(backoff * (0.8 + 0.4 * _jitter()), result.retry_after or 0.0)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            resume = monotonic() + wait
            if resume > stop:
                return KEEP, result
            if not self._sleep_until(resume, cancel):
                why = "no time for another try before the deadline"
                return (MAYBE if maybe_stored and cancel.final else KEEP), _give_up(result, why)
            self.stats.add("retries")
            _diag.debug(f"delivery failed, will retry: {result.message}")
        return KEEP, result

    def _sleep_until(self, resume: float, cancel: Cancel) -> bool:
        """Wait for the retry; False as soon as a flush deadline comes before it (spool now)."""
        while True:
            deadline = cancel.deadline
            if deadline is not None and resume > deadline:
                return False
            left = resume - monotonic()
            if left <= 0:
                return True
            cancel.sleep(left)

    def _attempt(self, piece: bytes, wires: dict[type, bytes], deadline: Optional[float]) -> Result:
        """One try: the best endpoint first; on a connection failure the next one at once."""
        result = _no_attempt()
        for index in self.health.order():
            if deadline is not None and deadline - monotonic() < self.timeout and \
                    self.health.is_hung(index):  # fmt: skip
                # A flush or the exit is waiting and cannot afford a whole request timeout:
                # an endpoint that just left a request unanswered is not tried (kept instead).
                result = _skipped(self.transports[index])
                continue
            end = monotonic() + self.timeout
            if deadline is not None:
                end = min(end, deadline)
            started = self.health.begin(index)
            try:
                transport = self.transports[index]
                wire = wires.get(type(transport))
                if wire is None:
                    wire = wires[type(transport)] = transport.wire(piece)
                result = self._post(transport, wire, end)
            finally:
                self.health.end(index, started, result)
            if result.ok or result.status or result.sent:
                return result  # answered, or maybe stored: not sent elsewhere now
            _diag.debug(f"{result.message}; trying the next endpoint")
        return result

    def _may_send(self) -> bool:
        """Right before the first byte of a request leaves (the connection is open): whether
        the sender has not taken the batch back. From here on it cannot."""
        with self._gate:
            if self._taken_back:
                return False
            self._touched = True
            return True

    def _post(self, transport: Transport, wire: bytes, deadline: float) -> Result:
        # Not `touched` yet: a connection that takes long to open (a full accept queue, a slow
        # DNS lookup, a TLS handshake) sends nothing, and the exit may take the batch back.
        self._active, self._aborted = transport, False
        started = monotonic()
        try:
            result = transport.post(wire, deadline, self._may_send)
            if self._aborted:
                waited = monotonic() - started
                result.message = (f"no answer from {transport.endpoint.display} in {waited:.1f} s "
                                  "(ended by the exit deadline)")  # fmt: skip
            for _ in range(MAX_REDIRECTS):
                if result.status not in (307, 308) or not isinstance(transport, HttpTransport):
                    break
                result = self._follow(transport, result, wire, deadline)
            return result
        finally:
            self._active = None

    def _follow(
        self, origin: HttpTransport, result: Result, wire: bytes, deadline: float
    ) -> Result:
        target = _redirect_target(origin.endpoint, result.location)
        if target is None:
            return _config_error(result, f"a redirect to {result.location!r} was not followed "
                                 "(another scheme, or no Location)")  # fmt: skip
        endpoint, path = target
        same_host = (endpoint.host, endpoint.port) == (origin.endpoint.host, origin.endpoint.port)
        hop = HttpTransport(endpoint, self.config, target=path, credentials=same_host)
        self._active = hop
        try:
            return hop.post(wire, deadline)
        finally:
            hop.close()


def _classify(result: Result) -> int:
    if result.ok:
        return OK
    if result.status == 413:
        return TOO_LARGE
    if result.status in (301, 302, 303, 307, 308):
        _warn_moved(result)
        return KEEP
    mistake = urls_mistake(result)
    if mistake is not None:
        _diag.warn(f"{mistake} ({result.message}); batches are kept in the spool meanwhile",
                   key=mistake)  # fmt: skip
        return KEEP
    if result.status and not result.retryable:
        return REJECTED
    return KEEP


#: What a server of HTTPS answers (400) to plain HTTP: Go's (VictoriaLogs, vmauth), nginx's.
_PLAIN_TO_TLS = ("HTTP request to an HTTPS server", "plain HTTP request was sent to HTTPS port")
#: What VictoriaLogs answers (400) to a path it has not (a proxy answers 404).
_NO_SUCH_PATH = "unsupported path requested"


def urls_mistake(result: Result) -> Optional[str]:
    """What to mend in VICTORIALOGS_URL when the answer says the request went to the wrong
    place, not that its lines were bad: they are kept then, as for a permanent redirect
    (they were dropped as rejected); None for any other answer."""
    if result.status == 400 and any(text in result.message for text in _PLAIN_TO_TLS):
        return "the server speaks HTTPS where VICTORIALOGS_URL says http://: write https://"
    if result.status == 404 or (result.status == 400 and _NO_SUCH_PATH in result.message):
        return ("the server has no /insert/jsonline under the path VICTORIALOGS_URL gives: "
                "give the server's base URL")  # fmt: skip
    if 200 <= result.status < 300:  # not a delivery: a web page (see transport._is_web_page)
        return ("the server answered with a web page, not as VictoriaLogs does, and stored "
                "nothing: VICTORIALOGS_URL names another server")  # fmt: skip
    return None


def _warn_moved(result: Result) -> None:
    """A permanent redirect is a configuration error: the batch is kept, and the user told."""
    where = result.location or "(no Location given)"
    _diag.warn(
        f"the server redirects (HTTP {result.status}) to {where}: set VICTORIALOGS_URL to the "
        "new address; batches are kept in the spool meanwhile",
        key=f"moved {where}",
    )


def _config_error(result: Result, text: str) -> Result:
    return Result(False, result.status, retryable=False, message=text, location=result.location)


def _no_attempt() -> Result:
    return Result(False, retryable=True, message="no endpoint could be tried")


def _skipped(transport: Transport) -> Result:
    text = f"{transport.endpoint.display} left a request unanswered moments ago; not tried again"
    return Result(False, retryable=True, message=text)


def _give_up(result: Result, why: str) -> Result:
    return Result(False, result.status, retryable=True, sent=result.sent,
             message=f"{why}: {result.message}" if result.message else why)  # fmt: skip


def _redirect_target(origin: Endpoint, location: str) -> Optional[tuple[Endpoint, str]]:
    """(endpoint, path and query) of a Location, relative or absolute; None for another scheme."""
    from vlhook._config import Endpoint as E
    from vlhook._config import parse_endpoint

    if not location:
        return None
    # This server, with the URL's own credentials (a redirect within it keeps them).
    here = E(scheme=origin.scheme, host=origin.host, port=origin.port,
             username=origin.username, password=origin.password)  # fmt: skip
    if location.startswith("/"):
        return here, location
    try:
        endpoint = parse_endpoint(location)
    except ValueError:
        return None
    if endpoint.scheme != origin.scheme:
        return None
    if (endpoint.host, endpoint.port) == (origin.host, origin.port) and not (
        endpoint.username or endpoint.password
    ):  # this server named in full: as by a path alone
        endpoint = here
    rest = location.partition("://")[2]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return endpoint, path


def _presplit(body: bytes, lines: int, max_body: int) -> list[tuple[bytes, int]]:
    """Pieces no larger than a 413 taught (all of it when no limit was seen)."""
    pieces = [(body, lines)]
    if not max_body:
        return pieces
    out: list[tuple[bytes, int]] = []
    while pieces:
        piece, count = pieces.pop(0)
        if len(piece) <= max_body or count <= 1:
            out.append((piece, count))
        else:
            pieces[:0] = _halves(piece, count)
    return out


def _halves(body: bytes, lines: int) -> list[tuple[bytes, int]]:
    """Two pieces of whole lines, about half the lines each."""
    cut = 0
    for _ in range(lines // 2):
        cut = body.index(b"\n", cut) + 1
    return [(body[:cut], lines // 2), (body[cut:], lines - lines // 2)]
