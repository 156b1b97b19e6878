"""vlhook benchmarks: `make bench`, or `PYTHONPATH=src .venv/bin/python bench/run.py [--quick]`.

Every figure is compared with a baseline measured in the same run (a ratio), never with an
absolute number: machines differ, ratios travel. Children run with the drop-in on PYTHONPATH,
exactly as users run it, shipping to a real VictoriaLogs on loopback (server.py). Prints every
figure and the targets' table, writes bench/results/latest.json and targets.md, and draws the
chart: docs/performance.svg after a full run, bench/results/performance.svg otherwise.
`--baseline-rev REV` (`make bench BASELINE=REV`) runs that revision's vlhook as well, interleaved
with this code's, for the before/after of a change: figures 1, 2, 4 and 6 then add rows "this
code vs before".

  1 start-up             startup.py         5 import costs        startup.py
  2 one printed line     startup.py         6 making entries      entries.py
  3 the program's calls  callers.py         7 fd-level capture    fd.py
  4 lines end to end     e2e.py             8 trace context       callers.py
                                            9 AWS Lambda          lambda_latency.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable, Optional

import chart
import targets
from callers import (
    fig_calls,
    fig_capture,
    fig_one_cpu,
    fig_paced,
    fig_paced_same,
    fig_trace,
)
from e2e import fig_end_to_end
from entries import fig_entries
from fd import fig_fd
from harness import RESULTS_DIR, ROOT, Context, Row, fmt, make_plan
from lambda_latency import fig_lambda
from server import bench_server, word
from startup import IMPORTS, OPTIONAL_IMPORTS, fig_imports, fig_one_line, fig_startup

DOC_CHART = os.path.join(ROOT, "docs", "performance.svg")


def fig_callers(ctx: Context) -> None:
    fig_calls(ctx)
    fig_one_cpu(ctx)
    fig_paced(ctx)
    fig_paced_same(ctx)
    fig_capture(ctx)


FIGURES: dict[str, Callable[[Context], None]] = {
    "startup": fig_startup,
    "one_line": fig_one_line,
    "calls": fig_callers,
    "end_to_end": fig_end_to_end,
    "imports": fig_imports,
    "entries": fig_entries,
    "fd": fig_fd,
    "trace": fig_trace,
    "lambda": fig_lambda,
}


def preflight(ctx: Context) -> None:
    """Fill the bytecode cache, then ship one line: a broken server or drop-in would make
    every figure nonsense."""
    warm = (
        f"for m in {IMPORTS + OPTIONAL_IMPORTS!r}:\n try: __import__(m)\n except ImportError: pass"
    )
    ctx.run(["-c", warm], ctx.env("bare"))
    tag = "preflight" + os.urandom(6).hex()
    run = ctx.run(["-c", f"import logging; print('bench {tag}')"], ctx.env("active"))
    if ctx.server.stored(*word(tag), 1) != 1:
        raise SystemExit(f"bench: the preflight line was not stored once:\n{run.stderr}")


# -- output -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "met")
    body = [
        (
            row.figure,
            fmt(row.value, row.unit),
            fmt(row.baseline, row.unit),
            "-" if row.ratio is None else f"{row.ratio:.3f}x",
            row.target,
            "-" if row.met is None else ("yes" if row.met else "NO"),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def notes(ctx: Context) -> str:
    lines = [f"  {row.figure}: {row.note}" for row in ctx.rows if row.note]
    return "\n".join(["notes:", *lines, *(f"  {note}" for note in ctx.notes)])


def load_average() -> str:
    # Other jobs on a 2-core machine move every figure: the run says how busy it was.
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "unknown"


def git_head() -> str:
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)  # fmt: skip
    except OSError:
        return ""
    return out.stdout.strip()


def metadata(ctx: Context, seconds: float, load_start: str) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": f"{load_start} at start, {load_average()} at end",
        "server": ctx.server.description,
        "quick": ctx.plan.quick,
        "plan": asdict(ctx.plan),
        "git_head": git_head(),
        "duration_s": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_results(ctx: Context, meta: dict[str, Any], verdicts: list[targets.Verdict]
                  ) -> str:  # fmt: skip
    """latest.json, targets.md and the chart; returns where the chart went."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    data = {"meta": meta, "summary": ctx.summary, "targets": [asdict(v) for v in verdicts],
            "rows": [asdict(row) for row in ctx.rows], "notes": ctx.notes,
            "samples": ctx.samples}  # fmt: skip
    with open(os.path.join(RESULTS_DIR, "latest.json"), "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(RESULTS_DIR, "targets.md"), "w") as fh:
        fh.write(targets.markdown(verdicts) + "\n")
    # Only a full run of every figure replaces the chart the docs show.
    whole = not ctx.plan.quick and set(FIGURES) <= set(meta["figures"])
    out = DOC_CHART if whole else os.path.join(RESULTS_DIR, "performance.svg")
    with open(out, "w") as fh:
        fh.write(chart.render(ctx.summary, meta))
    return out


def checkout(rev: str, workdir: str) -> str:
    """The repository at `rev`, unpacked with `git archive` into the bench's own directory:
    its src/ (beside its drop-in)."""
    into = os.path.join(workdir, "before")
    os.makedirs(into)
    archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", rev],
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return os.path.join(into, "src")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~3 minutes)")
    parser.add_argument("--only", choices=sorted(FIGURES), action="append",
                        help="run this figure (repeatable)")  # fmt: skip
    before = parser.add_mutually_exclusive_group()
    before.add_argument(
        "--baseline-src",
        default="",
        help="src/ of an older checkout: figures 1, 2, 4 and 6 run its vlhook too, interleaved",
    )
    before.add_argument(
        "--baseline-rev",
        default="",
        help="as --baseline-src, for a git revision of this repository",
    )
    args = parser.parse_args(argv)
    started, load_start = time.monotonic(), load_average()
    chosen = args.only or list(FIGURES)
    with tempfile.TemporaryDirectory(prefix="vlhook-bench-") as workdir, \
            bench_server(workdir) as server:  # fmt: skip
        print(f"server: {server.description}", flush=True)
        baseline = checkout(args.baseline_rev, workdir) if args.baseline_rev else args.baseline_src
        ctx = Context(make_plan(args.quick), server, workdir, baseline_src=baseline)
        if baseline:
            ctx.notes.append(f"before: {args.baseline_rev or baseline}")
        if not server.real:
            ctx.notes.append(f"NOT a real VictoriaLogs: {server.description}")
        preflight(ctx)
        for name in chosen:
            print(f"{name} ...", flush=True)
            FIGURES[name](ctx)
        meta = metadata(ctx, time.monotonic() - started, load_start)
    meta["figures"] = chosen
    verdicts = targets.evaluate(ctx.summary)
    print(f"\n{table(ctx.rows)}\n\n{notes(ctx)}\n\n{targets.markdown(verdicts)}\n")
    drawn = write_results(ctx, meta, verdicts)
    print(f"{len(ctx.rows)} figures in {meta['duration_s']:.0f} s on {meta['cpus']} cores, load "
          f"{meta['load_average']}; results in {os.path.relpath(RESULTS_DIR)}/, chart: "
          f"{os.path.relpath(drawn)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
