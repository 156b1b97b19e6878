"""What vlhook costs the program's own thread, per call (figures 3 and 8).

Figure 3: print() and logger.info() in a tight loop (the sender competing for the GIL all the
time); print() paced at 1,000 lines/s, as a program that logs steadily calls it; and one
capture on the caller alone (the tee's write path, with the sender asleep). Figure 8: what
reading the current OpenTelemetry span adds to that capture.
"""

from __future__ import annotations

import os
from typing import Optional

from children import CALLS_CHILD, PACED_CHILD, PACED_SAME_CHILD, ROUNDS_CHILD
from harness import DROPIN, OUT, SRC, Context, alternated, importable, median, ratio_row, spread
from targets import BIG_BATCH_LINES, CALL_LIMIT, PACED_RATE, TRACE_ADDED_LIMIT_NS

#: Figure 3's logger.info() loop is run a third way, with fewer requests (see fig_calls).
BIG_BATCHES = {"VICTORIALOGS_BATCH_LINES": str(BIG_BATCH_LINES)}
#: The sender wakes at no line count and no interval while a round is timed.
SENDER_ASLEEP = {"VICTORIALOGS_BATCH_LINES": "1000000",
                 "VICTORIALOGS_FLUSH_INTERVAL_MS": "3600000"}  # fmt: skip


def call_costs(
    ctx: Context, kind: str, cpus: str = "all", actives: Optional[dict[str, dict[str, str]]] = None
) -> dict[str, list[dict[str, float]]]:
    """CALLS_CHILD's results: bare and vlhook active, interleaved; `actives` names vlhook's
    variants and their settings (by default one, "active", as configured by default)."""
    args = ["-c", CALLS_CHILD, str(ctx.plan.calls), OUT, kind, cpus]
    variants = actives or {"active": {}}

    def one(variant: str, index: int) -> dict[str, float]:
        env = ctx.env("bare") if variant == "bare" else ctx.env("active", **variants[variant])
        return ctx.result(args, env, f"calls-{kind}-{index}")

    return alternated([*variants, "bare"], ctx.plan.call_runs, one)


PRINT_LABEL = "print(100 chars) in a tight loop"
LOGGING_LABEL = 'logger.info("msg %s", 1) vs bare StreamHandler'


def fig_calls(ctx: Context) -> None:
    """Tight loops. print(): the baseline is print() to the same /dev/null. logger.info(): a
    logger with a bare StreamHandler (same format) writing to that same stdout; with vlhook the
    record is also captured as a record.

    logger.info() is also run with batches of BIG_BATCH_LINES, interleaved with the other two:
    a batch is one request, and each request wakes vlhook's threads a few times, each wake-up
    a storm of vain ones while the caller writes (see fig_one_cpu). Fewer requests, fewer
    storms: the setting a program that logs in tight loops can choose
    (docs/troubleshooting.md)."""
    tight_rows(ctx, "print", PRINT_LABEL, call_costs(ctx, "print"))
    results = call_costs(ctx, "logging", actives={"active": {}, "big": BIG_BATCHES})
    ctx.summary["logging_ratio"] = tight_rows(ctx, "logging", LOGGING_LABEL, results, CALL_LIMIT)
    big = f"3 {LOGGING_LABEL}, VICTORIALOGS_BATCH_LINES={BIG_BATCH_LINES}, caller wall"
    ratio = call_row(ctx, results, "ns", "calls.logging_big_batches.ns", big, active="big")
    ctx.summary["logging_big_batches_ratio"] = ratio


def tight_rows(ctx: Context, kind: str, label: str, results: dict[str, list[dict[str, float]]],
               limit: Optional[float] = None) -> float:  # fmt: skip
    """A tight loop's rows: the caller's wall time (the target is on what it waits) and its
    own CPU. Returns the wall time's ratio."""
    wall = call_row(ctx, results, "ns", f"calls.{kind}.ns", f"3 {label}, caller wall", limit)
    call_row(ctx, results, "thread_ns", f"calls.{kind}.thread_ns",
             f"3 {label}, caller own-thread CPU")  # fmt: skip
    return wall


