"""Figure 9: AWS Lambda, the real awslambdaric against the tests' local Runtime API, running
examples/lambda/handler.py (which prints a line at import), bare and with vlhook, interleaved.

Cold start: a fresh runtime process per run, from spawn to the first invocation's response
(the init phase AWS bills, plus the first invocation: what the first caller waits for). With
vlhook the line printed at import must be stored exactly once per process; just before the
second invocation is served, the bench also asks whether it is stored already (delivered by
the end of the first invocation at the latest). vlhook runs as the base image has it (the
package with the bytecode its install wrote), and as the layer has it: the zip that
lambda_base/build_layer.py builds, unpacked, on a path the process cannot write (Lambda's /opt
is read-only), so only the bytecode the layer carries is there to load.

Warm invocations, N per process (the first, a cold one, left out):
  response latency = response posted - event served     (what the caller waits for)
  after response   = next /next call - response posted  (billed, not seen: vlhook's flush)
also with VICTORIALOGS_CAPTURE=fd,logging (the flush includes the helper's).

Alone: `python bench/lambda_latency.py [--quick]` (the same as `bench/run.py --only lambda`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fd import reap_helper
from harness import PY, ROOT, ChildRun, Context, Row, median, ratio_row, rotated, run_child
from lambda_runtime import RuntimeApi  # tests/, put on sys.path by server.py
from server import Match
from targets import COLD_LIMIT_MS, COLD_MOONSHOT_MS

HANDLER_DIR = Path(__file__).resolve().parents[1] / "examples" / "lambda"
INIT_LINE = "init: loading configuration"  # what the handler module prints at import
EVENT = {"name": "n", "threads": 1, "json": True, "order_id": 1}
#: name -> (vlhook active, VICTORIALOGS_CAPTURE)
WARM_VARIANTS = {"bare": (False, ""), "vlhook": (True, ""), "vlhook fd": (True, "fd,logging")}


def runtime(ctx: Context, api: RuntimeApi, active: bool, function: str, capture: str = "",
            layer: str = "") -> ChildRun:  # fmt: skip
    """The runtime until the Runtime API runs out of events (it then exits with status 1).
    With `layer` (see unpacked_layer), vlhook comes from that unpacked layer."""
    extra = {"AWS_LAMBDA_RUNTIME_API": api.address, "AWS_LAMBDA_FUNCTION_NAME": function}
    if capture:
        extra["VICTORIALOGS_CAPTURE"] = capture
    env = ctx.env("active" if active else "bare", **extra)
    handlers = str(HANDLER_DIR)
    if layer:
        # As vlhook-wrapper puts it on the path; nothing written (/opt is read-only), so no
        # cache prefix either: each module loads from the bytecode beside it or is compiled.
        env["PYTHONPATH"] = os.pathsep.join((os.path.join(layer, "python", "vlhook", "_dropin"),
                                             os.path.join(layer, "python")))  # fmt: skip
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        del env["PYTHONPYCACHEPREFIX"]
        handlers = os.path.join(layer, "task")
    # cwd: `python -m` puts it on sys.path, where the handler module is.
    return run_child(["-m", "awslambdaric", "handler.handler"], env, handlers, status=1)


def unpacked_layer(ctx: Context) -> str:
    """The layer as lambda_base/build_layer.py builds it for this interpreter, unpacked under
    the scratch directory, with a compiled copy of the handler beside it (task/): the function's
    own directory is read-only on Lambda too, and the bare runs load the handler compiled."""
    root = os.path.join(ctx.workdir, "layer")
    builder = os.path.join(ROOT, "lambda_base", "build_layer.py")
    subprocess.run([PY, builder, "--local", "--out", root], check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    (archive,) = (name for name in os.listdir(root) if name.endswith(".zip"))
    with zipfile.ZipFile(os.path.join(root, archive)) as layer:
        layer.extractall(root)
    task = os.path.join(root, "task")
    shutil.copytree(HANDLER_DIR, task, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([PY, "-m", "compileall", "-q", task], check=True)
    return root


def init_line(function: str) -> tuple[str, Match]:
    """The handler's import-time line of one process (its function name is its own)."""
    logsql = f'container_name:="{function}" _msg:="{INIT_LINE}"'
    return logsql, lambda row: (row.get("container_name"), row.get("_msg")) == (function, INIT_LINE)


@dataclass(frozen=True)
class ColdStart:
    first_ms: float  # from spawn to the first response
    flush_ms: float  # from the first response to the next /next: the first invocation's flush
    function: str  # the function's name, its own in every process
    stored_early: bool  # the init line stored before the second invocation was served


def cold_start(ctx: Context, active: bool, layer: str = "") -> ColdStart:
    function = f"orders-{uuid.uuid4().hex[:12]}"
    seen: list[int] = []
    with RuntimeApi() as api:
        api.add(EVENT)
        api.add(EVENT)
        if active:
            api.before_serving[1] = lambda: seen.append(ctx.server.count(*init_line(function)))
        spawned = time.monotonic()
        runtime(ctx, api, active, function, layer=layer)
        first = api.done[0]
    if first.response is None:
        raise RuntimeError(f"the first invocation failed: {first.error!r}")
    return ColdStart((first.answered - spawned) * 1000, (api.next_calls[1] - first.answered) * 1000,
                     function, bool(seen and seen[0] >= 1))  # fmt: skip


