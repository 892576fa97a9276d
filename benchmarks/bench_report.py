"""Turning measurements into the table, the JSON file and the chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_impls import BASELINE, IMPLS
from bench_spec import Metric

__all__ = ["Row", "format_table", "make_chart", "read_json", "write_json"]


@dataclass
class Row:
    """All repetitions of one metric of one workload on one implementation."""

    workload: str
    metric: Metric
    impl: str
    env: str = "default"  # the malloc environment's name
    values: list[float] = field(default_factory=list)
    notes: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


Index = dict[tuple[str, str, str, str], Row]


def _index(rows: Sequence[Row]) -> Index:
    return {(r.env, r.workload, r.metric.name, r.impl): r for r in rows}


def ratio(row: Row, index: Index, other: str) -> float | None:
    """*row*'s median over that of implementation *other* (same workload, metric, env)."""
    reference = index.get((row.env, row.workload, row.metric.name, other))
    if reference is None or row.median is None or not reference.median:
        return None
    return row.median / reference.median


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    """One line per (workload, metric, implementation); ratios against native asyncio.

    ``vs peer`` compares asyncstreams with what it replaces on the same event loop:
    asyncio's streams (default loop, uvloop) and hand-written trio.
    """
    index = _index(rows)
    header = (
        "workload",
        "metric",
        "unit",
        "implementation",
        "median",
        "min..max",
        "spread",
        "vs asyncio",
        "vs peer",
    )
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        unit = row.metric.unit + ("" if row.metric.higher_is_better else " (lower better)")
        if row.median is None:
            failed = "FAILED" if row.failures else "no data"
            lines.append((row.workload, row.metric.name, unit, row.impl, failed, "", "", "", ""))
            continue
        low, high, med = min(row.values), max(row.values), row.median
        spread = f"±{(high - low) / 2 / med * 100:.0f}%" if med else "-"
        peer = IMPLS[row.impl].peer
        vs_peer = f"{_fmt_ratio(ratio(row, index, peer))} ({peer})" if peer else ""
        failed = f"  {len(row.failures)} failed" if row.failures else ""
        lines.append(
            (
                row.workload,
                row.metric.name,
                unit,
                row.impl,
                _fmt(med),
                f"{_fmt(low)}..{_fmt(high)}",
                spread,
                _fmt_ratio(ratio(row, index, BASELINE)),
                vs_peer + failed,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {4, 5, 6, 7}
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
        elif n + 1 < len(lines) and lines[n + 1][:2] != line[:2]:
            out.append("")
    return "\n".join(out)


def write_json(path: Path, meta: dict[str, Any], rows: Sequence[Row]) -> None:
    index = _index(rows)
    results = []
    for row in rows:
        peer = IMPLS[row.impl].peer
        results.append(
            {
                "workload": row.workload,
                "metric": row.metric.name,
                "unit": row.metric.unit,
                "higher_is_better": row.metric.higher_is_better,
                "implementation": row.impl,
                "malloc_env": row.env,
                "values": row.values,
                "median": row.median,
                "min": min(row.values) if row.values else None,
                "max": max(row.values) if row.values else None,
                "ratio_vs_asyncio": ratio(row, index, BASELINE),
                "peer": peer,
                "ratio_vs_peer": ratio(row, index, peer) if peer else None,
                "notes": sorted(row.notes),
                "failures": row.failures,
            }
        )
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


def read_json(path: Path) -> tuple[dict[str, Any], list[Row]]:
    """The meta data and rows :func:`write_json` saved."""
    saved = json.loads(path.read_text())
    rows = [
        Row(
            r["workload"],
            Metric(r["metric"], r["unit"], r["higher_is_better"]),
            r["implementation"],
            r["malloc_env"],
            r["values"],
            set(r["notes"]),
            r["failures"],
        )
        for r in saved["results"]
    ]
    meta: dict[str, Any] = saved["meta"]
    return meta, rows


def make_chart(path: Path, rows: Sequence[Row], title: str) -> None:
    """Bars of each implementation's median ratio to native asyncio, one panel per metric.

    With several malloc environments each implementation gets a bar per environment,
    each compared with native asyncio in the same environment.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = _index(rows)
    panels = list(dict.fromkeys((r.workload, r.metric) for r in rows))
    impls = list(dict.fromkeys(r.impl for r in rows if r.impl != BASELINE))
    envs = list(dict.fromkeys(r.env for r in rows))
    columns = 2
    nrows = (len(panels) + columns - 1) // columns
    panel_height = 0.3 * len(impls) * (1 + 0.5 * (len(envs) - 1)) + 0.6
    header = 0.25 * (title.count("\n") + 1) + (0.35 if len(envs) > 1 else 0.1)
    height = panel_height * nrows + header
    fig, axes = plt.subplots(nrows, columns, figsize=(13, height), squeeze=False)
    colors = plt.get_cmap("tab10")
    bar_height = 0.8 / len(envs)
    for ax, (workload, metric) in zip(axes.flat, panels, strict=False):
        highest = 1.0
        for e, env in enumerate(envs):
            ratios = []
            for impl in impls:
                row = index.get((env, workload, metric.name, impl))
                ratios.append(ratio(row, index, BASELINE) if row else None)
            values = [r if r is not None else 0.0 for r in ratios]
            highest = max(highest, *values)
            offsets = [i - 0.4 + bar_height * (e + 0.5) for i in range(len(impls))]
            color = (
                [colors(e)] * len(impls)
                if len(envs) > 1
                else [colors(i % 10) for i in range(len(impls))]
            )
            label = f"malloc: {env}" if len(envs) > 1 else None
            bars = ax.barh(offsets, values, height=bar_height, color=color, label=label)
            for bar, r in zip(bars, ratios, strict=True):
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    f" {r:.2f}" if r is not None else " n/a",
                    va="center",
                    fontsize=6 if len(envs) > 1 else 7,
                )
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(impls)), impls, fontsize=8)
        ax.invert_yaxis()
        better = "higher" if metric.higher_is_better else "lower"
        ax.set_title(f"{workload}: {metric.name} ({metric.unit}), {better} is better", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(0, highest * 1.2)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10, y=1 - 0.05 / height)
    if len(envs) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(
            handles,
            labels,
            loc="upper center",
            ncols=len(envs),
            fontsize=8,
            bbox_to_anchor=(0.5, 1 - (header - 0.35) / height),
        )
    fig.tight_layout(rect=(0, 0, 1, 1 - (header - 0.8) / height))
    fig.savefig(path, dpi=120)
    plt.close(fig)
