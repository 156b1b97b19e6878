"""Figure 7: capture at the file-descriptor level (VICTORIALOGS_CAPTURE=fd,logging).

The program writes into a pipe and a forked helper process writes the bytes out and ships them.
Compared with bare print() (to /dev/null and into a pipe) and with the default capture (the
tee), interleaved run by run: the caller's cost per print(), end-to-end lines with the CPU of
program and helper, start-up, and the alternatives (a reader thread, a spawned helper).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

from children import CALLS_CHILD, KILLED_CHILD, LINES_CHILD, READER_THREAD
from e2e import LOSSLESS, spooled_lines
from harness import (
    CHILD_TIMEOUT_S,
    OUT,
    PY,
    SRC,
    ChildRun,
    Context,
    Row,
    alternated,
    interleaved,
    median,
    ratio_row,
    spread,
)
from server import word

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


def adopted() -> list[int]:
    """The processes this one inherited as subreaper: the helpers of children that have
    exited. Not wait4(-1): the server the bench started is a child too, and never exits."""
    me, pids = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # ended meanwhile
            continue
        if int(stat.rpartition(b")")[2].split()[1]) == me:
            pids.append(int(name))
    return pids


def reap_helper(ctx: Context) -> float:
    """CPU (user + sys, s) of the fd helpers, once they have ended (0: there was none)."""
    cpu = 0.0
    for pid in adopted():
        if pid != ctx.server.pid:
            try:
                _, _, usage = os.wait4(pid, 0)
            except ChildProcessError:  # not ours after all (a process of the bench's own)
                continue
            cpu += usage.ru_utime + usage.ru_stime
    return cpu


def fd_variants(ctx: Context) -> dict[str, dict[str, str]]:
    """bare and tee write to /dev/null; `bare pipe` to a pipe another process reads; fd to the
    helper's pipe (the helper writes to /dev/null)."""
    return {"bare": ctx.env("bare"), "bare pipe": ctx.env("bare"), "tee": ctx.env("active"),
            "fd": ctx.env("active", **FD)}  # fmt: skip


def fd_call_costs(ctx: Context) -> dict[str, list[dict[str, float]]]:
    """print() in figure 3's child, bare, teed and at the fd level, interleaved run by run."""
    variants = fd_variants(ctx)
    args = ["-c", CALLS_CHILD, str(ctx.plan.calls), OUT, "print", "all"]

    def one(name: str, index: int) -> dict[str, float]:
        result = ctx.result(args, variants[name], f"fd-calls-{index}", pipe=name == "bare pipe")
        return {**result, "helper_cpu_s": reap_helper(ctx)}  # before the next: never two at once

    results = alternated(list(variants), ctx.plan.call_runs, one)
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
    lines reached the server."""
    out, tag = os.path.join(ctx.workdir, "shed.json"), uuid.uuid4().hex[:16]
    run = ctx.run(["-c", LINES_CHILD, str(ctx.plan.lines), out, tag], env,
                  pipe=name == "bare pipe")  # fmt: skip
    helper_cpu = reap_helper(ctx)
    lines = ctx.plan.lines
    stored = ctx.server.stored(*word(tag), lines) if name in ("tee", "fd") else lines
    ctx.server.clear()
    spooled_lines(ctx, tag)
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "helper_cpu_s": helper_cpu,
            "stored": stored}  # fmt: skip


def fd_rows_lines(ctx: Context) -> None:
    # As figure 4's lossless variant: nothing shed, time to deliver it all before the exit ends.
    variants = {name: {**env, **LOSSLESS} if name in ("tee", "fd") else env
                for name, env in fd_variants(ctx).items()}  # fmt: skip
    lines = ctx.plan.lines
    runs = alternated(list(variants), ctx.plan.e2e_runs,
                      lambda name, _: fd_lines(ctx, name, variants[name]))  # fmt: skip

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
            f"worst of {ctx.plan.e2e_runs}; on_full=block, exit budget 120 s, as in figure 4"),
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
                        ctx.plan.startup_runs)["spawn"]  # fmt: skip
    ctx.add(ratio_row("7 helper start: spawned interpreter vs fork, program CPU",
                      median([r.cpu_s * 1000 for r in spawn]), fork, "ms", None,
                      "spawn: `python -c 'import vlhook._fd_helper'`, the least a spawned helper "
                      "costs; fork: start-up CPU, fd minus tee"))  # fmt: skip


def fd_runs(ctx: Context, args: list[str], variants: dict[str, dict[str, str]]
            ) -> tuple[dict[str, list[float]], dict[str, list[float]], float]:  # fmt: skip
    """Wall and CPU (ms) per variant, and the median CPU of the fd helper."""

    def one(name: str, _: int) -> tuple[ChildRun, float]:
        return ctx.run(args, variants[name]), reap_helper(ctx)

    runs = alternated(list(variants), ctx.plan.startup_runs, one, warmup=2)
    walls = {name: [run.wall_s * 1000 for run, _ in done] for name, done in runs.items()}
    cpus = {name: [run.cpu_s * 1000 for run, _ in done] for name, done in runs.items()}
    return walls, cpus, median([helper * 1000 for _, helper in runs["fd"]])


def fd_rows_thread(ctx: Context, results: dict[str, list[dict[str, float]]]) -> None:
    """The alternative: a reader thread in the program. Its print() cost (forwarding alone),
    and what reaches the console when the program is killed right after writing."""
    calls = ctx.plan.calls
    args = ["-c", READER_THREAD + CALLS_CHILD, str(calls), OUT, "print", "all"]
    runs = [ctx.result(args, ctx.env("bare"), f"thread-calls-{index}")["ns"] / calls
            for index in range(ctx.plan.call_runs)]  # fmt: skip
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
            reap_helper(ctx)
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
