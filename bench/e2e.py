"""Figure 4: lines end to end to the server, three programs side by side in one run.

The same child prints N lines of 100 characters as fast as it can: bare (to /dev/null), with
vlhook (VICTORIALOGS_ON_FULL=block: nothing is shed; a 120 s exit budget: everything is
delivered before it exits), and with the hand-written batcher of children.py (which also
blocks rather than sheds, and delivers everything before it exits). Interleaved round by
round. Per round, each shipping variant is compared with that round's bare run:

  extra CPU per shipped line = (child CPU - bare child CPU) / lines stored
  lines/s end to end         = lines stored / child wall time (spawn to exit; the child exits
                               once the server has acknowledged its last batch)
  added peak RSS             = child VmHWM - bare child VmHWM
  server CPU per stored line = the server's CPU from the child's spawn until its lines are
                               flushed to parts and merged (the server idle again) / lines stored
                               (only when the bench started the server: on a small machine it
                               shares the cores with the child)

Lines stored are counted by asking the server (after /internal/force_flush) for the run's tag.
Then one run with vlhook's default settings shows where the lines go when the program outruns
the sender: stored, shed, spooled, or counted at exit.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any

from children import BATCHER, LINES_CHILD
from harness import ChildRun, Context, Row, median, rotated
from server import word
from targets import CPU_LIMIT_US, CPU_MOONSHOT_US, RATE_LIMIT, RSS_LIMIT_MIB

VARIANTS = ("bare", "vlhook", "batcher")
SHIPPING = ("vlhook", "batcher")
LABEL = {"bare": "bare print()", "vlhook": "vlhook", "batcher": "hand-written batcher"}
LOSSLESS = {"VICTORIALOGS_ON_FULL": "block", "VICTORIALOGS_EXIT_TIMEOUT_MS": "120000"}


@dataclass
class Shipped:
    run: ChildRun
    stored: int  # the run's lines the server holds (bare: what it printed)
    shed: int  # what vlhook counted as shed (buffer full) by the end of the script
    spooled: int  # lines left in the spool (undelivered by the exit deadline)
    room_waits: int  # times the program waited for room (ON_FULL=block), by then
    room_wait_ms: int  # and how long in all
    server_cpu_s: float  # the server's CPU from the child's spawn until idle again after it

    @property
    def warning(self) -> str:
        said = [line for line in self.run.stderr.splitlines() if line.startswith("vlhook:")]
        return said[-1] if said else ""


def ship(ctx: Context, variant: str, vlhook_env: dict[str, str]) -> Shipped:
    lines, tag = ctx.plan.lines, uuid.uuid4().hex[:16]
    out = os.path.join(ctx.workdir, "shed.json")
    source, env = LINES_CHILD, ctx.env("bare")
    if variant in ("vlhook", "before"):
        env = ctx.env("active" if variant == "vlhook" else "before", **vlhook_env)
    elif variant == "batcher":
        source, env = BATCHER + LINES_CHILD, ctx.env("bare", BENCH_BATCHER_URL=ctx.server.url)
    server_before = ctx.server.settled_cpu_s()
    run = ctx.run(["-c", source, str(lines), out, tag], env, rss=True)
    ctx.server.flush()  # its share of the work, but not the searches that count the lines
    server_cpu_s = ctx.server.settled_cpu_s() - server_before
    with open(out) as fh:
        said = json.load(fh)
    stored = lines if variant == "bare" else ctx.server.stored(*word(tag), lines)
    ctx.server.clear()
    return Shipped(run, stored, sum(said["dropped"].values()), spooled_lines(ctx, tag),
                   said["room_waits"], said["room_wait_ms"], server_cpu_s)  # fmt: skip


def spooled_lines(ctx: Context, tag: str) -> int:
    """The run's lines vlhook left in the spool (its own entries, such as its report of what
    it shed, are not counted); removed, so that the next child does not replay them."""
    total, needle = 0, tag.encode()
    for folder, _, files in os.walk(ctx.spool):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                total += sum(1 for line in fh if needle in line)
    shutil.rmtree(ctx.spool, ignore_errors=True)
    return total


def fig_end_to_end(ctx: Context) -> None:
    names = [*VARIANTS, *(["before"] if ctx.baseline_src else [])]
    rounds: list[dict[str, Shipped]] = []
    for index in range(ctx.plan.e2e_runs):
        rounds.append({name: ship(ctx, name, LOSSLESS) for name in rotated(names, index)})
    per = {name: metrics(rounds, name) for name in names}
    for name, values in per.items():
        for key, series in values.items():
            ctx.samples[f"e2e.{name}.{key}"] = series
    summary: dict[str, Any] = {key: {name: median(per[name][key]) for name in VARIANTS}
                               for key in per["bare"]}  # fmt: skip
    summary["lost"] = {name: max(ctx.plan.lines - r[name].stored for r in rounds)
                       for name in SHIPPING}  # fmt: skip
    summary.update(lines=ctx.plan.lines, runs=len(rounds))
    ctx.summary["e2e"] = summary
    for row in rows(ctx, summary, rounds):
        ctx.add(row)
    if "before" in per:
        for row in before_rows(ctx, per):
            ctx.add(row)
    default_settings(ctx)


def before_rows(ctx: Context, per: dict[str, dict[str, list[float]]]) -> list[Row]:
    """vlhook against the older checkout's (--baseline-src), measured in the same rounds."""
    head, note = f"4 {ctx.plan.lines} lines, vlhook: ", f"median of {ctx.plan.e2e_runs} rounds"
    out = []
    for key, label, unit in (("extra_cpu_us", "extra CPU per shipped line", "us"),
                             ("lines_per_s", "lines/s end to end", "lines/s"),
                             ("added_rss_mib", "added peak RSS", "MiB")):  # fmt: skip
        now, before = median(per["vlhook"][key]), median(per["before"][key])
        out.append(Row(f"{head}{label}, this code vs before", now, before, unit,
                       now / before if before else None, note=note))  # fmt: skip
    return out