def call_row(ctx: Context, results: dict[str, list[dict[str, float]]], key: str, name: str,
             label: str, limit: Optional[float] = None, active: str = "active"
             ) -> float:  # fmt: skip
    """The row of one of CALLS_CHILD's measures (`key`) per call, vlhook's variant `active`
    against bare, its samples kept as `name`. Returns the ratio."""
    shed = max(int(r["dropped"]) for r in results[active])
    per_call = {v: [r[key] / ctx.plan.calls for r in rs] for v, rs in results.items()}
    ctx.samples[name] = [*per_call["bare"], *per_call[active]]
    bare, mine = median(per_call["bare"]), median(per_call[active])
    note = f"N={ctx.plan.calls}; {spread(per_call[active])}; vlhook shed {shed} captures"
    ctx.add(ratio_row(label, mine, bare, "ns/call", limit, note))
    return mine / bare


def fig_one_cpu(ctx: Context) -> None:
    """logger.info() in the tight loop, the whole process (bare, or vlhook's threads with the
    program's) on one CPU. On two, every time the caller lets the interpreter lock go (a
    handler's write(2) per record) a vlhook thread waiting for it on the other CPU is woken,
    mostly in vain; on one CPU the waiting thread runs only when the caller's time slice or
    switch interval ends. The difference between this row and the one above is what those
    hand-overs across CPUs cost (see docs/performance.md)."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        ctx.notes.append("3 logger.info() on one CPU: not measured (one CPU, or no affinity)")
        return
    results = call_costs(ctx, "logging", "one")
    label = f"3 {LOGGING_LABEL}, one CPU, caller wall"
    ratio = call_row(ctx, results, "ns", "calls.logging_one_cpu.ns", label)
    ctx.summary["logging_one_cpu_ratio"] = ratio


def fig_paced(ctx: Context) -> None:
    """print() at 1,000 lines/s: perf_counter around each call; median and p99 of each run,
    the median of the runs."""
    count = int(ctx.plan.paced_s * PACED_RATE)
    args = ["-c", PACED_CHILD, str(count), str(PACED_RATE), OUT]

    def one(variant: str, index: int) -> dict[str, float]:
        return ctx.result(args, ctx.env(variant), f"paced-{index}")

    results = alternated(["active", "bare"], ctx.plan.paced_runs, one)
    label = f"3 print(100 chars) at {PACED_RATE:,} lines/s"
    for key, limit in (("median", CALL_LIMIT), ("p99", None)):
        per = {v: [r[key] for r in rs] for v, rs in results.items()}
        ctx.samples[f"paced.{key}"] = [*per["bare"], *per["active"]]
        bare, active = median(per["bare"]), median(per["active"])
        note = f"{count} calls per run, {ctx.plan.paced_runs} runs; {spread(per['active'])}"
        ctx.add(ratio_row(f"{label}, caller wall, {key}", active, bare, "ns/call", limit, note))
        ctx.summary[f"paced_{key}_ratio"] = active / bare


def fig_paced_same(ctx: Context) -> None:
    """print() at 1,000 lines/s through the tee and, on alternate lines, to the tee's own
    original stream, in one process (PACED_SAME_CHILD): a change of a few per cent to the
    write path shows here, where the figure across processes moves by ±30 % from run to run.
    The median of each run's medians."""
    count = int(ctx.plan.paced_s * PACED_RATE) // 2
    results: dict[str, list[float]] = {"tee": [], "raw": []}
    args = ["-c", PACED_SAME_CHILD, str(count), str(PACED_RATE), OUT]
    for index in range(ctx.plan.paced_runs):
        run = ctx.result(args, ctx.env("active"), f"paced-same-{index}")
        for kind, values in results.items():
            values.append(run[kind])
    ctx.samples["paced_same.raw"], ctx.samples["paced_same.tee"] = results["raw"], results["tee"]
    tee, raw = median(results["tee"]), median(results["raw"])
    ctx.summary["paced_same_ratio"] = tee / raw
    note = (f"{count} calls of each per run, {ctx.plan.paced_runs} runs; added {tee - raw:+.0f} "
            f"ns/call; {spread(results['tee'])}")  # fmt: skip
    label = f"3 print(100 chars) at {PACED_RATE:,} lines/s, tee vs its own stream, one process"
    ctx.add(ratio_row(f"{label}, median", tee, raw, "ns/call", note=note))


