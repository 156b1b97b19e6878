"""`make demo`: run examples/app.py under vlhook and show what arrived.

Without VICTORIALOGS_URL a local receiver (`vlhook listen`, in this process) stands in for
VictoriaLogs and prints every entry as it arrives. With VICTORIALOGS_URL set, the entries go
to that server and the demo reads them back with a LogsQL query.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "app.py"


def run_app(url: str, run_id: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        VICTORIALOGS_URL=url,
        VICTORIALOGS_FIELDS=f"demo_run={run_id}",
        PYTHONPATH=str(REPO / "sitecustomize"),
    )
    print(f"$ VICTORIALOGS_URL={url} PYTHONPATH=sitecustomize python examples/app.py")
    return subprocess.run(
        [sys.executable, str(APP)], env=env, capture_output=True, timeout=60, check=False
    )


def show_program_output(result: subprocess.CompletedProcess[bytes]) -> None:
    print(f"--- the program's own output (exit code {result.returncode}), unchanged by vlhook ---")
    sys.stdout.write(result.stdout.decode() + "\n" + result.stderr.decode())


def summarise(rows: list[dict[str, str]]) -> None:
    print(f"\n--- {len(rows)} entries arrived ---")
    for row in sorted(rows, key=lambda r: r["_time"]):
        extras = {k: v for k, v in row.items() if k in ("cart_id", "total_eur", "psp", "currency")}
        print(f"{row['level']:8} {row.get('stream', ''):8} {row['_msg'].splitlines()[0][:70]}"
              + (f"  {extras}" if extras else ""))  # fmt: skip
    failed = [r for r in rows if r.get("exception.type")]
    if failed:
        print("\none logging entry in full:")
        print(json.dumps({k: v for k, v in failed[0].items() if not k.startswith("_stream")},
                         indent=2)[:1500])  # fmt: skip


def demo_local() -> int:
    from vlhook._listen import Receiver

    with Receiver(echo=None) as receiver:
        print(f"no VICTORIALOGS_URL: started a local receiver at {receiver.url}\n")
        result = run_app(receiver.url, uuid.uuid4().hex[:12])
        show_program_output(result)
        rows = receiver.wait_for(12, timeout=10)
        time.sleep(0.3)
        summarise(receiver.entries())
    return 0 if len(rows) >= 12 else 1


def demo_remote(url: str) -> int:
    run_id = uuid.uuid4().hex[:12]
    show_program_output(run_app(url, run_id))
    base = url.split(",", maxsplit=1)[0].rstrip("/")
    query = urllib.parse.urlencode({"query": f"demo_run:{run_id}", "limit": "100"})
    rows: list[dict[str, str]] = []
    for _ in range(20):
        urllib.request.urlopen(f"{base}/internal/force_flush", timeout=5).read()
        with urllib.request.urlopen(f"{base}/select/logsql/query?{query}", timeout=10) as r:
            rows = [json.loads(line) for line in r.read().splitlines() if line.strip()]
        if len(rows) >= 12:
            break
        time.sleep(0.5)
    summarise(rows)
    print(f"\nsee them in the UI: {base}/select/vmui/?query=demo_run:{run_id}")
    return 0 if len(rows) >= 12 else 1


if __name__ == "__main__":
    target = os.environ.get("VICTORIALOGS_URL", "")
    sys.exit(demo_remote(target) if target else demo_local())