def metrics(rounds: list[dict[str, Shipped]], name: str) -> dict[str, list[float]]:
    """Per round: CPU per line (all of it, and over that round's bare run), lines/s, peak RSS,
    the server's CPU per line it stored."""
    out: dict[str, list[float]] = {"cpu_us": [], "extra_cpu_us": [], "lines_per_s": [],
                                   "rss_mib": [], "added_rss_mib": [],
                                   "server_cpu_us": []}  # fmt: skip
    for r in rounds:
        run, bare, stored = r[name].run, r["bare"].run, max(r[name].stored, 1)
        out["cpu_us"].append(run.cpu_s / stored * 1e6)
        out["extra_cpu_us"].append((run.cpu_s - bare.cpu_s) / stored * 1e6)
        out["lines_per_s"].append(stored / run.wall_s)
        out["rss_mib"].append(run.peak_rss_kib / 1024)
        out["added_rss_mib"].append((run.peak_rss_kib - bare.peak_rss_kib) / 1024)
        out["server_cpu_us"].append(r[name].server_cpu_s / stored * 1e6)
    return out


def rows(ctx: Context, s: dict[str, Any], rounds: list[dict[str, Shipped]]
         ) -> list[Row]:  # fmt: skip
    lines, runs = ctx.plan.lines, len(rounds)
    extra, rate, rss = s["extra_cpu_us"], s["lines_per_s"], s["added_rss_mib"]
    head = f"4 {lines} lines, "
    out = [
        Row(f"{head}bare print(): CPU per line", s["cpu_us"]["bare"], None, "us", note=
            f"median of {runs} rounds; bare lines/s {rate['bare']:.0f}, peak RSS "
            f"{s['rss_mib']['bare']:.1f} MiB"),
    ]  # fmt: skip
    for name in SHIPPING:
        label = LABEL[name]
        out += [
            Row(f"{head}{label}: extra CPU per shipped line", extra[name], s["cpu_us"]["bare"],
                "us", extra[name] / s["cpu_us"]["bare"], f"<= {CPU_LIMIT_US:g} us",
                extra[name] <= CPU_LIMIT_US if name == "vlhook" else None,
                "baseline: bare print()'s CPU per line; ratio: extra / bare"),
            Row(f"{head}{label}: lines/s end to end", rate[name], rate["bare"], "lines/s",
                rate[name] / rate["bare"], f">= {RATE_LIMIT // 1000}k",
                rate[name] >= RATE_LIMIT if name == "vlhook" else None,
                "lines stored / child wall (spawn to exit, after the last acknowledgement); "
                "baseline: bare print()" + waits_note(rounds, name)),
            Row(f"{head}{label}: added peak RSS", rss[name], s["rss_mib"]["bare"], "MiB",
                s["rss_mib"][name] / s["rss_mib"]["bare"], f"<= {RSS_LIMIT_MIB:g} MiB",
                rss[name] <= RSS_LIMIT_MIB if name == "vlhook" else None,
                "VmHWM over bare's; baseline and ratio: whole-child peak RSS"),
            Row(f"{head}{label}: lines not stored", s["lost"][name], lines, "lines", None,
                "= 0", s["lost"][name] == 0, f"worst of {runs}" + lost_note(rounds, name, lines)),
        ]  # fmt: skip
    if ctx.server.pid:
        out.append(server_row(head, s["server_cpu_us"]))
    out.append(Row(f"{head}vlhook vs batcher: extra CPU per line", extra["vlhook"],
                   extra["batcher"], "us", extra["vlhook"] / extra["batcher"],
                   f"moonshot < 1x, <= {CPU_MOONSHOT_US:g} us"))  # fmt: skip
    return out


