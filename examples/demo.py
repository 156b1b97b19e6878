"""`make demo`: run examples/app.py, then the Lambda handler in examples/lambda/ under the real
awslambdaric and a local Runtime API, under vlhook, and show what arrived.

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
LAMBDA_EVENTS = [
    {"name": "ann", "threads": 2, "json": True, "order_id": 1},
    {"name": "bob", "fail": True},
]


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


def run_lambda(url: str, run_id: str) -> list[str]:
    """Two invocations of the sample handler under the real awslambdaric; their request ids."""
    sys.path.insert(0, str(REPO / "tests"))
    from lambda_runtime import RuntimeApi

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with RuntimeApi() as api:
        invocations = [api.add(event) for event in LAMBDA_EVENTS]
        env.update(
            AWS_LAMBDA_RUNTIME_API=api.address,
            AWS_LAMBDA_FUNCTION_NAME="orders",
            VICTORIALOGS_URL=url,
            VICTORIALOGS_FIELDS=f"demo_run={run_id}",
            PYTHONPATH=str(REPO / "sitecustomize"),
        )
        print("\n$ python -m awslambdaric handler.handler   (2 invocations, local Runtime API)")
        subprocess.run(
            [sys.executable, "-m", "awslambdaric", "handler.handler"], env=env,
            cwd=str(REPO / "examples" / "lambda"), capture_output=True, timeout=60, check=False,
        )  # fmt: skip
    for invocation in invocations:
        answer = (invocation.response or invocation.error or b"").decode()[:80]
        print(f"invocation {invocation.request_id}: {answer}")
    return [i.request_id for i in invocations]


def summarise_lambda(rows: list[dict[str, str]], request_ids: list[str]) -> None:
    for request_id in request_ids:
        mine = [r for r in rows if r.get("aws_request_id") == request_id]
        print(f"\n--- {len(mine)} entries with aws_request_id={request_id} ---")
        for row in sorted(mine, key=lambda r: r["_time"]):
            line = row["_msg"].splitlines()[0][:60]
            print(f"{row['level']:8} cold_start={row.get('cold_start')}  {line}")


def demo_local() -> int:
    from vlhook._listen import Receiver

    with Receiver(echo=None) as receiver:
        print(f"no VICTORIALOGS_URL: started a local receiver at {receiver.url}\n")
        run_id = uuid.uuid4().hex[:12]
        result = run_app(receiver.url, run_id)
        show_program_output(result)
        rows = receiver.wait_for(12, timeout=10)
        time.sleep(0.3)
        summarise(receiver.entries())
        receiver.clear()
        request_ids = run_lambda(receiver.url, run_id)
        summarise_lambda(receiver.entries(), request_ids)
        lambda_ok = all(
            any(r.get("aws_request_id") == i for r in receiver.entries()) for i in request_ids
        )
    return 0 if len(rows) >= 12 and lambda_ok else 1


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
    request_ids = run_lambda(url, run_id)
    time.sleep(1.5)  # rows become searchable about a second after they are stored
    urllib.request.urlopen(f"{base}/internal/force_flush", timeout=5).read()
    query = urllib.parse.urlencode({"query": f"demo_run:{run_id} aws_request_id:*", "limit": "100"})
    with urllib.request.urlopen(f"{base}/select/logsql/query?{query}", timeout=10) as r:
        lambda_rows = [json.loads(line) for line in r.read().splitlines() if line.strip()]
    summarise_lambda(lambda_rows, request_ids)
    print(f"\nsee them in the UI: {base}/select/vmui/?query=demo_run:{run_id}")
    return 0 if len(rows) >= 12 and lambda_rows else 1


if __name__ == "__main__":
    target = os.environ.get("VICTORIALOGS_URL", "")
    sys.exit(demo_remote(target) if target else demo_local())
