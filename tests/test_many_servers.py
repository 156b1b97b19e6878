"""A comma list of vlinsert URLs, against a real VictoriaLogs cluster (2 insert/select nodes in
front of 2 storage nodes): batches spread over healthy nodes, fail over without loss when a node
is lost, and a node that comes back is used again.

A node is lost by cutting the client's connections to it (a proxy that can be cut), not by
stopping the server: that is what the client sees of a crashed node or a broken network, and it
does not depend on how gracefully the server shuts down."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from conftest import DROPIN, Sink, base_env, messages, run_python
from fault_proxy import CutProxy, FaultProxy
from victorialogs import Cluster

FLUSH_EACH_LINE = (
    "import sys, vlhook\n"
    "for i in range({total}):\n"
    "    print('line', i)\n"
    "    vlhook.flush(5)\n"
    "    if i == {pause_at}:\n"
    "        sys.stdin.readline()  # the test changes the world meanwhile\n"
    "        {after_pause}\n"
)


def _cluster_sink(cluster: Cluster, tmp_path: Any) -> Sink:
    return Sink(cluster, tmp_path / "spool", lag=1.5)


def _numbers(rows: list[dict[str, str]]) -> list[int]:
    return sorted(int(m.split()[1]) for m in messages(rows))


def _start(path: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    full = base_env()
    full.update(env, PYTHONPATH=str(DROPIN))
    return subprocess.Popen([sys.executable, str(path)], env=full, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _resume(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def _wait_for(proxy: FaultProxy, requests: int) -> None:
    deadline = time.monotonic() + 20
    while len(proxy.requests) < requests and time.monotonic() < deadline:
        time.sleep(0.05)


def test_batches_spread_over_nodes(script: Any, vl_cluster: Cluster, tmp_path: Any) -> None:
    sink = _cluster_sink(vl_cluster, tmp_path)
    a_url, b_url = vl_cluster.urls
    # Recording fronts: the requests each insert node received.
    with FaultProxy(a_url, []) as a, FaultProxy(b_url, []) as b:
        path = script(
            "import vlhook\nfor i in range(20):\n    print('line', i)\n    vlhook.flush(5)\n"
        )
        run_python(path, sink.env(VICTORIALOGS_URL=f"{a.url},{b.url}"))
        via_a = sum(len(r.lines()) for r in a.requests if r.path.startswith("/insert/"))
        via_b = sum(len(r.lines()) for r in b.requests if r.path.startswith("/insert/"))
    rows = sink.settle(20)
    assert _numbers(rows) == list(range(20))  # each line stored once
    assert via_a and via_b and via_a + via_b == 20  # both nodes took batches


def test_lost_vlinsert_node_every_line_stored_once(
    script: Any, vl_cluster: Cluster, tmp_path: Any
) -> None:
    """Node A is cut between two batches: its kept-alive connection is dropped and its port
    refuses; every later batch goes through node B, and each line is stored exactly once."""
    sink = _cluster_sink(vl_cluster, tmp_path)
    a_url, b_url = vl_cluster.urls
    with CutProxy(a_url.removeprefix("http://")) as a, FaultProxy(b_url, []) as b:
        code = FLUSH_EACH_LINE.format(total=30, pause_at=9, after_pause="pass")
        proc = _start(script(code), sink.env(VICTORIALOGS_URL=f"{a.url},{b.url}"))
        sink.entries(10, timeout=20)
        assert a.connections, "node A took no batch before it was lost"
        a.cut()
        after_cut = len(b.requests)
        _resume(proc)
        via_b_after = sum(len(r.lines()) for r in b.requests[after_cut:])
    rows = sink.settle(30)
    assert _numbers(rows) == list(range(30))
    assert via_b_after == 20  # everything after the cut went through B


def test_failover_and_recovery_without_loss(
    script: Any, vl_cluster: Cluster, tmp_path: Any
) -> None:
    """Node A is down from the start (its port refuses); once it is back, and the time a failed
    node is set aside has passed, it takes batches again."""
    sink = _cluster_sink(vl_cluster, tmp_path)
    a_url, b_url = vl_cluster.urls
    with CutProxy(a_url.removeprefix("http://")) as a:
        a.cut()
        code = FLUSH_EACH_LINE.format(
            total=30, pause_at=9, after_pause="import time; time.sleep(5.5)  # past the set-aside"
        )
        proc = _start(script(code), sink.env(VICTORIALOGS_URL=f"{a.url},{b_url}"))
        sink.entries(10, timeout=20)
        assert a.connections == 0
        a.restore()
        _resume(proc)
        taken_back = a.connections
    rows = sink.settle(30)
    assert _numbers(rows) == list(range(30))
    assert taken_back  # node A was used again after it came back
