"""What every figure of the bench shares: the plan, the rows, the children and how they run.

A child is a fresh interpreter with a clean environment: nothing from the caller's shell that
changes how Python starts or what vlhook does, the drop-in on PYTHONPATH only where a variant
says so. Its wall time runs from spawn to reap; its CPU is its own rusage (wait4).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

from server import BenchServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DROPIN = os.path.join(ROOT, "sitecustomize")
SRC = os.path.join(ROOT, "src")
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
PY = sys.executable
#: Where a child's arguments name the file it writes its result to (see Context.result).
OUT = "{out}"
T = TypeVar("T")
CHILD_TIMEOUT_S = 180.0  # a hung child is killed: the whole run must stay bounded
#: What a child never inherits. PYTHON*: PYTHONDONTWRITEBYTECODE would recompile the drop-in
#: and vlhook at every start, PYTHONUNBUFFERED would make every print a syscall. The rest is
#: what vlhook reads: a stray TRACEPARENT or AWS_LAMBDA_* would change what it does.
STRIPPED = ("PYTHON", "VICTORIALOGS_", "VLHOOK_", "AWS_LAMBDA_", "_X_AMZN_", "TRACEPARENT",
            "TRACESTATE", "OTEL_")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    quick: bool
    startup_runs: int  # per variant, figures 1, 2 and the fd start-up
    calls: int  # print() / logger.info() calls per child, figure 3
    call_runs: int
    paced_s: float  # seconds of print() at 1,000 lines/s per child
    paced_runs: int
    lines: int  # lines per end-to-end child, figures 4 and 7
    e2e_runs: int
    import_runs: int
    entry_runs: int
    entry_passes: int
    cold_starts: int  # Lambda cold starts per variant
    warm_invocations: int  # Lambda warm invocations per process
    warm_runs: int


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(True, 8, 50_000, 2, 2.0, 2, 200_000, 2, 4, 3, 100, 6, 50, 1)
    return Plan(False, 40, 200_000, 5, 5.0, 4, 200_000, 7, 12, 7, 200, 30, 200, 3)


@dataclass
class Row:
    figure: str
    value: Optional[float]
    baseline: Optional[float]
    unit: str
    ratio: Optional[float] = None
    target: str = "-"
    met: Optional[bool] = None
    note: str = ""


@dataclass
class ChildRun:
    wall_s: float
    cpu_s: float  # user + sys of the child alone, from wait4
    peak_rss_kib: int  # VmHWM when polled, else 0
    stderr: str


@dataclass
class Context:
    plan: Plan
    server: BenchServer
    workdir: str
    rows: list[Row] = field(default_factory=list)
    #: An older checkout's src/ (--baseline-src, --baseline-rev): figures 1, 2, 4 and 6 run
    #: its vlhook too, as the variant "before", interleaved with this code's.
    baseline_src: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: The figures the issue's targets and the chart are about (see targets.py).
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def spool(self) -> str:
        return os.path.join(self.workdir, "spool")

    def env(self, variant: str, **extra: str) -> dict[str, str]:
        """bare: no drop-in; inactive: drop-in, no URL; active: drop-in shipping to the
        bench's server; before: as active, with the older checkout's vlhook (baseline_src)."""
        env = clean_env(self.workdir)
        if variant in ("inactive", "active"):
            env["PYTHONPATH"] = DROPIN
        if variant == "before":
            env["PYTHONPATH"] = os.pathsep.join((dropin_of(self.baseline_src), self.baseline_src))
        if variant in ("active", "before"):
            env["VICTORIALOGS_URL"] = self.server.url
            # A private spool: never replay the user's spool here, never leave ours to them.
            env["VICTORIALOGS_SPOOL_DIR"] = self.spool
        env.update(extra)
        return env

    def run(
        self, args: list[str], env: dict[str, str], rss: bool = False, pipe: bool = False
    ) -> ChildRun:
        # A neutral cwd: `python -c` puts it on sys.path, and the checkout has a
        # `sitecustomize` folder that would import as a namespace package.
        return run_child(args, env, self.workdir, rss=rss, pipe=pipe)

    def result(
        self, args: list[str], env: dict[str, str], name: str, pipe: bool = False
    ) -> dict[str, Any]:
        """Run a child that writes its result as JSON to the file its arguments name at OUT
        (`name`.json in the scratch directory), and read that result."""
        out = os.path.join(self.workdir, f"{name}.json")
        self.run([out if arg == OUT else arg for arg in args], env, pipe=pipe)
        with open(out) as fh:
            result: dict[str, Any] = json.load(fh)
        return result

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.figure}: {fmt(row.value, row.unit)}", flush=True)


def dropin_of(src: str) -> str:
    """The drop-in beside an older checkout's src/, else this checkout's: put after it on the
    path, that src/ is where the drop-in finds vlhook (it appends its own ../src last)."""
    theirs = os.path.join(os.path.dirname(os.path.abspath(src)), "sitecustomize")
    return theirs if os.path.isdir(theirs) else DROPIN


def clean_env(workdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED)}
    # Bytecode goes to the scratch directory, not into the source tree.
    env["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
    return env


class PeakRss:
    """A running child's VmHWM, polled every 5 ms. Not ru_maxrss: Linux carries the spawning
    process's high-water mark into the child across fork and exec, so every child would report
    at least the bench's own size."""

    def __init__(self, pid: int) -> None:
        self.path = f"/proc/{pid}/status"
        self.kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):  # ends when stop() is called after the reap
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                status = fh.read()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith(b"VmHWM:"):
                self.kib = max(self.kib, int(line.split()[1]))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.kib


