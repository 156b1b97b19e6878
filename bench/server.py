"""The server the bench's children ship to, and how the bench counts what it stored.

A real VictoriaLogs: the one `VLHOOK_BENCH_VICTORIALOGS_URL` names, else the pinned release
started here with tests/victorialogs.py (found, or built once). Only when no binary can be had
does the bench fall back to `vlhook listen`'s Receiver in its own process, and says so: that
pure-Python receiver is far slower than the real server, and shares this process's CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import victorialogs  # noqa: E402
from vlhook._listen import Receiver  # noqa: E402

REAL_URL_ENV = "VLHOOK_BENCH_VICTORIALOGS_URL"
SETTLE_LIMIT_S = 60.0  # the longest we wait for rows after a child has exited

#: A row of the server as the Receiver keeps it: field name -> value.
Match = Callable[[dict[str, str]], bool]


class BenchServer:
    def __init__(
        self, url: str, description: str, receiver: Optional[Receiver] = None, pid: int = 0
    ) -> None:
        self.url = url.rstrip("/")
        self.description = description
        self.pid = pid  # of the server process when the bench started it
        self.receiver = receiver  # the fallback: rows are counted in this process
        self.real = receiver is None

    def count(self, logsql: str, match: Match) -> int:
        """Rows stored so far that `logsql` (a real server) or `match` (the Receiver) selects."""
        if self.receiver is not None:
            return sum(1 for row in self.receiver.entries() if match(row))
        self.flush()  # searchable now, not about a second later
        body = self._get("/select/logsql/query", {"query": f"{logsql} | stats count() rows"})
        lines = [line for line in body.splitlines() if line.strip()]
        return int(json.loads(lines[0]).get("rows", 0)) if lines else 0

    def stored(self, logsql: str, match: Match, want: int) -> int:
        """Rows once all `want` arrived, or once nothing new came for a second (what is still
        missing will not come), never waiting longer than SETTLE_LIMIT_S."""
        deadline = time.monotonic() + SETTLE_LIMIT_S
        seen = -1
        while time.monotonic() < deadline:
            now = self.count(logsql, match)
            if now >= want or now == seen:
                return now
            seen = now
            time.sleep(1.0)
        return seen

    def flush(self) -> None:
        """Make what the server took searchable (its in-memory rows written to parts)."""
        if self.receiver is None:
            self._get("/internal/force_flush", {})

    def cpu_s(self) -> float:
        """The server's CPU time so far (user + sys, s); 0 when the bench did not start it."""
        if not self.pid:
            return 0.0
        with open(f"/proc/{self.pid}/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settled_cpu_s(self) -> float:
        """The server's CPU time once it has gone idle (a tenth of a second without a clock
        tick of CPU: the background merging of what it took is done), waiting at most
        SETTLE_LIMIT_S; 0 when the bench did not start it."""
        last, deadline = self.cpu_s(), time.monotonic() + SETTLE_LIMIT_S
        while self.pid and time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.cpu_s()
            if now == last:
                break
            last = now
        return last

    def clear(self) -> None:
        """Forget what the Receiver holds (200,000 rows are a few hundred MB there)."""
        if self.receiver is not None:
            self.receiver.clear()

    def _get(self, path: str, params: dict[str, str]) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=30) as response:
            body: bytes = response.read()
        return body


def word(tag: str) -> tuple[str, Match]:
    """The rows whose message holds `tag` (a run's unique hex word), as a query and a match."""
    return f'"{tag}"', lambda row: tag in row.get("_msg", "")


@contextlib.contextmanager
def bench_server(workdir: str) -> Iterator[BenchServer]:
    external = os.environ.get(REAL_URL_ENV, "").strip()
    if external:
        base = external.rstrip("/").removesuffix("/insert/jsonline")
        yield BenchServer(base, f"VictoriaLogs at {base} ({REAL_URL_ENV})")
        return
    try:
        binary = victorialogs.binary()
    except victorialogs.Unavailable as exc:
        with Receiver(echo=None) as receiver:
            yield BenchServer(receiver.url, "vlhook listen's Receiver in the bench process, NOT "
                              f"a real VictoriaLogs (no binary: {exc})", receiver)  # fmt: skip
        return
    with victorialogs.VictoriaLogs(binary, Path(workdir) / "victorialogs") as server:
        assert server.proc is not None
        yield BenchServer(server.url, f"VictoriaLogs {victorialogs.VERSION} ({binary}), "
                          "started by the bench on loopback", pid=server.proc.pid)  # fmt: skip
