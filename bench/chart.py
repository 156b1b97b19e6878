"""The bench's comparison as a chart: a hand-written SVG (no plotting library), readable on
GitHub in light and dark mode (it draws its own white background).

Four panels of horizontal bars: CPU per line and lines/s end to end for bare print(), vlhook
and the hand-written batcher, with the target and moonshot lines; the whole-process ratios
(silent, one line, Lambda cold start) and the per-call ratios (paced print(), logger.info())
against bare, each with its own target mark.

`python bench/chart.py [RESULTS.json [OUT.svg]]` redraws it from a run's results.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from html import escape
from typing import Any, Optional

from targets import (
    CALL_LIMIT,
    COLD_LIMIT_MS,
    COLD_MOONSHOT_MS,
    CPU_LIMIT_US,
    CPU_MOONSHOT_US,
    ONE_LINE_LIMIT,
    ONE_LINE_MOONSHOT,
    PACED_RATE,
    RATE_LIMIT,
    RATE_MOONSHOT,
    SILENT_LIMIT,
)

WIDTH = 880
LABEL_W = 230  # the rows' names, left of the bars
PLOT_X0, PLOT_X1 = LABEL_W + 10, WIDTH - 40
ROW_H, BAR_H = 38, 18
COLORS = {"bare": "#9e9e9e", "vlhook": "#1f6fb4", "batcher": "#e8851a"}
TARGET, MOONSHOT, MUTED = "#c62828", "#2e7d32", "#555555"
FONT = 'font-family="-apple-system,Segoe UI,Helvetica,Arial,sans-serif"'


@dataclass
class Mark:
    value: float
    label: str
    color: str


@dataclass
class Bar:
    label: str
    value: float
    text: str
    color: str
    marks: list[Mark] = field(default_factory=list)  # this row's own targets


@dataclass
class Panel:
    title: str
    bars: list[Bar]
    marks: list[Mark] = field(default_factory=list)  # across every row
    origin: Optional[Mark] = None  # a reference line (1x: bare's time)


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "start",
          color: str = "#222", weight: str = "normal") -> str:  # fmt: skip
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}">{escape(text)}</text>')  # fmt: skip


def _line(x: float, y0: float, y1: float, color: str, dashed: bool = True) -> str:
    dash = ' stroke-dasharray="5,3"' if dashed else ""
    return (f'<line x1="{x:.1f}" y1="{y0:.1f}" x2="{x:.1f}" y2="{y1:.1f}" stroke="{color}" '
            f'stroke-width="1.5"{dash}/>')  # fmt: skip


def _panel(panel: Panel, top: float) -> tuple[list[str], float]:
    """The panel's SVG elements and its height."""
    values = [b.value for b in panel.bars] + [m.value for m in panel.marks]
    values += [m.value for b in panel.bars for m in b.marks]
    scale = (PLOT_X1 - PLOT_X0) / (max(values) * 1.12)

    def x(value: float) -> float:
        return PLOT_X0 + value * scale

    out = [_text(10, top + 16, panel.title, 14, weight="bold")]
    rows_top = top + 30 + (14 if panel.marks else 0)
    bottom = rows_top + ROW_H * len(panel.bars)
    for mark, (dx, anchor) in _placed(panel.marks):
        out.append(_line(x(mark.value), rows_top - 4, bottom, mark.color))
        out.append(_text(x(mark.value) + dx, rows_top - 8, mark.label, 11, anchor, mark.color))
    if panel.origin is not None:
        out.append(_line(x(panel.origin.value), rows_top, bottom, MUTED, dashed=False))
        out.append(_text(x(panel.origin.value), bottom + 12, panel.origin.label, 10, "middle",
                         MUTED))  # fmt: skip
    for index, bar in enumerate(panel.bars):
        y = rows_top + index * ROW_H + 12
        out.append(_text(LABEL_W, y + BAR_H - 4, bar.label, 12, "end"))
        out.append(f'<rect x="{PLOT_X0}" y="{y:.1f}" width="{max(bar.value * scale, 1):.1f}" '
                   f'height="{BAR_H}" fill="{bar.color}" rx="2"/>')  # fmt: skip
        out.append(_text(x(bar.value) + 5, y + BAR_H - 4, bar.text, 12, weight="bold"))
        for mark, (dx, anchor) in _placed(bar.marks):
            out.append(_line(x(mark.value), y - 3, y + BAR_H + 3, mark.color))
            out.append(_text(x(mark.value) + dx, y - 4, mark.label, 10, anchor, mark.color))
    return out, bottom - top + (26 if panel.origin is not None else 14)


def _placed(marks: list[Mark]) -> list[tuple[Mark, tuple[int, str]]]:
    """Two marks side by side: the lower one's label to the left of its line, the higher one's
    to the right, so that close marks do not write over each other."""
    ordered = sorted(marks, key=lambda mark: mark.value)
    if len(ordered) != 2:
        return [(mark, (0, "middle")) for mark in ordered]
    return [(ordered[0], (-3, "end")), (ordered[1], (3, "start"))]


def _tick(met: bool) -> str:
    return "  ✓" if met else "  ✗"


