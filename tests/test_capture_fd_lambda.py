"""VICTORIALOGS_CAPTURE=fd under the real awslambdaric: the helper is flushed after each
response and before the next /next, and the lines it reads carry the invocation's ids."""

from __future__ import annotations

import json
import re

import pytest

from conftest import Sink
from fault_proxy import FaultProxy
from lambda_runtime import RuntimeApi

pytest.importorskip("awslambdaric")

from test_lambda import (
    TRACE,
    arrival_times,
    assert_each_between_response_and_next,
    rows_of,
    run_runtime,
    ship_to,
)


def test_fd_lines_are_delivered_before_next_and_tagged_with_their_invocation(sink: Sink) -> None:
    with RuntimeApi() as api, FaultProxy(sink.url, []) as proxy:
        first = api.add({"name": "ann", "threads": 2, "json": True, "order_id": 1}, trace_id=TRACE)
        second = api.add({"name": "bob", "fail": True})
        env = ship_to(sink, VICTORIALOGS_URL=proxy.url, VICTORIALOGS_CAPTURE="fd,logging")
        result = run_runtime(api, env)
    assert result.returncode == 1, result.stderr  # the Runtime API went away after the last event
    assert json.loads(first.response or b"") == {"ok": True, "name": "ann"}
    arrived = arrival_times(proxy)
    sent = sum(len(times) for times in arrived.values())
    rows = sink.settle(sent)
    assert len(rows) == sent  # each line sent was stored once

    assert_each_between_response_and_next(api, arrived, (first, second))

    ann = rows_of(rows, first)
    expected = ["hello ann", "processing order", "payment captured"]
    assert sorted(r["_msg"] for r in ann if "worker" not in r["_msg"]) == sorted(expected)
    assert _workers_lines([r["_msg"] for r in ann if "worker" in r["_msg"]]) == [
        "ann worker 0", "ann worker 1"]  # fmt: skip
    assert {r["trace_id"] for r in ann} == {"5759e988bd862e3fe1be46a994272793"}
    hello = next(r for r in ann if r["_msg"] == "hello ann")
    assert hello["stream"] == "stdout" and hello["cold_start"] == "true"
    record = next(r for r in ann if r["_msg"] == "processing order")
    assert record["stream"] == "logging" and record["order_id"] == "1"

    bob = rows_of(rows, second)
    assert [r["_msg"] for r in bob].count("processing order") == 1
    errors = [r for r in bob if r["level"] == "ERROR"]
    assert len(errors) == 1, [r["_msg"] for r in bob]
    assert errors[0]["_msg"].startswith("[ERROR] ValueError: cannot process bob")

    outside = [r for r in rows if "aws_request_id" not in r]
    assert outside[0]["_msg"] == "init: loading configuration"
    assert [r.get("exception.message") for r in outside].count("Failed to get next") == 1
    # What the runtime's native client writes to fd 1 itself: invisible to the stream tees.
    (native,) = [r for r in outside if "LAMBDA_RUNTIME Failed to get next" in r["_msg"]]
    assert native["stream"] == "stdout" and native["level"] == "ERROR"
    assert result.stdout.count(b"LAMBDA_RUNTIME Failed to get next") == 1
    assert len(outside) == 3


def _workers_lines(messages: list[str]) -> list[str]:
    """What the handler's two threads printed, each exactly once, from the rows that hold it.
    print() writes the text and the newline apart: when the threads switch between the two,
    the program's own output is both texts, then both newlines, and at the fd level that is
    what is read: one line holding both (the stream tees, which see each thread's writes,
    make two lines of it). Seen once in the suite's runs."""
    found = re.findall(r"ann worker \d", "\n".join(messages))
    assert "".join(found) == "".join(messages), messages  # nothing else in those rows
    return sorted(found)