def server_row(head: str, server_us: dict[str, float]) -> Row:
    """What storing the lines cost the server: on a machine of few cores it is CPU the
    program's pipeline does not get, and vlhook's entries carry more fields than the batcher's
    (level, container_name, job, host, pid and a stream of their own, against stream alone)."""
    return Row(
        f"{head}server CPU per stored line, vlhook (baseline: the batcher's)",
        server_us["vlhook"],
        server_us["batcher"],
        "us",
        server_us["vlhook"] / server_us["batcher"] if server_us["batcher"] else None,
        note="the server's CPU from the child's spawn to its lines flushed, per line "
        "stored; vlhook's entries: 8 fields and stream fields, the batcher's: 3",
    )


def waits_note(rounds: list[dict[str, Shipped]], name: str) -> str:
    """How often and how long the program waited for room (vlhook's `ON_FULL=block`)."""
    if name != "vlhook":
        return ""
    waits = median([r[name].room_waits for r in rounds])
    spent = median([r[name].room_wait_ms for r in rounds])
    return f"; the program waited for room {waits:.0f} times, {spent:.0f} ms in all (median)"


def lost_note(rounds: list[dict[str, Shipped]], name: str, lines: int) -> str:
    worst = min((r[name] for r in rounds), key=lambda shipped: shipped.stored)
    if name != "vlhook" or worst.stored == lines:
        return ""
    return f"; shed {worst.shed}, spooled {worst.spooled}; child said: {worst.warning or '-'}"


def default_settings(ctx: Context) -> None:
    """One run as a program that sets nothing runs: the buffer fills and sheds, the exit
    budget spools what it can and counts the rest. Nothing may vanish unaccounted."""
    shipped = ship(ctx, "vlhook", {})
    lines = ctx.plan.lines
    rest = lines - shipped.stored - shipped.shed - shipped.spooled
    note = (f"shed (buffer full) {shipped.shed}, spooled {shipped.spooled}, the rest ({rest}) "
            f"counted at exit; child said: {shipped.warning or '(nothing)'}")  # fmt: skip
    ctx.add(Row(f"4 {lines} lines, vlhook with default settings: lines stored", shipped.stored,
                lines, "lines", shipped.stored / lines, note=note))  # fmt: skip
