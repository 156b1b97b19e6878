"""`make demo`: run examples/app.py, then the Lambda handler in examples/lambda/ under the real
awslambdaric and a local Runtime API, under vlhook, and show what arrived.

With VICTORIALOGS_URL set, the entries go to that server. Without it, the demo starts a real
VictoriaLogs on a free loopback port (the pinned release that tests/victorialogs.py finds or
builds) and stops it at the end, unless `--keep` (or VLHOOK_DEMO_KEEP=1) leaves it running to be
explored in its web UI. Either way the demo reads the entries back with a LogsQL query. Only
when no VictoriaLogs can be had does a local receiver (`vlhook listen`, in this process) stand in,
and the demo says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # victorialogs.py, lambda_runtime.py
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


def demo_receiver(reason: str) -> int:
    from vlhook._listen import Receiver

    with Receiver(echo=None) as receiver:
        print(f"no VictoriaLogs to be had ({reason});")
        print(f"falling back to vlhook's local receiver at {receiver.url} (not a database)\n")
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


def stored(base: str, logsql: str, count: int) -> list[dict[str, str]]:
    """Rows matching `logsql`, once at least `count` are searchable (bounded wait)."""
    query = urllib.parse.urlencode({"query": f"{logsql} | sort by (_time)", "limit": "1000"})
    rows: list[dict[str, str]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        urllib.request.urlopen(f"{base}/internal/force_flush", timeout=5).read()
        with urllib.request.urlopen(f"{base}/select/logsql/query?{query}", timeout=10) as r:
            rows = [json.loads(line) for line in r.read().splitlines() if line.strip()]
        if len(rows) >= count:
            break
        time.sleep(0.3)
    return rows


def demo_server(url: str) -> int:
    run_id = uuid.uuid4().hex[:12]
    show_program_output(run_app(url, run_id))
    base = url.split(",", maxsplit=1)[0].rstrip("/")
    rows = stored(base, f"demo_run:{run_id}", 12)
    summarise(rows)
    request_ids = run_lambda(url, run_id)
    lambda_rows = stored(base, f"demo_run:{run_id} aws_request_id:*", len(request_ids))
    summarise_lambda(lambda_rows, request_ids)
    print(f"\nread back from VictoriaLogs with the LogsQL query:  demo_run:{run_id}")
    print(f"web UI: {base}/select/vmui/   (paste the query there)")
    return 0 if len(rows) >= 12 and lambda_rows else 1


def demo_local(keep: bool) -> int:
    import victorialogs

    try:
        binary = victorialogs.binary()
    except victorialogs.Unavailable as exc:
        return demo_receiver(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="vlhook-demo-"))
    server = victorialogs.VictoriaLogs(binary, workdir, outlive=keep).start()
    assert server.proc is not None
    print(f"started VictoriaLogs {victorialogs.VERSION} ({binary}) at {server.url}, "
          f"pid {server.proc.pid}, data in {workdir}\n")  # fmt: skip
    try:
        return demo_server(server.url)
    finally:
        if keep:
            print(f"\nVictoriaLogs keeps running at {server.url}: stop it with  "
                  f"kill {server.proc.pid}")  # fmt: skip
        else:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            print("\nstopped VictoriaLogs (--keep or VLHOOK_DEMO_KEEP=1 leaves it running)")


if __name__ == "__main__":
    target = os.environ.get("VICTORIALOGS_URL", "")
    keep = "--keep" in sys.argv[1:] or os.environ.get("VLHOOK_DEMO_KEEP") == "1"
    sys.exit(demo_server(target) if target else demo_local(keep))
