"""vlhook benchmarks: `make bench`, or `PYTHONPATH=src .venv/bin/python bench/run.py [--quick]`.

Every figure is compared with a baseline measured in the same run (a ratio), never with an
absolute number: machines differ, ratios travel. Children run with the drop-in on PYTHONPATH,
exactly as users run it, against an in-process Receiver on loopback. Prints a table and writes
bench/results/latest.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from vlhook._listen import Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DROPIN = os.path.join(ROOT, "sitecustomize")
SRC = os.path.join(ROOT, "src")
RESULTS = os.path.join(ROOT, "bench", "results", "latest.json")
PY = sys.executable
CHILD_TIMEOUT_S = 120.0  # a hung child is killed: the whole run must stay bounded
SETTLE_LIMIT_S = 60.0  # the longest we wait for rows after the child has exited
REAL_URL_ENV = "VLHOOK_BENCH_VICTORIALOGS_URL"
IMPORTS = ("orjson", "json", "http.client", "logging", "threading", "typing", "dataclasses", "re")
OPTIONAL_IMPORTS = ("requests", "urllib3", "wrapt", "pythonjsonlogger")

# Figure 3's child: times only the call loop, then leaves with os._exit so the exit flush of
# what it captured (a figure-4 matter) does not slow the run down.
CALLS_CHILD = """
import json, os, sys, time
n, out, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
line = "x" * 100
if kind == "print":
    def call():
        print(line)
else:
    import logging
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log = logging.getLogger("b")
    def call():
        log.info("msg %s", 1)
# Warm up, then let the sender thread finish importing its pipeline: steady state is measured.
for _ in range(1000):
    call()
time.sleep(0.3)
# Wall time is what the caller waits, sender thread's share of the GIL included; thread CPU
# is the caller's own work (the tee, the capture, the buffer append). The loops are written
# out rather than calling call(): an extra Python call would dilute the ratio.
if kind == "print":
    start, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        print(line)
    end, cpu_end = time.perf_counter_ns(), time.thread_time_ns()
else:
    start, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(n):
        log.info("msg %s", 1)
    end, cpu_end = time.perf_counter_ns(), time.thread_time_ns()
sys.stdout.flush()
active = getattr(sys, "_vlhook_active", None)
dropped = sum(active.stats.dropped.values()) if active is not None else 0
with open(out, "w") as fh:
    json.dump({"ns": end - start, "thread_ns": cpu_end - cpu, "dropped": dropped}, fh)
os._exit(0)
"""

# Figure 7's child: print()'s own-thread CPU in the caller with trace context to read. `plain`:
# OpenTelemetry not imported; `otel`: imported (the SDK's provider, as a traced program has it),
# timed outside and inside a span in alternating rounds, so that both see the same process
# state. `alone`: the sender sleeps while a round is timed and is flushed between rounds (the
# caller's own work); `shared`: the sender runs as usual, taking its share of the GIL. Writes
# {"outside": ns, "inside": ns} per print: the lowest round of each.
TRACE_CHILD = """
import json, os, sys, time
import vlhook
n, rounds, out, kind, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], \\
    sys.argv[5]
line = "x" * 100
if kind == "otel":
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("bench")
def block(count):
    cpu = time.thread_time_ns()
    for _ in range(count):
        print(line)
    spent = (time.thread_time_ns() - cpu) / count
    if mode == "alone":
        vlhook.flush(10)
    return spent