def cold_flush(ctx: Context, flushes: dict[str, list[float]]) -> None:
    """The first invocation's flush, after its response and before the next /next: billed,
    not seen by the caller, and paid once per environment (the sender's pipeline loads
    there, and orjson with the first entry that needs it)."""
    for name, values in flushes.items():
        ctx.samples[f"lambda.cold_flush.{name}.ms"] = values
    bare, active = median(flushes["bare"]), median(flushes["vlhook"])
    ctx.summary["lambda_cold_flush_added_ms"] = active - bare
    for name, suffix in (("vlhook", ""), ("layer", ", the layer (read-only)")):
        value = median(flushes[name])
        ctx.add(ratio_row(f"9 Lambda cold start, the first invocation's response -> next (flush)"
                          f"{suffix}", value, bare, "ms", note=f"added {value - bare:+.1f} ms, "
                          f"billed once per environment; median of {len(flushes['bare'])} "
                          "processes each"))  # fmt: skip


def fig_cold_start(ctx: Context) -> None:
    firsts: dict[str, list[float]] = {"bare": [], "vlhook": [], "layer": []}
    flushes: dict[str, list[float]] = {"bare": [], "vlhook": [], "layer": []}
    functions: list[str] = []
    early = 0
    layer = unpacked_layer(ctx)
    for index in range(2 + ctx.plan.cold_starts):  # two warm-up rounds, whose lines count too
        for name in rotated(list(firsts), index):
            run = cold_start(ctx, name != "bare", layer if name == "layer" else "")
            if name != "bare":
                functions.append(run.function)
                early += run.stored_early
            if index >= 2:
                firsts[name].append(run.first_ms)
                flushes[name].append(run.flush_ms)
    ctx.server.stored(*init_line(functions[-1]), 1)
    once = sum(1 for function in functions if ctx.server.count(*init_line(function)) == 1)
    for name, values in firsts.items():
        ctx.samples[f"lambda.cold.{name}.ms"] = values
    bare, active = median(firsts["bare"]), median(firsts["vlhook"])
    added = active - bare
    ctx.summary["lambda_cold"] = {"bare_ms": bare, "active_ms": active, "added_ms": added,
                                  "ratio": active / bare, "once": once, "early": early,
                                  "processes": len(functions)}  # fmt: skip
    runs = len(firsts["bare"])
    ctx.add(Row("9 Lambda cold start, spawn to first response", active, bare, "ms", active / bare,
                f"+{COLD_LIMIT_MS:g} ms", added <= COLD_LIMIT_MS,
                f"added {added:+.1f} ms (moonshot +{COLD_MOONSHOT_MS:g} ms); median of {runs} "
                "processes each"))  # fmt: skip
    layered = median(firsts["layer"])
    ctx.summary["lambda_cold"]["layer_ms"] = layered
    ctx.add(ratio_row("9 Lambda cold start, spawn to first response, the layer (read-only)",
                      layered, bare, "ms", note=f"added {layered - bare:+.1f} ms; vlhook from the "
                      "unpacked layer zip, nothing written"))  # fmt: skip
    cold_flush(ctx, flushes)
    for count, what in ((once, "stored exactly once"),
                        (early, "stored before the second invocation was served")):  # fmt: skip
        ctx.add(Row(f"9 Lambda init-phase line {what}", count, len(functions), "processes",
                    count / len(functions), "= all" if what.endswith("once") else "-",
                    count == len(functions) if what.endswith("once") else None))  # fmt: skip


def warm_run(ctx: Context, active: bool, capture: str) -> tuple[list[float], list[float]]:
    with RuntimeApi() as api:
        for i in range(ctx.plan.warm_invocations):
            api.add({**EVENT, "name": f"n{i}", "order_id": i})
        runtime(ctx, api, active, "orders", capture)
        if capture:
            reap_helper(ctx)
        done = api.done
        response = [d.answered - d.served for d in done]
        after = [api.next_calls[i + 1] - d.answered for i, d in enumerate(done)]
    return response[1:], after[1:]  # the cold one is the cold-start figure's


def fig_warm(ctx: Context) -> None:
    results: dict[str, dict[str, list[float]]] = {
        name: {"response": [], "after": []} for name in WARM_VARIANTS
    }
    for index in range(ctx.plan.warm_runs):
        for name in rotated(list(WARM_VARIANTS), index):
            response, after = warm_run(ctx, *WARM_VARIANTS[name])
            results[name]["response"] += response
            results[name]["after"] += after
    for kind, label in (("response", "response latency"), ("after", "response -> next (flush)")):
        for q in (50, 99):
            base = percentile(results["bare"][kind], q)
            for name in ("vlhook", "vlhook fd"):
                value = percentile(results[name][kind], q)
                note = f"{len(results[name][kind])} warm invocations; added {value - base:+.2f} ms"
                ctx.add(ratio_row(f"9 Lambda warm, {label} p{q}, {name} vs bare", value, base,
                                  "ms", note=note))  # fmt: skip


def percentile(values: list[float], q: int) -> float:
    """In ms, from seconds."""
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def fig_lambda(ctx: Context) -> None:
    fig_cold_start(ctx)
    fig_warm(ctx)


if __name__ == "__main__":
    import run

    sys.exit(run.main(["--only", "lambda", *sys.argv[1:]]))