def rounds_cost(ctx: Context, kind: str, mode: str, index: int, extra: dict[str, str]
                ) -> dict[str, float]:  # fmt: skip
    """ROUNDS_CHILD once: the lowest round's own-thread CPU per print()."""
    args = ["-c", ROUNDS_CHILD, str(ctx.plan.calls // 2), "50", OUT, kind, mode]
    env = ctx.env("bare") if kind == "bare" else ctx.env("active", PYTHONPATH=f"{DROPIN}:{SRC}",
                                                         **extra)  # fmt: skip
    return ctx.result(args, env, f"rounds-{kind}-{mode}-{index}")


def fig_capture(ctx: Context) -> None:
    """One capture on the caller: print()'s own-thread CPU with vlhook active and its sender
    asleep (flushed between rounds), against bare print(). The difference is the tee's write
    path: the capture made and put in the buffer. Lowest round of each run, lowest run."""

    def one(kind: str, index: int) -> float:
        return rounds_cost(ctx, kind, "alone", index, SENDER_ASLEEP)["outside"]

    results = alternated(["plain", "bare"], ctx.plan.call_runs, one)
    base, value = min(results["bare"]), min(results["plain"])
    ctx.samples["capture.bare.ns"] = results["bare"]
    ctx.samples["capture.active.ns"] = results["plain"]
    ctx.summary["capture_ns"] = value - base
    ctx.add(ratio_row("3 one capture on the caller: print() own-thread CPU, sender asleep", value,
                      base, "ns/call", note=f"added {value - base:+.0f} ns per print(); lowest of "
                      f"{len(results['plain'])} runs"))  # fmt: skip


def fig_trace(ctx: Context) -> None:
    """print()'s own-thread CPU in the caller, vlhook active, with OpenTelemetry imported
    (outside and inside a span) against the same print in a process that does not import it,
    interleaved run by run. `caller alone` is the caller's own work (the target); `sender
    running` adds what the sender's work on each entry costs the caller through the GIL and
    the caches. Each figure is the lowest of the runs: on a shared machine a busy moment only
    ever adds, and the difference sought is a few tens of ns in a few µs."""
    if not importable(ctx, "opentelemetry.sdk.trace"):
        ctx.notes.append("8: opentelemetry-sdk is not importable here: skipped")
        return
    modes = {"alone": ("caller alone", SENDER_ASLEEP), "shared": ("sender running", {})}
    for mode, (what, extra) in modes.items():

        def one(kind: str, index: int, mode: str = mode, extra: dict[str, str] = extra
                ) -> dict[str, float]:  # fmt: skip
            return rounds_cost(ctx, kind, mode, index, extra)

        trace_rows(ctx, mode, what, alternated(["otel", "plain"], ctx.plan.call_runs * 2, one))


def trace_rows(
    ctx: Context, mode: str, what: str, results: dict[str, list[dict[str, float]]]
) -> None:
    plain = [run["outside"] for run in results["plain"]]
    base = min(plain)
    ctx.samples[f"trace.{mode}.plain.ns"] = plain
    for where, label in (("outside", "outside any span"), ("inside", "inside a span")):
        values = [run[where] for run in results["otel"]]
        ctx.samples[f"trace.{mode}.otel.{where}.ns"] = values
        value = min(values)
        added = value - base
        note = (f"N={ctx.plan.calls // 2} in {len(values)} runs; added {added:+.0f} ns/call; "
                f"{spread(values)}; baseline {spread(plain)}")  # fmt: skip
        row = ratio_row(f"8 print(), OpenTelemetry imported, {label}, {what}", value, base,
                        "ns/call", note=note)  # fmt: skip
        if mode == "alone":
            row.target, row.met = f"+{TRACE_ADDED_LIMIT_NS} ns", added <= TRACE_ADDED_LIMIT_NS
        ctx.add(row)
