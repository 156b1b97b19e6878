"""Lambda: what vlhook adds to the caller's latency, and how long each end-of-invocation flush
takes. The real awslambdaric runs N invocations of the sample handler against the tests' local
Runtime API, without vlhook, with it, and with it capturing at the fd level
(VICTORIALOGS_CAPTURE=fd,logging: the flush includes the helper's), receiver in this process,
interleaved runs.

  response latency = response posted - event served     (what the caller waits for)
  after-response   = next /next call - response posted  (billed, not seen: vlhook's flush)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from lambda_runtime import RuntimeApi  # noqa: E402
from vlhook._listen import Receiver  # noqa: E402


def one_run(invocations: int, url: str, capture: str) -> tuple[list[float], list[float]]:
    with RuntimeApi() as api:
        for i in range(invocations):
            api.add({"name": f"n{i}", "threads": 1, "json": True, "order_id": i})
        env = {k: v for k, v in os.environ.items() if not k.startswith("VICTORIALOGS_")}
        env.pop("PYTHONPATH", None)
        env.update(AWS_LAMBDA_RUNTIME_API=api.address, AWS_LAMBDA_FUNCTION_NAME="orders")
        if url:
            env.update(PYTHONPATH=str(REPO / "sitecustomize"), VICTORIALOGS_URL=url)
        if capture:
            env.update(VICTORIALOGS_CAPTURE=capture)
        subprocess.run(
            [sys.executable, "-m", "awslambdaric", "handler.handler"],
            env=env, cwd=str(REPO / "examples" / "lambda"), capture_output=True, timeout=300,
            check=False,
        )  # fmt: skip
        done = api.done
        response = [d.answered - d.served for d in done]
        after = [api.next_calls[i + 1] - d.answered for i, d in enumerate(done)]
    return response[1:], after[1:]  # the cold start is measured apart by the start-up bench


#: name -> (vlhook active, VICTORIALOGS_CAPTURE)
VARIANTS = {"bare": (False, ""), "vlhook": (True, ""), "vlhook fd": (True, "fd,logging")}


def measure(invocations: int = 200, rounds: int = 3) -> dict[str, Any]:
    results: dict[str, dict[str, list[float]]] = {
        name: {"response": [], "after": []} for name in VARIANTS
    }
    with Receiver() as receiver:
        for _ in range(rounds):
            for name, (active, capture) in VARIANTS.items():
                response, after = one_run(invocations, receiver.url if active else "", capture)
                results[name]["response"] += response
                results[name]["after"] += after

    def ms(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if q < 100 else 0.0

    summary: dict[str, Any] = {}
    for name, series in results.items():
        for kind, values in series.items():
            summary[f"{name}.{kind}.p50_ms"] = round(statistics.median(values) * 1000, 3)
            summary[f"{name}.{kind}.p90_ms"] = round(ms(values, 90), 3)
            summary[f"{name}.{kind}.p99_ms"] = round(ms(values, 99), 3)
    return summary


def main() -> None:
    quick = "--quick" in sys.argv
    summary = measure(invocations=50 if quick else 200, rounds=2 if quick else 3)
    print("Lambda (warm invocations of examples/lambda/handler.py, real awslambdaric)")
    print(f"{'':28}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
    for name in VARIANTS:
        for kind, label in (("response", "response latency"), ("after", "response -> next")):
            row = [summary[f"{name}.{kind}.p{q}_ms"] for q in (50, 90, 99)]
            print(f"{name + ' ' + label:28}" + "".join(f"{v:>10.3f}" for v in row))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lambda.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
