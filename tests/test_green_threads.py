"""A program that turns threads into greenlets (gevent's `monkey.patch_all()`, as gunicorn's
gevent workers and many services run): vlhook's sender and delivery stay real threads with
real locks, so they ship while the program's greenlets run, and the program ends as without
vlhook. Before, the sender started as a greenlet after the patching, and its first wait on a
real lock stopped the whole process for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import messages, run_python
from victorialogs import VictoriaLogs

pytest.importorskip("gevent")

GREENLETS = """\
from gevent import monkey
monkey.patch_all()
import logging, os, sys, time
import gevent
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
def worker(n):
    for i in range(3):
        print(f"worker {n} line {i}")
        logging.getLogger("g").info("worker %d record %d", n, i)
        gevent.sleep(0.01)
gevent.joinall([gevent.spawn(worker, n) for n in range(5)])
# A stretch that never lets the hub run: only a real thread can ship meanwhile.
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
vlhook = sys.modules.get("vlhook")  # present with the drop-in only
if vlhook:
    with open(os.environ["SHIPPED_FILE"], "w") as out:
        out.write(str(vlhook.stats()["shipped"]))
print("done")
"""

#: What GREENLETS ships: 15 lines, 15 records, "done".
ENTRIES = 31


def run_green(script: Any, tmp_path: Path, env: dict[str, str]) -> int:
    """Run GREENLETS with and without vlhook; the console must be the same. Returns what
    vlhook had shipped by the end of the busy stretch."""
    path = script(GREENLETS)
    shipped = tmp_path / "shipped"
    bare = run_python(path, {"SHIPPED_FILE": str(shipped)}, dropin=False, timeout=30)
    env = {**env, "SHIPPED_FILE": str(shipped), "VICTORIALOGS_FLUSH_INTERVAL_MS": "100"}
    hooked = run_python(path, env, timeout=30)  # it never ended before
    assert (hooked.rc, hooked.out, hooked.err) == (bare.rc, bare.out, bare.err)
    assert bare.rc == 0 and bare.out.endswith("done\n") and "worker 4 record 2" in bare.err
    return int(shipped.read_text())


def test_gevent_program_ships_while_its_greenlets_run(
    script: Any, sink: Any, tmp_path: Path
) -> None:
    shipped = run_green(script, tmp_path, sink.env())
    assert shipped == ENTRIES - 1  # all but "done", during the stretch that never yields
    rows = sink.settle(ENTRIES)
    assert len(rows) == ENTRIES and messages(rows)[-1] == "done"
    assert sorted(messages(rows, "logging")) == sorted(
        f"worker {n} record {i}" for n in range(5) for i in range(3)
    )


def test_gevent_program_ships_over_https(
    script: Any, tls_server: VictoriaLogs, tmp_path: Path
) -> None:
    """gevent patches `socket` and `ssl` too: vlhook's https client, on its own real thread,
    still connects, verifies and delivers."""
    env = {"VICTORIALOGS_URL": tls_server.url, "VICTORIALOGS_CA_BUNDLE": str(tls_server.cafile),
           "VICTORIALOGS_SPOOL_DIR": str(tmp_path / "spool")}  # fmt: skip
    assert run_green(script, tmp_path, env) == ENTRIES - 1
    assert len(tls_server.rows("*")) == ENTRIES


YIELDING_HANDLER = """\
from gevent import monkey
monkey.patch_all()
import logging, sys
import gevent
class Network(logging.Handler):
    def emit(self, record):
        gevent.sleep(0.001)  # waits on its socket: the other greenlets run meanwhile
        sys.stderr.write("sent " + record.getMessage() + "\\n")
log = logging.getLogger("app")
log.addHandler(Network())
log.setLevel(logging.INFO)
def logs():
    for i in range(5):
        log.info("record %d", i)
def prints():
    for i in range(20):
        print("printed", i)
        gevent.sleep(0.0002)
gevent.joinall([gevent.spawn(logs), gevent.spawn(prints)])
"""


def test_a_greenlet_printing_while_a_handler_waits_is_not_taken_for_its_output(
    script: Any, sink: Any
) -> None:
    """What a record's handlers print is not shipped again (the record is); a greenlet that
    prints while a handler waits is another writer. Before, vlhook knew writers by the real
    thread: 7 of these 20 lines were taken for the handler's output and never shipped."""
    path = script(YIELDING_HANDLER)
    bare = run_python(path, dropin=False, timeout=30)
    hooked = run_python(path, sink.env(), timeout=30)
    assert (hooked.rc, hooked.out, hooked.err) == (bare.rc, bare.out, bare.err)
    rows = sink.settle(25)
    assert sorted(messages(rows, "stdout"), key=lambda m: int(m.split()[1])) == [
        f"printed {i}" for i in range(20)
    ]
    assert messages(rows, "logging") == [f"record {i}" for i in range(5)]
    assert not messages(rows, "stderr")  # the handler's own lines: the records are shipped
