"""Figure 6: what making entries costs the sender (level, fields, redaction) and writing them as
JSON lines, in-process, per entry, for groups of 256 captures of one kind made as the sender
makes them (a run of whole lines, a run of records): this code with redaction on and off, and
with `--baseline-src DIR` an older checkout's src/, interleaved run by run."""

from __future__ import annotations

import json
import subprocess

from children import ENTRIES_CHILD
from harness import CHILD_TIMEOUT_S, PY, SRC, Context, alternated, ratio_row, spread

ENTRY_KINDS = {
    "plain": "plain line (100 chars)",
    "long": "plain line (1,000 chars)",
    "traced": "plain line with trace context",
    "url": "plain line with a URL (httpx's request line)",
    "bound": "plain line with trace context and bound fields",
    "flat": "JSON line, flat",
    "stamped": "JSON line, flat, its own time",
    "stamped_traced": "JSON line, flat, its own time, trace context",
    "json": "JSON line, nested objects",
    "record": "logging record",
    "record_url": "logging record with a URL (httpx's request line)",
    "bound_records": "logging record with trace context and bound fields",
    "record_extra": "logging record with flat extras",
    "records": "logging record with nested extras",
    "record_event": "logging record, structlog's event dict and its JSON",
    "record_loguru": "loguru record with a bound field",
}


#: A pattern of the user's (VICTORIALOGS_REDACT), as security.md suggests one, and the kinds
#: of entry its rows are given for.
USER_PATTERN = {"VICTORIALOGS_REDACT": r"ghp_[A-Za-z0-9]{36},,xox[abpr]-[A-Za-z0-9-]{10,}"}
PATTERN_KINDS = ("plain", "long", "flat", "record", "record_extra")


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
    """ns per entry on the sender, made and written as JSON: this code with redaction on and
    off, and (with --baseline-src) an older code with its defaults, interleaved run by run.
    Each figure is the lowest of the runs' medians: on a shared machine a busy moment only ever
    adds, and an in-process loop of a few microseconds shows it more than a whole process
    does."""
    variants = {"on": (SRC, {}), "off": (SRC, {"VICTORIALOGS_REDACT": "off"}),
                "pattern": (SRC, USER_PATTERN)}  # fmt: skip
    if ctx.baseline_src:
        variants["before"] = (ctx.baseline_src, {})
        variants["pattern_before"] = (ctx.baseline_src, USER_PATTERN)
    costs = alternated(list(variants), ctx.plan.entry_runs,
                       lambda name, _: entry_costs(ctx, *variants[name]))  # fmt: skip
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
        if kind in PATTERN_KINDS:
            _pattern_rows(ctx, label, per, on)


def _pattern_rows(ctx: Context, label: str, per: dict[str, list[float]], on: float) -> None:
    """What a pattern of the user's adds to an entry (against the built-ins alone), and, with
    a baseline, what this code makes of it against the code before."""
    theirs = min(per["pattern"])
    note = f"lowest of {ctx.plan.entry_runs} runs; {spread(per['pattern'])}; {USER_PATTERN}"
    ctx.add(ratio_row(f"6 {label}, a pattern of the user's vs none", theirs, on, "ns", None,
                      note))  # fmt: skip
    if "pattern_before" in per:
        before = min(per["pattern_before"])
        ctx.add(ratio_row(f"6 {label}, a pattern of the user's, this code vs before", theirs,
                          before, "ns", None, note))  # fmt: skip
