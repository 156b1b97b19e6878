"""The performance targets vlhook is held to, and how one run's figures meet them.

Each target reads the run's summary (what the figures put in `Context.summary`) and says what
was measured, in words a reader of docs/performance.md can check against the detail rows, and
whether the target (and its moonshot, where there is one) is met. A figure that did not run
(`--only`) leaves its targets out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

# Per shipped line, 200,000 lines end to end (figure 4).
CPU_LIMIT_US, CPU_MOONSHOT_US = 4.0, 2.0  # extra CPU over bare print(); moonshot: below the batcher
RATE_LIMIT, RATE_MOONSHOT = 150_000, 250_000  # lines/s
RSS_LIMIT_MIB = 16.0  # added peak RSS
# Whole processes (figures 1, 2 and 9): vlhook against bare.
SILENT_LIMIT = 1.10  # a process that writes nothing
INACTIVE_LIMIT = 1.02  # the drop-in on PYTHONPATH, no URL
ONE_LINE_LIMIT, ONE_LINE_MOONSHOT = 2.0, 1.3
COLD_LIMIT_MS, COLD_MOONSHOT_MS = 15.0, 5.0  # Lambda: spawn to first response, added
# The program's own calls (figures 3 and 8).
CALL_LIMIT = 2.0  # logger.info() and print() at PACED_RATE: at most this many times bare
PACED_RATE = 1000  # lines per second
#: Figure 3's logger.info() loop is also run with batches this large (no target).
BIG_BATCH_LINES = 5000
TRACE_ADDED_LIMIT_NS = 300  # what reading the current span may add to one print()


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: Optional[bool]
    moonshot: Optional[bool] = None  # None: the target has no moonshot

    @property
    def met_text(self) -> str:
        if self.met is None:
            return "-"
        text = "yes" if self.met else "**no**"
        if self.moonshot is not None:
            text += ", moonshot too" if self.moonshot else " (moonshot: not yet)"
        return text


def _e2e_cpu(s: dict[str, Any]) -> Verdict:
    e = s["e2e"]
    extra, batcher = e["extra_cpu_us"]["vlhook"], e["extra_cpu_us"]["batcher"]
    return Verdict(
        f"extra CPU per shipped line ≤ {CPU_LIMIT_US:g} µs (moonshot ≤ {CPU_MOONSHOT_US:g} µs, "
        "below the hand-written batcher)",
        f"{extra:.2f} µs over bare print()'s {e['cpu_us']['bare']:.2f} µs; the batcher "
        f"{batcher:.2f} µs ({extra / batcher:.2f}x)",
        extra <= CPU_LIMIT_US,
        extra <= CPU_MOONSHOT_US and extra < batcher,
    )


def _e2e_rate(s: dict[str, Any]) -> Verdict:
    rate = s["e2e"]["lines_per_s"]
    return Verdict(
        f"≥ {RATE_LIMIT // 1000}k lines/s end to end to a real server (moonshot "
        f"{RATE_MOONSHOT // 1000}k)",
        f"{rate['vlhook'] / 1000:.0f}k lines/s (batcher {rate['batcher'] / 1000:.0f}k, bare "
        f"print() {rate['bare'] / 1000:.0f}k)",
        rate["vlhook"] >= RATE_LIMIT,
        rate["vlhook"] >= RATE_MOONSHOT,
    )


def _e2e_rss(s: dict[str, Any]) -> Verdict:
    e = s["e2e"]
    added = e["added_rss_mib"]["vlhook"]
    return Verdict(
        f"added peak RSS ≤ {RSS_LIMIT_MIB:g} MiB at {e['lines']:,} lines",
        f"+{added:.1f} MiB over bare's {e['rss_mib']['bare']:.1f} MiB (batcher "
        f"+{e['added_rss_mib']['batcher']:.1f} MiB)",
        added <= RSS_LIMIT_MIB,
    )


def _e2e_lost(s: dict[str, Any]) -> Verdict:
    e = s["e2e"]
    return Verdict(
        f"every line stored ({e['lines']:,} lines, `ON_FULL=block`)",
        f"{e['lost']['vlhook']} lines not stored (worst of {e['runs']} runs)",
        e["lost"]["vlhook"] == 0,
    )


def _one_line(s: dict[str, Any]) -> Verdict:
    o = s["one_line"]
    return Verdict(
        f"a script that prints one line ≤ {ONE_LINE_LIMIT:g}x a bare one (moonshot "
        f"{ONE_LINE_MOONSHOT:g}x)",
        f"{o['ratio']:.2f}x ({o['active_ms']:.1f} ms against {o['bare_ms']:.1f} ms); "
        f"{o['once']} of {o['lines']} lines stored exactly once",
        o["ratio"] <= ONE_LINE_LIMIT and o["once"] == o["lines"],
        o["ratio"] <= ONE_LINE_MOONSHOT,
    )


def _silent(s: dict[str, Any]) -> Verdict:
    o = s["silent"]
    return Verdict(
        f"a process that prints nothing ≤ {SILENT_LIMIT:.2f}x",
        f"{o['ratio']:.2f}x ({o['active_ms']:.1f} ms against {o['bare_ms']:.1f} ms)",
        o["ratio"] <= SILENT_LIMIT,
    )


def _lambda_cold(s: dict[str, Any]) -> Verdict:
    o = s["lambda_cold"]
    return Verdict(
        f"Lambda cold start, process start to first response: ≤ {COLD_LIMIT_MS:g} ms added "
        f"(moonshot {COLD_MOONSHOT_MS:g} ms)",
        f"{o['added_ms']:+.1f} ms ({o['active_ms']:.1f} ms against {o['bare_ms']:.1f} ms, "
        f"{o['ratio']:.2f}x)",
        o["added_ms"] <= COLD_LIMIT_MS,
        o["added_ms"] <= COLD_MOONSHOT_MS,
    )


def _lambda_once(s: dict[str, Any]) -> Verdict:
    o = s["lambda_cold"]
    return Verdict(
        "… with the init-phase lines delivered exactly once",
        f"{o['once']} of {o['processes']} processes; stored before the second invocation in "
        f"{o['early']} of {o['processes']}",
        o["once"] == o["processes"],
    )


def _logging(s: dict[str, Any]) -> Verdict:
    ratio = s["logging_ratio"]
    measured = f"{ratio:.2f}x (tight loop, caller's wall time)"
    if "logging_one_cpu_ratio" in s:  # the same loop without hand-overs across CPUs
        measured += f"; {s['logging_one_cpu_ratio']:.2f}x with the process on one CPU"
    if "logging_big_batches_ratio" in s:  # the same loop with fewer requests
        big = s["logging_big_batches_ratio"]
        measured += f"; {big:.2f}x in batches of {BIG_BATCH_LINES:,} lines"
    what = f"`logger.info()` ≤ {CALL_LIMIT:g}x a bare StreamHandler call"
    return Verdict(what, measured, ratio <= CALL_LIMIT)


def _paced(s: dict[str, Any]) -> Verdict:
    ratio = s["paced_median_ratio"]
    measured = f"{ratio:.2f}x median per call (p99 {s['paced_p99_ratio']:.2f}x)"
    if "paced_same_ratio" in s:  # the same call, free of what varies between processes
        measured += f"; {s['paced_same_ratio']:.2f}x the tee's own stream in one process"
    return Verdict(f"`print()` at {PACED_RATE:,} lines/s ≤ {CALL_LIMIT:g}x bare", measured,
                   ratio <= CALL_LIMIT)  # fmt: skip


def _capture(s: dict[str, Any]) -> Verdict:
    return Verdict(
        "(no target; kept in view) one capture on the program's thread: the tee's write path",
        f"{s['capture_ns']:+.0f} ns per `print()` over bare, sender asleep",
        None,
    )


#: In the order of the issue; each names the summary key its figure fills.
TARGETS: tuple[tuple[str, Callable[[dict[str, Any]], Verdict]], ...] = (
    ("e2e", _e2e_cpu),
    ("e2e", _e2e_rate),
    ("one_line", _one_line),
    ("silent", _silent),
    ("lambda_cold", _lambda_cold),
    ("lambda_cold", _lambda_once),
    ("logging_ratio", _logging),
    ("paced_median_ratio", _paced),
    ("e2e", _e2e_rss),
    ("e2e", _e2e_lost),
    ("capture_ns", _capture),
)


def evaluate(summary: dict[str, Any]) -> list[Verdict]:
    return [check(summary) for key, check in TARGETS if key in summary]


def markdown(verdicts: list[Verdict]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {v.target} | {v.measured} | {v.met_text} |" for v in verdicts]
    return "\n".join(lines)
