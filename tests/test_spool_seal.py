"""The spool of an exit given up on: what its files hold is what the report said."""

from __future__ import annotations

import threading
from pathlib import Path

from vlhook._delivery.spool import Spool
from vlhook._stats import Stats


def test_a_sealed_spool_keeps_nothing_more(tmp_path: Path) -> None:
    stats = Stats()
    spool = Spool(str(tmp_path / "spool"), 1 << 20, stats)
    assert spool.put(b'{"_msg":"a"}\n', 1) == ""
    spool.seal(0.1)
    assert spool.put(b'{"_msg":"b"}\n', 1) == "exit_timeout"
    assert [f.lines for f in spool.files()] == [1]
    assert stats.spooled == 1


def test_the_seal_waits_for_a_write_under_way(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), 1 << 20, Stats())
    spool.lock.acquire()  # a write under way, on the sender thread
    sealing = threading.Thread(target=spool.seal, args=(10,))
    sealing.start()
    sealing.join(0.2)
    assert sealing.is_alive() and not spool.sealed
    spool.lock.release()
    sealing.join(10)
    assert spool.sealed