block(1000)
time.sleep(0.3)
lowest = {"outside": float("inf"), "inside": float("inf")}
for _ in range(rounds):
    lowest["outside"] = min(lowest["outside"], block(n // rounds))
    if kind == "otel":
        with tracer.start_as_current_span("bench"):
            lowest["inside"] = min(lowest["inside"], block(n // rounds))
with open(out, "w") as fh:
    json.dump(lowest if kind == "otel" else {"outside": lowest["outside"]}, fh)
os._exit(0)
"""

# Figure 4's child: 100-character lines (plus the newline), numbered so each row is unique.
# It notes what vlhook shed (buffer full) by the end of the script: vlhook's own report of it
# is an entry that is lost with the rest when the exit deadline passes.
LINES_CHILD = """
import json, sys
pad = "x" * 92
for i in range(int(sys.argv[1])):
    print(f"{i:07d} {pad}")
active = getattr(sys, "_vlhook_active", None)
with open(sys.argv[2], "w") as fh:
    json.dump(dict(active.stats.dropped) if active is not None else {}, fh)
"""


# Figure 7's alternative to the helper process: a thread in the program reads the pipe that
# replaced fd 1 and writes it to the real fd (forwarding only: shipping would add its CPU, on
# the same GIL). As a prefix to figure 3's child, or to a child that writes and is killed.
READER_THREAD = """
import os, threading
_r, _w = os.pipe()
_original = os.dup(1)
os.dup2(_w, 1)
os.close(_w)
def _forward():
    while True:
        data = os.read(_r, 1 << 20)
        if not data:
            return
        os.write(_original, data)
threading.Thread(target=_forward, daemon=True).start()
"""

# Figure 7: writes lines to fd 1 as fast as it can, then is killed.
KILLED_CHILD = """
import os, signal, sys
for i in range(int(sys.argv[1])):
    os.write(1, b"line %07d\\n" % i)
os.kill(os.getpid(), signal.SIGKILL)
"""


# Figure 6's child: the sender's cost of making entries (level, fields, redaction), in-process,
# for a group of 256 captures of one kind, with the vlhook found on its PYTHONPATH (this
# checkout's, or an older one given with --baseline-src). Prints ns per entry for each kind.
ENTRIES_CHILD = """
import json, logging, statistics, sys, time
from vlhook._config import load
from vlhook._entry import EntryBuilder
from vlhook._stats import Stats
try:  # the typed captures; an older checkout (--baseline-src) had positional tuples
    from vlhook._captures import line as make_line, record as make_record
except ImportError:
    make_line = make_record = None
passes, env = int(sys.argv[1]), json.loads(sys.argv[2])
builder = EntryBuilder(load({"VICTORIALOGS_URL": "http://127.0.0.1:9", **env}), Stats())
now = time.time_ns()
def lines(texts, context=None):
    if make_line is not None:
        return [make_line(0, text, now, context) for text in texts]
    return [(0, text, now, context and context[0], None, "") for text in texts]
def nested(i):
    return json.dumps({"msg": f"request {i}", "level": "info",
                       "user": {"id": i, "name": "bob", "roles": ["admin", "dev"]},
                       "http": {"method": "GET", "path": "/api/items", "status": 200,
                                "headers": {"accept": "*/*", "user-agent": "curl/8.5"}}})
def flat(i):
    return json.dumps({"message": f"request {i}", "level": "info", "logger": "app.http",
                       "request_id": f"r-{i:08d}", "method": "GET", "status": 200, "ms": 1.5})
log = logging.getLogger("bench")
def record(i, extra):
    rec = log.makeRecord("bench", logging.INFO, "app.py", 1, "order %s", (i,), None, extra=extra)
    if make_record is not None:
        return make_record(rec, now, 0, None, logging.INFO, rec.getMessage(), [])
    return (2, rec, now, 0, None, None, logging.INFO, rec.getMessage(), None)
def order(i):
    return {"user_id": 42, "duration_ms": 12.5,
            "order": {"id": f"o-{i}", "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}}
TRACE = ({"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
          "trace_flags": "01"},)
groups = {
    "plain": lines([f"{i:07d} " + "x" * 92 for i in range(256)]),
    "traced": lines([f"{i:07d} " + "x" * 92 for i in range(256)], TRACE),
    "flat": lines([flat(i) for i in range(256)]),
    "json": lines([nested(i) for i in range(256)]),
    "record": [record(i, None) for i in range(256)],
    "records": [record(i, order(i)) for i in range(256)],
}
def one_pass(kind, group):
    start = time.perf_counter_ns()
    if kind.startswith("record"):
        for item in group:
            builder.from_item(item)
    else:
        builder.from_lines(group)
    return (time.perf_counter_ns() - start) / len(group)
out = {}
for kind, group in groups.items():
    for _ in range(20):
        one_pass(kind, group)
    out[kind] = statistics.median(one_pass(kind, group) for _ in range(passes))
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Plan:
    quick: bool
    startup_runs: int
    oneline_runs: int
    calls: int
    call_runs: int
    lines: int
    e2e_runs: int
    import_runs: int
    entry_runs: int = 9
    entry_passes: int = 200


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan(True, 10, 6, 50_000, 2, 50_000, 1, 5, 3, 100)
    return Plan(False, 40, 20, 200_000, 5, 200_000, 3, 15)


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
    receiver: Receiver
    workdir: str
    rows: list[Row] = field(default_factory=list)
    baseline_src: str = ""  # an older checkout's src/, for figure 6's before/after
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def spool(self) -> str:
        return os.path.join(self.workdir, "spool")

    def env(self, variant: str, url: str = "", **extra: str) -> dict[str, str]:
        """bare: no drop-in; inactive: drop-in, no URL; active: drop-in shipping to `url`."""
        # No PYTHON* from the caller's shell: PYTHONDONTWRITEBYTECODE would recompile the
        # drop-in and vlhook at every start, PYTHONUNBUFFERED makes every print a syscall.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "VICTORIALOGS_", "VLHOOK_"))}  # fmt: skip
        # Bytecode goes to the scratch directory, not into the source tree.
        env["PYTHONPYCACHEPREFIX"] = os.path.join(self.workdir, "pycache")
        if variant in ("inactive", "active"):
            env["PYTHONPATH"] = DROPIN
        if variant == "active":
            env["VICTORIALOGS_URL"] = url or self.receiver.url
            # A private spool: never replay the user's spool here, never leave ours to them.
            env["VICTORIALOGS_SPOOL_DIR"] = self.spool
        env.update(extra)
        return env

    def run(
        self, args: list[str], env: dict[str, str], rss: bool = False, pipe: bool = False
    ) -> ChildRun:
        # A neutral cwd: `python -c` puts it on sys.path, and the checkout has a
        # `sitecustomize` folder that would import as a namespace package.
        return run_child(args, env, self.workdir, rss, pipe)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.figure}: {fmt(row.value, row.unit)}", flush=True)


# -- running children -------------------------------------------------------------------------


class PeakRss:
    """A running child's VmHWM, polled every 5 ms. Not ru_maxrss: Linux carries the spawning
    process's high-water mark into the child across fork and exec, and this parent holds
    hundreds of MB of receiver rows, so every child would report the parent's size."""

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
    args: list[str], env: dict[str, str], cwd: str, rss: bool = False, pipe: bool = False
) -> ChildRun:
    """Wall time from spawn to reap, and the child's own rusage (not its siblings'). stdout is
    /dev/null, or with `pipe` a pipe that a thread here reads and throws away."""
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
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        peak_kib = peak.stop() if peak is not None else 0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} exited {proc.returncode}: {text[-2000:]}")
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, peak_kib, text)


def interleaved(
    ctx: Context, variants: dict[str, tuple[list[str], dict[str, str]]], runs: int, warmup: int = 2
) -> dict[str, list[ChildRun]]:
    """Round-robin over the variants, rotating who goes first, so drift (thermal, page cache,
    other load) hits every variant alike. Warm-up rounds fill the .pyc and page caches."""
    names = list(variants)
    out: dict[str, list[ChildRun]] = {name: [] for name in names}
    for rnd in range(warmup + runs):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            args, env = variants[name]
            result = ctx.run(args, env)
            if rnd >= warmup:
                out[name].append(result)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """Inter-quartile range relative to the median: how far apart two medians must be to mean
    anything."""
    if len(values) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"IQR ±{(q3 - q1) / 2 / median(values) * 100:.1f}%"


def ratio_row(
    figure: str, value: float, base: float, unit: str, limit: Optional[float] = None, note: str = ""
) -> Row:
    ratio = value / base if base else None
    met = None if limit is None or ratio is None else ratio <= limit
    target = "-" if limit is None else f"<= {limit:g}x"
    return Row(figure, value, base, unit, ratio, target, met, note)


# -- figure 1: start-up ---------------------------------------------------------------------


def fig_startup(ctx: Context) -> None:
    args = ["-c", "pass"]
    runs = interleaved(
        ctx,
        {name: (args, ctx.env(name)) for name in ("bare", "inactive", "active")},
        ctx.plan.startup_runs,
    )
    walls = {name: [r.wall_s * 1000 for r in rs] for name, rs in runs.items()}
    for name, values in walls.items():
        ctx.samples[f"startup.{name}.ms"] = values
    bare = median(walls["bare"])
    ctx.add(Row("1 start-up bare (python -c pass)", bare, None, "ms", note=spread(walls["bare"])))
    for name, limit in (("inactive", 1.02), ("active", 1.15)):
        value = median(walls[name])
        row = ratio_row(f"1 start-up {name}", value, bare, "ms", limit, spread(walls[name]))
        ctx.add(row)


# -- figure 2: a one-line script --------------------------------------------------------------


def fig_one_line(ctx: Context) -> None:
    args = ["-c", "print('hello from the vlhook bench')"]
    ctx.receiver.clear()
    runs = interleaved(
        ctx, {name: (args, ctx.env(name)) for name in ("bare", "active")}, ctx.plan.oneline_runs
    )
    expected = ctx.plan.oneline_runs + 2  # the warm-up rounds ship too
    stored = len(ctx.receiver.wait_for(expected, timeout=10))
    note = f"{stored}/{expected} lines stored"
    for label, unit, cpu in (("wall", "ms", False), ("CPU user+sys", "ms", True)):
        values = {
            name: [(r.cpu_s if cpu else r.wall_s) * 1000 for r in rs] for name, rs in runs.items()
        }
        ctx.samples[f"one_line.{label}.bare.ms"] = values["bare"]
        ctx.samples[f"one_line.{label}.active.ms"] = values["active"]
        bare, active = median(values["bare"]), median(values["active"])
        ctx.add(ratio_row(f"2 print 1 line + exit, {label}", active, bare, unit, note=note))


# -- figure 3: caller cost per call -----------------------------------------------------------


def call_cost(ctx: Context, kind: str, variant: str, index: int) -> dict[str, float]:
    out = os.path.join(ctx.workdir, f"calls-{kind}-{variant}-{index}.json")
    ctx.run(["-c", CALLS_CHILD, str(ctx.plan.calls), out, kind], ctx.env(variant))
    with open(out) as fh:
        result: dict[str, float] = json.load(fh)
    return result


def fig_calls(ctx: Context) -> None:
    calls = ctx.plan.calls
    for kind, label, limit in (("print", "print(100 chars)", 2.0),
                               ("logging", 'logger.info("msg %s", 1)', None)):  # fmt: skip
        results: dict[str, list[dict[str, float]]] = {"bare": [], "active": []}
        for index in range(ctx.plan.call_runs):
            for variant in ("bare", "active") if index % 2 else ("active", "bare"):
                results[variant].append(call_cost(ctx, kind, variant, index))
        shed = max(int(r["dropped"]) for r in results["active"])
        for key, what in (("ns", "wall"), ("thread_ns", "own-thread CPU")):
            per_call = {v: [r[key] / calls for r in rs] for v, rs in results.items()}
            ctx.samples[f"calls.{kind}.{key}"] = [*per_call["bare"], *per_call["active"]]
            bare, active = median(per_call["bare"]), median(per_call["active"])
            parts = [f"N={calls}", spread(per_call["active"]), f"active shed {shed} captures"]
            note = "; ".join(part for part in parts if part)
            target = limit if key == "ns" else None  # the target is on what the caller waits
            ctx.add(ratio_row(f"3 {label}, caller {what}", active, bare, "ns/call", target, note))


# -- figure 7: trace context ------------------------------------------------------------------

TRACE_ADDED_LIMIT_NS = 300  # what reading the current span may add to one print()
#: The sender wakes at no line count and no interval while a round is timed.
TRACE_SENDER_ASLEEP = {"VICTORIALOGS_BATCH_LINES": "1000000",
                       "VICTORIALOGS_FLUSH_INTERVAL_MS": "3600000"}  # fmt: skip


def fig_trace(ctx: Context) -> None:
    """print()'s own-thread CPU in the caller, vlhook active, with OpenTelemetry imported
    (outside and inside a span) against the same print in a process that does not import it,
    interleaved run by run. `caller alone` is the caller's own work (the target); `sender
    running` adds what the sender's work on each entry costs the caller through the GIL and
    the caches (the sender's own cost per entry is figure 4's and 6's). Each figure is the
    lowest of the runs: on a shared machine a busy moment only ever adds, and the difference
    sought is a few tens of ns in a few µs."""
    if not importable(ctx, "opentelemetry.sdk.trace"):
        ctx.notes.append("7: opentelemetry-sdk is not importable here: skipped")
        return
    calls, rounds = ctx.plan.calls // 2, 50
    modes = {"alone": ("caller alone", TRACE_SENDER_ASLEEP), "shared": ("sender running", {})}
    for mode, (what, extra) in modes.items():
        results: dict[str, list[dict[str, float]]] = {"plain": [], "otel": []}
        for index in range(ctx.plan.call_runs * 2):
            for kind in ("plain", "otel") if index % 2 else ("otel", "plain"):
                out = os.path.join(ctx.workdir, f"trace-{mode}-{kind}-{index}.json")
                args = ["-c", TRACE_CHILD, str(calls), str(rounds), out, kind, mode]
                ctx.run(args, ctx.env("active", PYTHONPATH=f"{DROPIN}:{SRC}", **extra))
                with open(out) as fh:
                    results[kind].append(json.load(fh))
        trace_rows(ctx, mode, what, results, calls)


def trace_rows(
    ctx: Context, mode: str, what: str, results: dict[str, list[dict[str, float]]], calls: int
) -> None:
    plain = [run["outside"] for run in results["plain"]]
    base = min(plain)
    ctx.samples[f"trace.{mode}.plain.ns"] = plain
    for where, label in (("outside", "outside any span"), ("inside", "inside a span")):
        values = [run[where] for run in results["otel"]]
        ctx.samples[f"trace.{mode}.otel.{where}.ns"] = values
        value = min(values)
        added = value - base
        note = (f"N={calls} in {len(values)} runs; added {added:+.0f} ns/call; "
                f"{spread(values)}; baseline {spread(plain)}")  # fmt: skip
        row = ratio_row(f"7 print(), OpenTelemetry imported, {label}, {what}", value, base,
                        "ns/call", note=note)  # fmt: skip
        if mode == "alone":
            row.target, row.met = f"+{TRACE_ADDED_LIMIT_NS} ns", added <= TRACE_ADDED_LIMIT_NS
        ctx.add(row)


# -- figure 4: lines end to end ---------------------------------------------------------------


@dataclass
class Shipped:
    run: ChildRun
    stored: int  # rows of the bench's own lines that reached the server (-1: unknown)
    shed: int  # what vlhook counted as shed (buffer full) by the end of the script
    spooled: int  # lines left in the spool (undelivered by the exit deadline)

    @property
    def warning(self) -> str:
        said = [line for line in self.run.stderr.splitlines() if line.startswith("vlhook:")]
        return said[-1] if said else ""


def settle(count: Callable[[float], int], want: int) -> int:
    """Rows after the child exited: done when all arrived or when nothing new came for a
    second (what is still missing will not come), and never longer than SETTLE_LIMIT_S."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    seen = -1
    while time.monotonic() < deadline:
        now = count(1.0)
        if now >= want or now == seen:
            return now
        seen = now
    return seen


def receiver_rows(ctx: Context, want: int) -> int:
    """Bench lines stored (vlhook's own rows, such as its drop reports, are not counted)."""
    settle(lambda wait: len(ctx.receiver.wait_for(want, timeout=wait)), want)
    return sum(1 for row in ctx.receiver.entries() if row.get("stream") == "stdout")


def run_lines(ctx: Context, env: dict[str, str]) -> tuple[ChildRun, int]:
    """(the child, what vlhook shed while it printed)."""
    out = os.path.join(ctx.workdir, "shed.json")
    run = ctx.run(["-c", LINES_CHILD, str(ctx.plan.lines), out], env, rss=True)
    with open(out) as fh:
        dropped: dict[str, int] = json.load(fh)
    return run, sum(dropped.values())


def spooled_lines(ctx: Context) -> int:
    total = 0
    for folder, _, files in os.walk(ctx.spool):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                total += fh.read().count(b"\n")
    shutil.rmtree(ctx.spool, ignore_errors=True)
    return total


def ship_to_receiver(ctx: Context, extra: dict[str, str]) -> Shipped:
    ctx.receiver.clear()
    run, shed = run_lines(ctx, ctx.env("active", **extra))
    shipped = Shipped(run, receiver_rows(ctx, ctx.plan.lines), shed, spooled_lines(ctx))
    ctx.receiver.clear()  # 200k rows are a few hundred MB in the receiver: free them now
    return shipped


def remote_base(url: str) -> str:
    url = url.strip().rstrip("/")
    suffix = "/insert/jsonline"
    return url[: -len(suffix)] if url.endswith(suffix) else url


def remote_count(base: str, run_id: str) -> int:
    """Rows of this run's stdout lines stored by a real VictoriaLogs (-1: could not ask)."""
    query = f'bench_run:="{run_id}" stream:="stdout" | stats count() rows'
    url = f"{base}/select/logsql/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            lines = [line for line in resp.read().splitlines() if line.strip()]
    except (OSError, ValueError):
        return -1
    return int(json.loads(lines[0]).get("rows", 0)) if lines else 0


def remote_force_flush(base: str) -> None:
    # Makes just-ingested rows searchable now instead of within a second or so.
    try:
        urllib.request.urlopen(f"{base}/internal/force_flush", timeout=10).close()
    except (OSError, ValueError):
        pass


def ship_to_remote(ctx: Context, url: str) -> Shipped:
    base, run_id = remote_base(url), uuid.uuid4().hex
    env = ctx.env("active", base, VICTORIALOGS_FIELDS=f"bench_run={run_id}")
    run, shed = run_lines(ctx, env)

    def count(wait: float) -> int:
        time.sleep(wait)
        remote_force_flush(base)
        return remote_count(base, run_id)

    stored = settle(count, ctx.plan.lines)
    return Shipped(run, stored, shed, spooled_lines(ctx))


def e2e_metrics(shipped: Shipped, bare: ChildRun, lines: int) -> dict[str, float]:
    active, stored = shipped.run, shipped.stored
    # Stored count unknown (the server could not be queried): per printed line instead.
    per = lines if stored < 0 else max(stored, 1)
    return {
        "wall_s": active.wall_s,
        "bare_wall_s": bare.wall_s,
        "lines_per_s": per / active.wall_s,
        "bare_lines_per_s": lines / bare.wall_s,
        "added_cpu_us": (active.cpu_s - bare.cpu_s) / per * 1e6,
        "bare_cpu_us": bare.cpu_s / lines * 1e6,
        "cpu_ratio": active.cpu_s / bare.cpu_s,
        "rss_growth_mib": (active.peak_rss_kib - bare.peak_rss_kib) / 1024,
        "bare_rss_mib": bare.peak_rss_kib / 1024,
        "rss_ratio": active.peak_rss_kib / max(bare.peak_rss_kib, 1),
        "lost": lines - stored if stored >= 0 else -1,
        "shed": shipped.shed,
        "spooled": shipped.spooled,
    }


def lost_note(worst: dict[str, float], runs: int, warning: str) -> str:
    lost, shed, spooled = worst["lost"], worst["shed"], worst["spooled"]
    if lost < 0:
        return "server not queryable for its row count: per-line figures are per printed line"
    # Neither stored, nor shed while writing, nor in the spool: what the exit budget could not
    # keep. The child's own exit message (quoted) counts these as exit_timeout drops.
    at_exit = lost - shed - spooled
    return (f"worst of {runs}: {shed:.0f} shed (buffer full), {spooled:.0f} spooled, "
            f"{at_exit:.0f} not kept at exit; child said: {warning or '(nothing)'}")  # fmt: skip


def e2e_rows(ctx: Context, tag: str, runs: list[dict[str, float]], warning: str) -> None:
    def med(key: str) -> float:
        return median([run[key] for run in runs])

    figure = f"4 {tag}:"
    added = med("added_cpu_us")
    worst = max(runs, key=lambda run: run["lost"])
    lost = worst["lost"]
    for row in (
        ratio_row(f"{figure} child wall", med("wall_s"), med("bare_wall_s"), "s"),
        ratio_row(f"{figure} lines/s delivered", med("lines_per_s"), med("bare_lines_per_s"),
                  "lines/s", note="baseline: lines/s printed without vlhook"),
        Row(f"{figure} added CPU per shipped line", added, med("bare_cpu_us"), "us",
            med("cpu_ratio"), "< 6 us", added < 6,
            "baseline: CPU per line without vlhook; ratio: whole-child CPU"),
        Row(f"{figure} peak RSS growth", med("rss_growth_mib"), med("bare_rss_mib"), "MiB",
            med("rss_ratio"), note="baseline and ratio: whole-child peak RSS (VmHWM)"),
        Row(f"{figure} lines not stored", lost, ctx.plan.lines, "lines", None, "= 0",
            None if lost < 0 else lost == 0, lost_note(worst, len(runs), warning)),
    ):  # fmt: skip
        ctx.add(row)


def e2e_variants(ctx: Context) -> list[tuple[str, Callable[[], Shipped]]]:
    variants: list[tuple[str, Callable[[], Shipped]]] = [
        ("receiver", lambda: ship_to_receiver(ctx, {})),
        # Back-pressure instead of shedding, and time to drain: the sustained lossless rate.
        ("receiver, on_full=block, exit 60 s", lambda: ship_to_receiver(
            ctx, {"VICTORIALOGS_ON_FULL": "block", "VICTORIALOGS_EXIT_TIMEOUT_MS": "60000"})),
    ]  # fmt: skip
    real = os.environ.get(REAL_URL_ENV, "").strip()
    if real:
        variants.append(("real server", lambda: ship_to_remote(ctx, real)))
    else:
        ctx.notes.append(f"4: no real-server run ({REAL_URL_ENV} not set)")
    return variants


def fig_end_to_end(ctx: Context) -> None:
    lines, bare_env = ctx.plan.lines, ctx.env("bare")
    for tag, ship in e2e_variants(ctx):
        results, warning = [], ""
        for _ in range(ctx.plan.e2e_runs if tag != "real server" else 1):
            bare, _ = run_lines(ctx, bare_env)
            shipped = ship()
            warning = warning or shipped.warning
            results.append(e2e_metrics(shipped, bare, lines))
        ctx.samples[f"e2e.{tag}"] = [run["added_cpu_us"] for run in results]
        e2e_rows(ctx, tag, results, warning)


# -- figure 5: import costs -------------------------------------------------------------------


def importable(ctx: Context, module: str) -> bool:
    try:
        ctx.run(["-c", f"import {module}"], ctx.env("bare"))
    except RuntimeError:
        return False
    return True


def fig_imports(ctx: Context) -> None:
    modules = []
    for module in IMPORTS + OPTIONAL_IMPORTS:
        if importable(ctx, module):
            modules.append(module)
        else:
            ctx.notes.append(f"5: {module} is not importable here: skipped")
    variants = {
        name: (["-c", f"import {name}" if name else "pass"], ctx.env("bare"))
        for name in ["", *modules]
    }
    runs = interleaved(ctx, variants, ctx.plan.import_runs, warmup=1)
    walls = {name: [r.wall_s * 1000 for r in rs] for name, rs in runs.items()}
    base = median(walls[""])
    for module in modules:
        value = median(walls[module])
        row = ratio_row(f"5 import {module}", value - base, base, "ms", note=spread(walls[module]))
        row.ratio = value / base  # the whole `python -c "import X"` against `python -c pass`
        ctx.add(row)


# -- figure 6: making entries ------------------------------------------------------------------


ENTRY_KINDS = {
    "plain": "plain line (100 chars)",
    "traced": "plain line with trace context",
    "flat": "JSON line, flat",
    "json": "JSON line, nested objects",
    "record": "logging record",
    "records": "logging record with nested extras",
}


def entry_costs(ctx: Context, src: str, env: dict[str, str]) -> dict[str, float]:
    child_env = ctx.env("bare", PYTHONPATH=src)
    args = ["-c", ENTRIES_CHILD, str(ctx.plan.entry_passes), json.dumps(env)]
    proc = subprocess.run(
        [PY, *args], env=child_env, cwd=ctx.workdir, capture_output=True, text=True,
        timeout=CHILD_TIMEOUT_S, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"entries child failed: {proc.stderr[-2000:]}")
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def fig_entries(ctx: Context) -> None:
    """ns per entry on the sender: this code with redaction on and off, and (with
    --baseline-src) an older code with its defaults, interleaved run by run. Each figure is the
    lowest of the runs' medians: on a shared machine a busy moment only ever adds, and an
    in-process loop of a few microseconds shows it more than a whole process does."""
    variants = {"on": (SRC, {}), "off": (SRC, {"VICTORIALOGS_REDACT": "off"})}
    if ctx.baseline_src:
        variants["before"] = (ctx.baseline_src, {})
    costs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for index in range(ctx.plan.entry_runs):
        names = list(variants)
        for name in names[index % len(names) :] + names[: index % len(names)]:
            costs[name].append(entry_costs(ctx, *variants[name]))
    for kind, label in ENTRY_KINDS.items():
        per = {name: [run[kind] for run in runs] for name, runs in costs.items()}
        for name, values in per.items():
            ctx.samples[f"entries.{kind}.{name}.ns"] = values
        on = min(per["on"])
        note = f"lowest of {ctx.plan.entry_runs} runs; {spread(per['on'])}"
        ctx.add(ratio_row(f"6 {label}, redaction on vs off", on, min(per["off"]), "ns", None,
                          note))  # fmt: skip
        if "before" in per:
            before = min(per["before"])
            ctx.add(ratio_row(f"6 {label}, this code vs before", on, before, "ns", None, note))


# -- figure 7: capture at the fd level ----------------------------------------------------------

FD = {"VICTORIALOGS_CAPTURE": "fd,logging"}
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """The fd helper is nobody's child once the program has exited; as the subreaper, this
    process inherits it, so it can wait for it to end and read its CPU."""
    import ctypes

    try:
        return int(ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap_helper() -> float:
    """CPU (user + sys, s) of the fd helper, once it has ended (0: there was none)."""
    try:
        _, _, usage = os.wait4(-1, 0)
    except ChildProcessError:
        return 0.0
    return usage.ru_utime + usage.ru_stime


def fd_variants(ctx: Context) -> dict[str, dict[str, str]]:
    """bare and tee write to /dev/null; `bare pipe` to a pipe another process reads; fd to the
    helper's pipe (the helper writes to /dev/null)."""
    return {"bare": ctx.env("bare"), "bare pipe": ctx.env("bare"), "tee": ctx.env("active"),
            "fd": ctx.env("active", **FD)}  # fmt: skip


def rotated(names: list[str], index: int) -> list[str]:
    shift = index % len(names)
    return names[shift:] + names[:shift]


def fd_call_costs(ctx: Context) -> dict[str, list[dict[str, float]]]:
    """print() in figure 3's child, bare, teed and at the fd level, interleaved run by run."""
    variants = fd_variants(ctx)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for index in range(ctx.plan.call_runs):
        for name in rotated(list(variants), index):
            out = os.path.join(ctx.workdir, f"fd-calls-{index}.json")
            ctx.run(["-c", CALLS_CHILD, str(ctx.plan.calls), out, "print"], variants[name],
                    pipe=name == "bare pipe")  # fmt: skip
            helper_cpu = reap_helper()  # before the next run: never two at once
            with open(out) as fh:
                results[name].append({**json.load(fh), "helper_cpu_s": helper_cpu})
    shutil.rmtree(ctx.spool, ignore_errors=True)  # what the helpers had no time to deliver
    return results


def fd_rows_calls(ctx: Context, results: dict[str, list[dict[str, float]]]) -> None:
    calls = ctx.plan.calls
    for key, what in (("ns", "wall"), ("thread_ns", "own-thread CPU")):
        per = {name: [r[key] / calls for r in runs] for name, runs in results.items()}
        for name, values in per.items():
            ctx.samples[f"fd.calls.{key}.{name}"] = values
        fd, note = median(per["fd"]), f"N={calls}; {spread(per['fd'])}"
        for name, limit in (("bare", 1.3 if key == "ns" else None), ("bare pipe", None),
                            ("tee", None)):  # fmt: skip
            ctx.add(ratio_row(f"7 print(100 chars), fd vs {name}, caller {what}", fd,
                              median(per[name]), "ns/call", limit, note))  # fmt: skip


def fd_lines(ctx: Context, name: str, env: dict[str, str]) -> dict[str, float]:
    """Figure 4's child (N lines, normal exit): its wall and CPU, the helper's CPU, and how many
    lines reached the receiver."""
    ctx.receiver.clear()
    out = os.path.join(ctx.workdir, "shed.json")
    run = ctx.run(["-c", LINES_CHILD, str(ctx.plan.lines), out], env, pipe=name == "bare pipe")
    helper_cpu = reap_helper()
    stored = receiver_rows(ctx, ctx.plan.lines) if name in ("tee", "fd") else ctx.plan.lines
    ctx.receiver.clear()
    spooled_lines(ctx)
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "helper_cpu_s": helper_cpu,
            "stored": stored}  # fmt: skip


def fd_rows_lines(ctx: Context) -> None:
    # As figure 4's lossless variant: nothing shed, time to deliver it all before the exit ends.
    lossless = {"VICTORIALOGS_ON_FULL": "block", "VICTORIALOGS_EXIT_TIMEOUT_MS": "60000"}
    variants = {name: {**env, **lossless} if name in ("tee", "fd") else env
                for name, env in fd_variants(ctx).items()}  # fmt: skip
    lines = ctx.plan.lines
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for index in range(ctx.plan.e2e_runs):
        for name in rotated(list(variants), index):
            runs[name].append(fd_lines(ctx, name, variants[name]))

    def med(name: str, key: str) -> float:
        return median([run[key] for run in runs[name]])

    per_line = {name: med(name, "cpu_s") / lines * 1e6 for name in runs}
    helper = med("fd", "helper_cpu_s") / lines * 1e6
    total_fd, total_tee = per_line["fd"] + helper, per_line["tee"]
    lost = lines - min(run["stored"] for run in runs["fd"])
    for row in (
        ratio_row(f"7 {lines} lines, fd vs bare: program CPU per line", per_line["fd"],
                  per_line["bare"], "us", None, "the program's own process (wait4)"),
        ratio_row("7 ... fd vs bare pipe: program CPU per line", per_line["fd"],
                  per_line["bare pipe"], "us", None, "bare, writing into a pipe"),
        ratio_row("7 ... fd vs tee: program CPU per line", per_line["fd"], total_tee, "us", None,
                  "tee: the shipping runs in the program; fd: in the helper"),
        Row("7 ... fd: helper CPU per line", helper, None, "us", None, "-", None,
            "the helper process: forwarding, line assembly, entries, delivery"),
        ratio_row("7 ... fd vs tee: CPU per line, program + helper", total_fd, total_tee, "us"),
        ratio_row("7 ... fd vs tee: program wall", med("fd", "wall_s"), med("tee", "wall_s"), "s",
                  None, "to the program's exit, which waits until everything is delivered"),
        Row("7 ... fd: lines not stored", lost, lines, "lines", None, "= 0", lost == 0,
            f"worst of {ctx.plan.e2e_runs}; on_full=block, exit budget 60 s, as in figure 4"),
    ):  # fmt: skip
        ctx.add(row)


def fd_rows_start(ctx: Context) -> None:
    """Start-up (`python -c pass`) and a one-line script, teed and at the fd level, where the
    helper is forked at start-up; and what a helper started as a fresh interpreter would cost
    at least, for every process."""
    variants = {name: env for name, env in fd_variants(ctx).items() if name != "bare pipe"}
    fork = 0.0
    for label, args in (
        ("start-up (python -c pass)", ["-c", "pass"]),
        ("print 1 line + exit", ["-c", "print('hello from the vlhook bench')"]),
    ):
        walls, cpus, helper = fd_runs(ctx, args, variants)
        for key, values in (("wall", walls), ("CPU user+sys", cpus)):
            ctx.samples[f"fd.{args[1]}.{key}"] = [v for name in values for v in values[name]]
            fd = median(values["fd"])
            for name in ("bare", "tee"):
                ctx.add(ratio_row(f"7 {label}, fd vs {name}, {key}", fd, median(values[name]),
                                  "ms", None, spread(values["fd"])))  # fmt: skip
        ctx.add(Row(f"7 {label}, fd: the helper's own CPU", helper, None, "ms"))
        if args[1] == "pass":
            fork = median(cpus["fd"]) - median(cpus["tee"])
    spawn = interleaved(ctx, {"spawn": (["-c", "import vlhook._fd_helper"],
                                        ctx.env("bare", PYTHONPATH=SRC))},
                        ctx.plan.oneline_runs)["spawn"]  # fmt: skip
    ctx.add(ratio_row("7 helper start: spawned interpreter vs fork, program CPU",
                      median([r.cpu_s * 1000 for r in spawn]), fork, "ms", None,
                      "spawn: `python -c 'import vlhook._fd_helper'`, the least a spawned helper "
                      "costs; fork: start-up CPU, fd minus tee"))  # fmt: skip


def fd_runs(ctx: Context, args: list[str], variants: dict[str, dict[str, str]]
            ) -> tuple[dict[str, list[float]], dict[str, list[float]], float]:  # fmt: skip
    """Wall and CPU (ms) per variant, and the median CPU of the fd helper."""
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    helpers: list[float] = []
    for index in range(ctx.plan.oneline_runs + 2):
        for name in rotated(list(variants), index):
            run = ctx.run(args, variants[name])
            helper = reap_helper()
            if index >= 2:  # warm-up rounds
                walls[name].append(run.wall_s * 1000)
                cpus[name].append(run.cpu_s * 1000)
                if name == "fd":
                    helpers.append(helper * 1000)
    return walls, cpus, median(helpers)


def fd_rows_thread(ctx: Context, results: dict[str, list[dict[str, float]]]) -> None:
    """The alternative: a reader thread in the program. Its print() cost (forwarding alone),
    and what reaches the console when the program is killed right after writing."""
    calls, runs = ctx.plan.calls, []
    for index in range(ctx.plan.call_runs):
        out = os.path.join(ctx.workdir, f"thread-calls-{index}.json")
        ctx.run(["-c", READER_THREAD + CALLS_CHILD, str(calls), out, "print"], ctx.env("bare"))
        with open(out) as fh:
            runs.append(json.load(fh)["ns"] / calls)
    ctx.add(ratio_row("7 print(100 chars), reader thread vs bare, caller wall", median(runs),
                      median([r["ns"] / calls for r in results["bare"]]), "ns/call", None,
                      "forwarding only, no shipping"))  # fmt: skip
    lines = 10_000
    seen: dict[str, list[int]] = {"thread": [], "fd": []}
    for _ in range(max(3, ctx.plan.call_runs)):
        for name, code, env in (("thread", READER_THREAD + KILLED_CHILD, ctx.env("bare")),
                                ("fd", KILLED_CHILD, ctx.env("active", **FD))):  # fmt: skip
            argv = [PY, "-c", code, str(lines)]  # killed: its status is not checked
            done = subprocess.run(argv, env=env, cwd=ctx.workdir, capture_output=True,
                                  timeout=CHILD_TIMEOUT_S, check=False)  # fmt: skip
            reap_helper()
            seen[name].append(done.stdout.count(b"\n"))
    shutil.rmtree(ctx.spool, ignore_errors=True)
    ctx.add(Row(f"7 {lines} lines written, then SIGKILL: on the console, reader thread",
                min(seen["thread"]), min(seen["fd"]), "lines", None, "-", None,
                f"worst of {len(seen['fd'])} (each: {seen['thread']}); baseline: the same "
                "with the fd helper"))  # fmt: skip


def fig_fd(ctx: Context) -> None:
    if sys.platform != "linux" or not become_subreaper():
        ctx.notes.append("7: fd capture is measured on Linux only: skipped")
        return
    calls = fd_call_costs(ctx)
    fd_rows_calls(ctx, calls)
    fd_rows_thread(ctx, calls)
    fd_rows_lines(ctx)
    fd_rows_start(ctx)


# -- output -----------------------------------------------------------------------------------


def fmt(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return "-"
    size = abs(value)
    text = (
        f"{value:.0f}" if size >= 100 or unit == "lines" else f"{value:.{1 if size >= 10 else 2}f}"
    )
    return f"{text} {unit}".strip()


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
        out = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return ""
    return out.stdout.strip()


def write_json(ctx: Context, seconds: float) -> None:
    meta: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "quick": ctx.plan.quick,
        "plan": asdict(ctx.plan),
        "git_head": git_head(),
        "duration_s": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    data = {
        "meta": meta,
        "rows": [asdict(row) for row in ctx.rows],
        "notes": ctx.notes,
        "samples": ctx.samples,
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


# -- main -------------------------------------------------------------------------------------


def preflight(ctx: Context) -> None:
    """Fill the bytecode cache, then ship one line: a broken receiver or drop-in would make
    every figure nonsense."""
    warm = (
        f"for m in {IMPORTS + OPTIONAL_IMPORTS!r}:\n try: __import__(m)\n except ImportError: pass"
    )
    ctx.run(["-c", warm], ctx.env("bare"))
    ctx.receiver.clear()
    run = ctx.run(["-c", "import logging; print('bench preflight')"], ctx.env("active"))
    if not ctx.receiver.wait_for(1, timeout=10):
        raise SystemExit(f"bench: the preflight line never reached the receiver:\n{run.stderr}")
    ctx.receiver.clear()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 50k lines")
    parser.add_argument("--only", choices=sorted(FIGURES), help="run one figure")
    parser.add_argument(
        "--baseline-src",
        default="",
        help="src/ of an older checkout (e.g. `git archive`d): figure 6 compares with it",
    )
    args = parser.parse_args(argv)
    started, load_start = time.monotonic(), load_average()
    with tempfile.TemporaryDirectory(prefix="vlhook-bench-") as workdir, Receiver(echo=None) as rx:
        ctx = Context(make_plan(args.quick), rx, workdir, baseline_src=args.baseline_src)
        preflight(ctx)
        for figure in [FIGURES[args.only]] if args.only else FIGURES.values():
            print(f"{figure.__name__} ...", flush=True)
            figure(ctx)
        ctx.notes.append(f"load average at start {load_start}, at end {load_average()}")
    seconds = time.monotonic() - started
    print(f"\n{table(ctx.rows)}\n\n{notes(ctx)}\n")
    write_json(ctx, seconds)
    print(f"{len(ctx.rows)} figures in {seconds:.0f} s; JSON: {os.path.relpath(RESULTS)}")
    return 0


FIGURES: dict[str, Callable[[Context], None]] = {
    "startup": fig_startup,
    "one_line": fig_one_line,
    "calls": fig_calls,
    "end_to_end": fig_end_to_end,
    "imports": fig_imports,
    "entries": fig_entries,
    "trace": fig_trace,
    "fd": fig_fd,
}


if __name__ == "__main__":
    sys.exit(main())
