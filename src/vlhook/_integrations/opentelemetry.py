"""OpenTelemetry: every entry carries the span current where it was written.

Installed when the program imports `opentelemetry.trace` (vlhook never imports it). The API
keeps the current span in an immutable context (a dict that a new span replaces, never
changes) held by one context variable. At each capture the writing thread only keeps that
context, with one call, when it holds anything (outside every span it is empty); the span is
looked up in it, and its ids formatted as hex, later on the sender thread. A program that
configured a runtime context of another kind gets the API's `get_current_span()` instead.
"""

from __future__ import annotations

from contextvars import ContextVar

from vlhook import _context, _diag
from vlhook._tracecontext import sampled

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable, Optional

    from vlhook._activation import Active


def install(module: ModuleType, active: Active) -> None:
    """Called when opentelemetry.trace is imported."""
    read, expand = span_source(module)
    _context.add_reader(_context.SPAN, read, expand)
    _diag.debug("OpenTelemetry in use: entries carry the current span's trace context")


def span_source(trace: ModuleType) -> tuple[Callable[[], Any], Callable[[Any], Any]]:
    """(read on the writing thread, made fields on the sender thread)."""
    import sys

    runtime = getattr(sys.modules.get("opentelemetry.context"), "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    key = getattr(getattr(trace, "propagation", None), "_SPAN_KEY", None)
    if isinstance(variable, ContextVar) and isinstance(key, str):
        # The lines of one span share its context: its fields are made once (the pair is
        # replaced whole, so a thread that reads it sees one context and its own fields).
        last: list[tuple[Any, Optional[dict[str, str]]]] = [(None, None)]

        def fields_in(context: Any) -> Optional[dict[str, str]]:
            seen, fields = last[0]
            if seen is not context:
                fields = span_fields(context.get(key))
                last[0] = (context, fields)
            return fields

        return variable.get, fields_in
    get_current_span, invalid = trace.get_current_span, trace.INVALID_SPAN

    def current_span() -> Any:
        span = get_current_span()
        return None if span is invalid else span

    return current_span, span_fields


def span_fields(span: Any) -> Optional[dict[str, str]]:
    """On the sender thread: the span's trace context, or None for a span that names none."""
    get = getattr(span, "get_span_context", None)
    context = get() if get is not None else None
    if context is None or not context.is_valid:
        return None
    fields = {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "trace_flags": sampled(context.trace_flags),
    }
    state = context.trace_state
    if state:
        fields["trace_state"] = state.to_header()
    return fields