def panels(s: dict[str, Any]) -> list[Panel]:
    out: list[Panel] = []
    names = (("bare", "bare print()"), ("vlhook", "vlhook"), ("batcher", "hand-written batcher"))
    if "e2e" in s:
        e = s["e2e"]
        cpu, rate, bare_cpu = e["cpu_us"], e["lines_per_s"], e["cpu_us"]["bare"]
        out.append(Panel(
            f"CPU per line, {e['lines']:,} lines end to end to VictoriaLogs (µs, less is better)",
            [Bar(label, cpu[k], f"{cpu[k]:.2f} µs" + (_tick(cpu[k] - bare_cpu <= CPU_LIMIT_US)
                                                      if k == "vlhook" else ""), COLORS[k])
             for k, label in names],
            [Mark(bare_cpu + CPU_LIMIT_US, f"target: bare + {CPU_LIMIT_US:g} µs", TARGET),
             Mark(bare_cpu + CPU_MOONSHOT_US, f"moonshot: + {CPU_MOONSHOT_US:g} µs", MOONSHOT)],
        ))  # fmt: skip
        out.append(Panel(
            "Lines per second end to end (more is better)",
            [Bar(label, rate[k], f"{rate[k] / 1000:.0f}k" + (_tick(rate[k] >= RATE_LIMIT)
                                                            if k == "vlhook" else ""), COLORS[k])
             for k, label in names],
            [Mark(RATE_LIMIT, f"target {RATE_LIMIT // 1000}k", TARGET),
             Mark(RATE_MOONSHOT, f"moonshot {RATE_MOONSHOT // 1000}k", MOONSHOT)],
        ))  # fmt: skip
    whole: list[Bar] = []
    if "silent" in s:
        ratio = s["silent"]["ratio"]
        whole.append(Bar("process that prints nothing", ratio, f"{ratio:.2f}x" +
                         _tick(ratio <= SILENT_LIMIT), COLORS["vlhook"],
                         [Mark(SILENT_LIMIT, f"target {SILENT_LIMIT:.2f}x", TARGET)]))  # fmt: skip
    if "one_line" in s:
        ratio = s["one_line"]["ratio"]
        whole.append(Bar("script printing one line", ratio,
                         f"{ratio:.2f}x" + _tick(ratio <= ONE_LINE_LIMIT), COLORS["vlhook"],
                         [Mark(ONE_LINE_LIMIT, f"target {ONE_LINE_LIMIT:g}x", TARGET),
                          Mark(ONE_LINE_MOONSHOT, f"moonshot {ONE_LINE_MOONSHOT:g}x",
                               MOONSHOT)]))  # fmt: skip
    if "lambda_cold" in s:
        c = s["lambda_cold"]
        bare = c["bare_ms"]
        whole.append(Bar("Lambda cold start", c["ratio"],
                         f"{c['ratio']:.2f}x ({c['added_ms']:+.0f} ms)" +
                         _tick(c["added_ms"] <= COLD_LIMIT_MS), COLORS["vlhook"],
                         [Mark((bare + COLD_LIMIT_MS) / bare, f"+{COLD_LIMIT_MS:g} ms", TARGET),
                          Mark((bare + COLD_MOONSHOT_MS) / bare, f"+{COLD_MOONSHOT_MS:g} ms",
                               MOONSHOT)]))  # fmt: skip
    if whole:
        out.append(Panel("Whole process with vlhook, times bare's (less is better)", whole,
                         origin=Mark(1.0, "bare = 1x", MUTED)))  # fmt: skip
    calls: list[Bar] = []
    for key, label in (("paced_median_ratio", f"print() at {PACED_RATE:,} lines/s"),
                       ("logging_ratio", "logger.info() vs StreamHandler")):  # fmt: skip
        if key in s:
            calls.append(Bar(label, s[key], f"{s[key]:.2f}x" + _tick(s[key] <= CALL_LIMIT),
                             COLORS["vlhook"], [Mark(CALL_LIMIT, f"target {CALL_LIMIT:g}x",
                                                     TARGET)]))  # fmt: skip
    if calls:
        out.append(Panel("The program's own calls with vlhook, times bare's per call", calls,
                         origin=Mark(1.0, "bare = 1x", MUTED)))  # fmt: skip
    return out


def render(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    body: list[str] = []
    top = 10.0
    for panel in panels(summary):
        parts, height = _panel(panel, top)
        body += parts
        top += height + 16
    captions = [
        "✓ / ✗: target met / not met; dashed red: the target, dashed green: the moonshot. "
        "Every figure against a baseline of the same run.",
        f"{meta.get('finished', '')}: {meta.get('cpus', '?')} cores, load average "
        f"{meta.get('load_average', '?')}; Python {meta.get('python', '?')}",
        str(meta.get("server", "")),
    ]
    for caption in captions:
        body.append(_text(10, top + 4, caption, 10, color=MUTED))
        top += 14
    height = top + 4
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" {FONT}>',
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="#ffffff"/>',
        *body,
        "</svg>",
    ]) + "\n"  # fmt: skip


def main(argv: list[str]) -> int:
    results = argv[0] if argv else os.path.join(os.path.dirname(__file__), "results",
                                                "latest.json")  # fmt: skip
    out = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(results), "performance.svg")
    with open(results) as fh:
        data = json.load(fh)
    with open(out, "w") as fh:
        fh.write(render(data["summary"], data["meta"]))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
