"""The pieces of the trace context, in-process: W3C and X-Ray values read, the sources chosen,
the span read from the real OpenTelemetry SDK, and how a capture's context becomes fields."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from vlhook import _context, _diag
from vlhook._config import load
from vlhook._integrations.awslambda import client_context_fields, invocation_fields, xray_fields
from vlhook._tracecontext import traceparent_fields, tracestate

TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (f"00-{TRACE_ID}-{SPAN_ID}-01", "01"),
        (f"00-{TRACE_ID}-{SPAN_ID}-00", "00"),
        (f"00-{TRACE_ID}-{SPAN_ID}-03", "01"),  # the random flag of later levels: not shown
        (f"  00-{TRACE_ID}-{SPAN_ID}-01 ", "01"),
        (f"01-{TRACE_ID}-{SPAN_ID}-01-what-comes-later", "01"),  # a later version may add
    ],
)
def test_valid_traceparent(value: str, flags: str) -> None:
    assert traceparent_fields(value) == {"trace_id": TRACE_ID, "span_id": SPAN_ID,
                                         "trace_flags": flags}  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{TRACE_ID}-{SPAN_ID}",
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE_ID}-{SPAN_ID}-01",
        f"0-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-1",
        f"00-{TRACE_ID}-{SPAN_ID}-zz",
    ],
)
def test_invalid_traceparent(value: str) -> None:
    assert traceparent_fields(value) is None


def test_tracestate() -> None:
    assert tracestate("congo=t61rcWkgMzE , rojo=00f067aa0ba902b7") == (
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    )
    assert tracestate("fw529a3039@dt=1,t0=x") == "fw529a3039@dt=1,t0=x"
    for bad in ("", "no-equals", "Upper=1", "k=a,b", "k=", "k=" + "v" * 257,
                ",".join(f"k{i}=v" for i in range(33))):  # fmt: skip
        assert tracestate(bad) is None, bad


def test_traceparent_from_the_environment() -> None:
    config = load({"TRACEPARENT": f"00-{TRACE_ID}-{SPAN_ID}-01", "TRACESTATE": "a=1"})
    assert dict(config.trace) == {"trace_id": TRACE_ID, "span_id": SPAN_ID,
                                  "trace_flags": "01", "trace_state": "a=1"}  # fmt: skip
    assert config.warnings == ()
    assert load({"TRACESTATE": "a=1"}).trace == ()  # a tracestate alone names no trace
    bad = load({"TRACEPARENT": "nope", "TRACESTATE": "a=1"})
    assert bad.trace == ()
    assert bad.warnings == (
        "TRACEPARENT='nope' is not valid; using no trace id from the environment",
    )


XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_xray_header() -> None:
    assert xray_fields(XRAY) == {
        "xray_trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "trace_id": "5759e988bd862e3fe1be46a994272793",
        "span_id": "53995c3f42cd8ad8",
        "trace_flags": "01",
    }
    assert xray_fields("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=?") == {
        "xray_trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "trace_id": "5759e988bd862e3fe1be46a994272793",
    }
    assert xray_fields("Root=2-abc;Parent=53995c3f42cd8ad8") == {"xray_trace_id": "2-abc"}
    assert xray_fields("") == {} and xray_fields("Parent=53995c3f42cd8ad8") == {}


def test_client_context() -> None:
    traceparent = f"00-{TRACE_ID}-{SPAN_ID}-00"
    assert client_context_fields(json.dumps({"w3c": {"traceparent": traceparent}})) == {
        "trace_id": TRACE_ID, "span_id": SPAN_ID, "trace_flags": "00"}  # fmt: skip
    custom = {"custom": {"trace_id": "t-1", "span_id": "s-1"}}
    assert client_context_fields(json.dumps(custom)) == {"trace_id": "t-1", "span_id": "s-1"}
    for raw in (None, "", "not json", "[]", '{"w3c": {"traceparent": "bad"}}', '{"custom": 1}'):
        assert client_context_fields(raw) == {}, raw


class Request:
    invoke_id = "req-1"
    x_amzn_trace_id = XRAY

    def __init__(self, client_context: Optional[str]) -> None:
        self.client_context = client_context


def test_an_invocation_takes_its_pair_from_one_source() -> None:
    caller = json.dumps({"w3c": {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"}})
    fields = invocation_fields(Request(caller), cold_start=True)
    assert fields["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert (fields["trace_id"], fields["span_id"], fields["trace_flags"]) == (
        TRACE_ID, SPAN_ID, "00")  # fmt: skip
    alone = invocation_fields(Request(json.dumps({"custom": {"trace_id": "t-9"}})), False)
    assert alone["trace_id"] == "t-9" and "span_id" not in alone and "trace_flags" not in alone
    unusable = invocation_fields(Request('{"w3c": {"traceparent": "bad"}}'), False)
    assert unusable["trace_id"] == "5759e988bd862e3fe1be46a994272793"
    assert unusable["span_id"] == "53995c3f42cd8ad8"


@pytest.fixture
def sources() -> Iterator[None]:
    """The context sources as they were: tests add their own and take them away after."""
    saved = (_context.environment, _context.invocation, list(_context._ranked), _context._bound)
    try:
        yield
    finally:
        with _context._lock:
            _context.environment, _context.invocation, ranked, _context._bound = saved
            _context._ranked[:] = ranked
            _context._readers = tuple((read, expand) for _, read, expand in ranked)
            _context._choose()


def no_sources() -> None:
    with _context._lock:
        _context.environment = _context.invocation = None
        _context._ranked.clear()
        _context._readers = ()
        _context._choose()


def entry_of(context: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"_msg": "x"}
    _context.apply(entry, context)
    return entry


def test_get_is_a_c_call_until_a_context_local_source_appears(sources: None) -> None:
    python_function = type(no_sources)
    no_sources()
    assert not isinstance(_context.get, python_function) and _context.get() is None
    _context.set_environment({"trace_id": TRACE_ID})
    assert not isinstance(_context.get, python_function)
    assert _context.get() == ({"trace_id": TRACE_ID},)
    assert _context.get() == ({"trace_id": TRACE_ID},)  # every call, not once
    _context.set_invocation({"aws_request_id": "r"})
    assert _context.get() == ({"trace_id": TRACE_ID}, {"aws_request_id": "r"})
    _context.set_invocation(None)
    assert _context.get() == ({"trace_id": TRACE_ID},)
    _context.add_reader(_context.BOUND, lambda: None)
    assert _context.get is _context._read
    assert _context.get() == ({"trace_id": TRACE_ID},)


def test_later_sources_win_and_a_trace_is_replaced_whole(sources: None) -> None:
    environment = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "trace_flags": "01",
                   "trace_state": "a=1"}  # fmt: skip
    invocation = {"aws_request_id": "r", "trace_id": "t-42"}
    entry = entry_of((environment, invocation, {"user": "u"}))
    assert entry == {"_msg": "x", "aws_request_id": "r", "trace_id": "t-42", "user": "u"}
    # A source without a trace leaves the one before it whole.
    assert entry_of((environment, {"user": "u"}))["span_id"] == SPAN_ID


def test_the_lines_own_fields_win_over_the_context(sources: None) -> None:
    """A field the entry has (the line's own: `extra=`, printed JSON) is not replaced by a
    context's; a line naming any trace field takes none of the context's trace fields."""
    environment = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "trace_flags": "01"}
    for context in (({"user": "bound", "k": "1"},), (environment, {"user": "bound", "k": "1"})):
        entry = {"_msg": "x", "user": "own", "span_id": "f" * 16}
        _context.apply(entry, context)
        assert (entry["user"], entry["k"], entry["span_id"]) == ("own", "1", "f" * 16)
        assert "trace_id" not in entry and "trace_flags" not in entry
    # Also when the trace field is the only name the line shares with no source.
    entry = {"_msg": "x", "trace_flags": "00"}
    _context.apply(entry, ({"trace_id": TRACE_ID, "span_id": SPAN_ID}, {"user": "bound"}))
    assert entry == {"_msg": "x", "trace_flags": "00", "user": "bound"}
    # vlhook's own names in the context are kept apart, under the line's kept-apart ones.
    entry = {"_msg": "x", "fields.level": "own"}
    _context.apply(entry, ({"level": "bound", "stream": "s"},))
    assert entry == {"_msg": "x", "fields.level": "own", "fields.stream": "s"}
    # The source's own dict is never changed.
    source = {"level": "bound", "user": "u"}
    _context.apply({"_msg": "x", "user": "own"}, (source,))
    assert source == {"level": "bound", "user": "u"}


def test_readers_keep_their_order_of_precedence(sources: None) -> None:
    no_sources()
    _context.add_reader(_context.BOUND, lambda: {"who": "bound"})
    _context.add_reader(_context.LOGURU, lambda: {"who": "loguru", "l": 1})
    _context.add_reader(_context.SPAN, lambda: "span", lambda value: {"who": value})
    entry = entry_of(_context.get())
    assert entry == {"_msg": "x", "who": "bound", "l": 1}


def test_a_value_that_cannot_be_made_fields_costs_only_itself(sources: None) -> None:
    def broken(value: Any) -> dict[str, Any]:
        raise ValueError("unreadable")

    before = len(_diag.internal_errors)
    entry = entry_of(({"user": "u"}, (broken, object())))
    assert entry == {"_msg": "x", "user": "u"}
    assert _diag.internal_errors[before:] == ["context: ValueError: unreadable"]
    del _diag.internal_errors[before:]


def test_bind_is_local_to_its_thread_and_task(sources: None) -> None:
    _context.bind(user="u1")
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(_context._variable().get()))
    thread.start()
    thread.join()
    assert _context._variable().get() == {"user": "u1"}
    assert seen == [None]  # carrying into threads is installed only where vlhook is active
    _context.unbind("user")
    assert _context._variable().get() is None


def test_the_current_span_is_read_and_formatted_later(sources: None) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace

    from vlhook._integrations.opentelemetry import span_source

    read, expand = span_source(trace)
    tracer = sdk.TracerProvider().get_tracer("test")
    assert not read()  # outside any span: nothing kept
    with tracer.start_as_current_span("outer") as outer:
        kept = read()
        with tracer.start_as_current_span("inner"):
            pass
    ids = outer.get_span_context()
    assert expand(kept) == {"trace_id": f"{ids.trace_id:032x}",
                            "span_id": f"{ids.span_id:016x}", "trace_flags": "01"}  # fmt: skip
    with trace.use_span(trace.INVALID_SPAN):
        assert expand(read()) is None  # a span that names no trace: the sources before stand


def test_another_runtime_context_is_read_through_the_api(sources: None) -> None:
    """A program may configure its own runtime context (OTEL_PYTHON_CONTEXT): one that keeps
    the current context per thread instead of in a context variable."""
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context.context import Context, _RuntimeContext
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    from vlhook._integrations.opentelemetry import span_source

    empty = Context()

    class PerThread(_RuntimeContext):
        def __init__(self) -> None:
            self.local = threading.local()

        def attach(self, context: Context) -> Any:
            previous = self.get_current()
            self.local.current = context
            return previous

        def get_current(self) -> Context:
            current = getattr(self.local, "current", None)
            return empty if current is None else current

        def detach(self, token: Any) -> None:
            self.local.current = token

    saved = otel_context._RUNTIME_CONTEXT
    otel_context._RUNTIME_CONTEXT = PerThread()
    try:
        read, expand = span_source(trace)
        assert read() is None
        span = NonRecordingSpan(SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), True,
                                            TraceFlags(1), TraceState([("a", "1")])))  # fmt: skip
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            fields = expand(read())
        finally:
            otel_context.detach(token)
    finally:
        otel_context._RUNTIME_CONTEXT = saved
    assert fields == {"trace_id": TRACE_ID, "span_id": SPAN_ID, "trace_flags": "01",
                      "trace_state": "a=1"}  # fmt: skip
