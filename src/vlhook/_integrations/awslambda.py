"""AWS Lambda: deliver each invocation's entries before the environment freezes, and tag every
entry with the invocation it was written in.

awslambdaric posts the handler's response (or error), then asks the Runtime API for the next
invocation — and Lambda freezes the environment as soon as that request is pending. Wrapping
`BaseLambdaRuntimeClient.wait_next_invocation` (the base class: the multi-concurrency client is a
sibling subclass) runs the flush exactly between the two: after the caller has its response,
before the freeze. Its return value carries the next invocation's ids before the handler runs.

Under SnapStart, awslambdaric asks for `/restore/next` once the init phase is over, and Lambda
snapshots the whole environment while that request is pending: every environment restored from
the snapshot resumes with what vlhook held then. Wrapping `restore_next` delivers the init
phase's lines before it, once, and closes the delivery connections the copies would share.
"""

from __future__ import annotations

import os
import sys
import time

from vlhook import _context, _diag, _lifecycle
from vlhook._tracecontext import is_hex, traceparent_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Optional

    from vlhook._activation import Active
    from vlhook._config import Config
    from vlhook._sender import Sender


class _Invocations:
    """Per-process invocation state (a forked worker starts its own: cold_start holds per
    process, as each worker is a fresh environment for its first invocation)."""

    def __init__(self, sender: Sender, config: Config) -> None:
        self.sender = sender
        self.config = config
        self.count = 0
        self.deadline_ms: Optional[int] = None
        self.pid = os.getpid()
        #: Seconds each end-of-invocation flush took (what `make bench` and the tests read).
        self.flush_seconds: list[float] = []
        #: The runtime waits for its next invocation in native code, which takes no signal.
        self.waiting = False

    def waiting_for_next(self) -> bool:
        return self.waiting

    def end(self) -> None:
        """Between the response and the next request: flush within the invocation's budget.

        Not before the first request, on demand: the init phase's lines go with the first
        invocation's flush (the sender may deliver them earlier). A flush there would wait for
        the sender to load its pipeline and send, delaying the first response by ~10 ms; what
        it would save is the init lines of an environment frozen after init and reclaimed
        without ever being invoked (docs/lambda.md). Under provisioned concurrency no caller
        waits for that first request, and an environment may stay frozen after it for hours:
        its init lines go before it."""
        if self.count == 0:
            if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
                self.sender.flush(self.config.exit_timeout_ms / 1000)
            return
        _context.set_invocation(None)
        budget = self.config.exit_timeout_ms / 1000
        if self.deadline_ms:
            budget = min(budget, self.deadline_ms / 1000 - time.time())
        started = time.monotonic()
        self.sender.flush(max(budget, 0.0))
        _tell_fd_capture(None)  # after the flush: what was written before it is read
        if len(self.flush_seconds) < 10_000:
            self.flush_seconds.append(time.monotonic() - started)

    def before_snapshot(self) -> None:
        """SnapStart: what the init phase wrote is delivered now, by the one environment that
        ran it, and no connection is kept. Without this every restored environment sent those
        lines again (with its first invocation's flush), on a socket the server had closed
        long before, or one that another restored copy was using too."""
        self.sender.flush(self.config.exit_timeout_ms / 1000, disconnect=True)

    def begin(self, request: Any) -> None:
        if os.getpid() != self.pid:  # a forked worker: its first invocation is its cold start
            self.pid, self.count = os.getpid(), 0
        self.count += 1
        self.deadline_ms = _int(getattr(request, "deadline_time_in_ms", None))
        fields = invocation_fields(request, cold_start=self.count == 1)
        _context.set_invocation(fields)
        _tell_fd_capture(fields)


def _tell_fd_capture(fields: Optional[dict[str, Any]]) -> None:
    """Lines captured at the fd level belong to the invocation too (VICTORIALOGS_CAPTURE=fd)."""
    capture_fd = sys.modules.get("vlhook._capture_fd")
    capture = capture_fd.current() if capture_fd is not None else None
    if capture is not None:
        capture.tell_context(fields)


def invocation_fields(request: Any, cold_start: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"aws_request_id": getattr(request, "invoke_id", None) or ""}
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    if version:
        fields["function_version"] = version
    fields["cold_start"] = cold_start
    tenant = getattr(request, "tenant_id", None)  # a function in tenant isolation mode
    if tenant:
        fields["tenant_id"] = tenant
    xray = xray_fields(getattr(request, "x_amzn_trace_id", None) or "")
    root = xray.pop("xray_trace_id", None)
    if root:
        fields["xray_trace_id"] = root
    # The trace ids come from one source: a caller's trace when it sent one, else X-Ray's.
    fields.update(client_context_fields(getattr(request, "client_context", None)) or xray)
    return fields


def xray_fields(header: str) -> dict[str, str]:
    """`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`: the root
    as is (`xray_trace_id`), and as a W3C trace id with the parent as its span."""
    parts = dict(p.strip().partition("=")[::2] for p in header.split(";") if "=" in p)
    root = parts.get("Root", "")
    fields: dict[str, str] = {}
    if not root:
        return fields
    fields["xray_trace_id"] = root
    version, _, rest = root.partition("-")
    w3c = rest.replace("-", "").lower()
    if version != "1" or not is_hex(w3c, 32):
        return fields
    fields["trace_id"] = w3c
    parent = parts.get("Parent", "").lower()
    if is_hex(parent, 16):
        fields["span_id"] = parent
    sampled = parts.get("Sampled")
    if sampled in ("0", "1"):
        fields["trace_flags"] = "0" + sampled
    return fields


def client_context_fields(raw: Optional[str]) -> dict[str, str]:
    """A trace propagated by the caller: `w3c.traceparent` (trace, span and flags), or
    `custom.trace_id` (taken as given, with `custom.span_id` when there is one)."""
    if not raw:
        return {}
    import json  # only when a caller sent a client context

    try:
        context = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(context, dict):
        return {}
    custom = context.get("custom") or {}
    trace = custom.get("trace_id") if isinstance(custom, dict) else None
    if isinstance(trace, str) and trace:
        fields = {"trace_id": trace}
        span = custom.get("span_id")
        if isinstance(span, str) and span:
            fields["span_id"] = span
        return fields
    w3c = context.get("w3c") or {}
    parent = w3c.get("traceparent") if isinstance(w3c, dict) else None
    return (traceparent_fields(parent) or {}) if isinstance(parent, str) else {}


def install(module: ModuleType, active: Active) -> None:
    """Called when awslambdaric.lambda_runtime_client is imported (on the main thread)."""
    state = _Invocations(active.sender, active.config)
    _patch(module, state)
    _lifecycle.watch_signals(state.waiting_for_next)


def _patch(module: ModuleType, state: _Invocations) -> None:
    base = module.BaseLambdaRuntimeClient
    original = base.wait_next_invocation

    def wait_next_invocation(self: Any) -> Any:
        with _diag.guard("lambda flush"):
            state.end()
        state.waiting = True
        try:
            request = original(self)
        finally:
            state.waiting = False
        with _diag.guard("lambda context"):
            state.begin(request)
        return request

    base.wait_next_invocation = wait_next_invocation
    restore_next = getattr(base, "restore_next", None)  # where awslambdaric has SnapStart
    if restore_next is not None:

        def snapshot_then_restore_next(self: Any) -> Any:
            with _diag.guard("lambda snapshot"):
                state.before_snapshot()
            return restore_next(self)

        base.restore_next = snapshot_then_restore_next
    _diag.debug("hooked into awslambdaric: flush after every invocation")


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
