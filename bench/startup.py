"""Whole processes (figures 1, 2 and 5): what vlhook adds to a short-lived program.

Figure 1: `python -c pass` bare, with the drop-in inactive (no URL), and active (a process that
writes nothing). Figure 2: a script that prints one line and exits, bare and active; every
active run's line must be stored exactly once. Figure 5: what the modules a shipper might use
cost to import, against `python -c pass`.
"""

from __future__ import annotations

import uuid

from harness import (
    ChildRun,
    Context,
    Row,
    importable,
    interleaved,
    median,
    ratio_row,
    rotated,
    spread,
    walls_ms,
)
from server import word
from targets import INACTIVE_LIMIT, ONE_LINE_LIMIT, SILENT_LIMIT

IMPORTS = ("orjson", "json", "http.client", "logging", "threading", "typing", "dataclasses", "re")
OPTIONAL_IMPORTS = ("requests", "urllib3", "wrapt", "pythonjsonlogger")


def fig_startup(ctx: Context) -> None:
    names = ["bare", "inactive", "active", *(["before"] if ctx.baseline_src else [])]
    variants = {name: (["-c", "pass"], ctx.env(name)) for name in names}
    walls = walls_ms(interleaved(ctx, variants, ctx.plan.startup_runs))
    for name, values in walls.items():
        ctx.samples[f"startup.{name}.ms"] = values
    bare = median(walls["bare"])
    ctx.add(Row("1 start-up bare (python -c pass)", bare, None, "ms", note=spread(walls["bare"])))
    for name, label, limit in (
        ("inactive", "drop-in inactive (no URL)", INACTIVE_LIMIT),
        ("active", "vlhook active, writes nothing", SILENT_LIMIT),
    ):
        value = median(walls[name])
        ctx.add(ratio_row(f"1 start-up, {label}", value, bare, "ms", limit, spread(walls[name])))
    ctx.summary["silent"] = {"bare_ms": bare, "active_ms": median(walls["active"]),
                             "ratio": median(walls["active"]) / bare}  # fmt: skip
    if "before" in walls:
        ctx.add(before_row("1 start-up, vlhook active, writes nothing", walls))


def before_row(label: str, values: dict[str, list[float]]) -> Row:
    """This code against the older checkout's (--baseline-src), measured in the same rounds."""
    return ratio_row(f"{label}: this code vs before", median(values["active"]),
                     median(values["before"]), "ms", None,
                     f"before: {spread(values['before'])}")  # fmt: skip


def fig_one_line(ctx: Context) -> None:
    """Each run prints its own tagged line, so that the server can be asked for each one."""
    names = ["bare", "active", *(["before"] if ctx.baseline_src else [])]
    runs: dict[str, list[ChildRun]] = {name: [] for name in names}
    tags: list[str] = []
    for index in range(2 + ctx.plan.startup_runs):  # two warm-up rounds, whose lines count too
        for name in rotated(list(runs), index):
            tag = uuid.uuid4().hex[:16]
            run = ctx.run(["-c", f"print('hello from the vlhook bench {tag}')"], ctx.env(name))
            if name != "bare":
                tags.append(tag)
            if index >= 2:
                runs[name].append(run)
    ctx.server.stored(*word(tags[-1]), 1)  # the last one arrived: the others had time to
    counts = [ctx.server.count(*word(tag)) for tag in tags]
    once = sum(1 for count in counts if count == 1)
    note = f"stored exactly once: {once} of {len(tags)} lines (counts: {sorted(set(counts))})"
    for label, cpu in (("wall", False), ("CPU user+sys", True)):
        values = {name: [(r.cpu_s if cpu else r.wall_s) * 1000 for r in rs]
                  for name, rs in runs.items()}  # fmt: skip
        for name in names:
            ctx.samples[f"one_line.{label}.{name}.ms"] = values[name]
        bare, active = median(values["bare"]), median(values["active"])
        limit = None if cpu else ONE_LINE_LIMIT
        detail = f"{spread(values['active'])}; {note}"
        ctx.add(ratio_row(f"2 print 1 line + exit, {label}", active, bare, "ms", limit, detail))
        if "before" in values:
            ctx.add(before_row(f"2 print 1 line + exit, {label}", values))
        if not cpu:
            ctx.summary["one_line"] = {"bare_ms": bare, "active_ms": active,
                                       "ratio": active / bare, "once": once,
                                       "lines": len(tags)}  # fmt: skip
    note = "each active run's tagged line, asked for by its tag" + (
        " (this code's and the older one's)" if ctx.baseline_src else ""
    )
    ctx.add(ratio_row("2 print 1 line + exit: lines stored exactly once", once, len(tags),
                      "lines", note=note))  # fmt: skip


def fig_imports(ctx: Context) -> None:
    modules = []
    for module in IMPORTS + OPTIONAL_IMPORTS:
        if importable(ctx, module):
            modules.append(module)
        else:
            ctx.notes.append(f"5: {module} is not importable here: skipped")
    variants = {name: (["-c", f"import {name}" if name else "pass"], ctx.env("bare"))
                for name in ["", *modules]}  # fmt: skip
    walls = walls_ms(interleaved(ctx, variants, ctx.plan.import_runs, warmup=1))
    base = median(walls[""])
    for module in modules:
        value = median(walls[module])
        row = ratio_row(f"5 import {module}", value - base, base, "ms", note=spread(walls[module]))
        row.ratio = value / base  # the whole `python -c "import X"` against `python -c pass`
        ctx.add(row)