def run_child(
    args: list[str],
    env: dict[str, str],
    cwd: str,
    *,
    rss: bool = False,
    pipe: bool = False,
    status: int = 0,
) -> ChildRun:
    """Wall time from spawn to reap, and the child's own rusage (not its siblings'). stdout is
    /dev/null, or with `pipe` a pipe that a thread here reads and throws away. Any exit status
    but `status` is an error."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        out = subprocess.PIPE if pipe else subprocess.DEVNULL
        proc = subprocess.Popen([PY, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)  # fmt: skip
        if proc.stdout is not None:
            reader = proc.stdout
            threading.Thread(target=lambda: all(iter(lambda: reader.read(1 << 16), b"")),
                             daemon=True).start()  # fmt: skip
        peak = PeakRss(proc.pid) if rss else None
        watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            _, wait_status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        peak_kib = peak.stop() if peak is not None else 0
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if proc.returncode != status:
        raise RuntimeError(f"child {args[:2]} exited {proc.returncode}: {text[-2000:]}")
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, peak_kib, text)


def importable(ctx: Context, module: str) -> bool:
    try:
        ctx.run(["-c", f"import {module}"], ctx.env("bare"))
    except RuntimeError:
        return False
    return True


def rotated(names: list[str], index: int) -> list[str]:
    """Round `index` of an interleaved series: who goes first rotates, so drift (thermal, page
    cache, other load) hits every variant alike."""
    shift = index % len(names)
    return names[shift:] + names[:shift]


def alternated(
    names: list[str], runs: int, one: Callable[[str, int], T], warmup: int = 0
) -> dict[str, list[T]]:
    """`one(name, index)` for every name in every round, who goes first rotating (see
    rotated); the first `warmup` rounds are run and left out."""
    out: dict[str, list[T]] = {name: [] for name in names}
    for index in range(warmup + runs):
        for name in rotated(names, index):
            result = one(name, index)
            if index >= warmup:
                out[name].append(result)
    return out


def interleaved(
    ctx: Context, variants: dict[str, tuple[list[str], dict[str, str]]], runs: int, warmup: int = 2
) -> dict[str, list[ChildRun]]:
    """Round-robin over the variants. Warm-up rounds fill the .pyc and page caches."""
    return alternated(list(variants), runs, lambda name, _: ctx.run(*variants[name]), warmup)


def walls_ms(runs: dict[str, list[ChildRun]]) -> dict[str, list[float]]:
    """Each variant's wall times, in ms."""
    return {name: [run.wall_s * 1000 for run in done] for name, done in runs.items()}


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """Inter-quartile range relative to the median: how far apart two medians must be to mean
    anything."""
    if len(values) < 4:
        return f"no IQR of {len(values)} runs"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"IQR ±{(q3 - q1) / 2 / median(values) * 100:.1f}%"


def ratio_row(
    figure: str, value: float, base: float, unit: str, limit: Optional[float] = None, note: str = ""
) -> Row:
    ratio = value / base if base else None
    met = None if limit is None or ratio is None else ratio <= limit
    target = "-" if limit is None else f"<= {limit:g}x"
    return Row(figure, value, base, unit, ratio, target, met, note)


def fmt(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return "-"
    size = abs(value)
    whole = isinstance(value, int) or size >= 100
    text = f"{value:.0f}" if whole else f"{value:.{1 if size >= 10 else 2}f}"
    return f"{text} {unit}".strip()
