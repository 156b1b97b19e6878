"""The buffer's cap (VICTORIALOGS_BUFFER_BYTES) counts what the captures it holds really take:
measured here with tracemalloc, for captures made as the tee and the record capture make them,
on whatever Python runs the suite (object sizes differ between versions)."""

from __future__ import annotations

import _thread
import logging
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from vlhook._buffer import Buffer, item_size
from vlhook._captures import record, text
from vlhook._stats import Stats

COUNT = 20_000


def held(make: Callable[[int], Any]) -> tuple[int, int]:
    """(bytes the captures take, bytes the buffer counts for them) for COUNT captures put in
    a buffer with room for all."""
    buffer = Buffer(Stats(), 1 << 40, "drop", 1.0, wake=lambda: None, wake_every=1 << 30)
    buffer.intercept = None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(COUNT):
            buffer.put(make(i))
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(buffer.items) == COUNT
    assert buffer.used == sum(item_size(item) for item in buffer.items)
    return taken, buffer.used


@pytest.mark.parametrize("length", [10, 100, 1_000])
def test_a_printed_line_is_counted_at_least_as_what_it_takes(length: int) -> None:
    pad = "x" * (length - 8)

    def line(i: int) -> Any:  # as the tee makes them: a new string, its time, its thread
        return text(0, f"{i:07d} {pad}", time.time_ns(), _thread.get_ident(), None)

    taken, counted = held(line)
    assert counted >= taken
    assert counted <= taken * 1.25 + 64 * COUNT  # and not wildly more: the cap still means it


def test_a_logging_record_is_counted_at_least_as_what_it_takes() -> None:
    logger = logging.getLogger("buffer-memory")

    def captured(i: int) -> Any:  # the record, its message, the line its handler printed
        rec = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "order %s", (i,), None)
        message = rec.getMessage()
        printed = [f"2026-12-01 10:00:00,000 INFO {logger.name} {message}\n"]
        return record(rec, time.time_ns(), _thread.get_ident(), None, rec.levelno, message, printed)

    taken, counted = held(captured)
    assert counted >= taken
    assert counted <= taken * 1.5
