"""Draw a results JSON as a PNG: one panel per headline figure, one bar per system/config.

Runs in the benchmark-only tool venv (``benchmarks/.venv-tools``, matplotlib), never in duro's:

    benchmarks/.venv-tools/bin/python -m benchmarks._chart results.json results.png
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"duro": "#2b6cb0", "duroxide": "#c05621", "dbos": "#2f855a"}

PANELS: list[tuple[str, str, str, bool]] = [
    # (workload, field, title, higher is better)
    ("W1", "orch_per_s", "W1 fan-out/fan-in: orchestrations/s", True),
    ("W2", "orch_per_s", "W2 chain: orchestrations/s", True),
    ("W3", "p50_ms", "W3 10 ms timer: p50 latency, ms", False),
    ("W1", "peak_rss_mb", "W1 peak RSS, MB", False),
    ("W4", "extra.growth_mid_vs_early", "W4 turn cost growth, event 2,000 vs 20 (x)", False),
    ("W5", "extra.wakeup_per_s", "W5 wake-up throughput, orchestrations/s", True),
]


def _value(row: dict[str, Any], field: str) -> float | None:
    if field.startswith("extra."):
        return row.get("extra", {}).get(field.removeprefix("extra."))
    return row.get(field)


def draw(doc: dict[str, Any], out: str) -> None:
    summary = [r for r in doc["summary"] if r["runs_ok"]]
    fig, axes = plt.subplots(3, 2, figsize=(13, 12))
    for ax, (workload, field, title, higher) in zip(axes.flat, PANELS, strict=True):
        cells = [r for r in summary if r["workload"] == workload]
        full_n = max((r["n"] for r in cells), default=0)
        rows = [
            (
                f"{r['system']}/{r['config']}" + (f" (n={r['n']:,})" if r["n"] != full_n else ""),
                _value(r, field),
                r["system"],
            )
            for r in cells
        ]
        rows = [r for r in rows if r[1] is not None]
        ax.set_title(
            title + ("  (higher is better)" if higher else "  (lower is better)"), fontsize=10
        )
        if not rows:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        labels = [r[0] for r in rows]
        values = [float(r[1]) for r in rows]
        bars = ax.barh(labels, values, color=[COLOURS.get(r[2], "#718096") for r in rows])
        ax.invert_yaxis()
        for bar, v in zip(bars, values, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {v:,.1f}",
                va="center",
                fontsize=8,
            )
        ax.margins(x=0.18)
        ax.tick_params(axis="y", labelsize=8)
        if workload == "W3":
            ax.axvline(15, color="#c53030", linestyle="--", linewidth=1)
        if field == "peak_rss_mb":
            ax.axvline(60, color="#c53030", linestyle="--", linewidth=1)
        if field.endswith("growth_mid_vs_early"):
            ax.axvline(1.5, color="#c53030", linestyle="--", linewidth=1)
    machine = doc.get("machine", {})
    fig.suptitle(
        f"duro benchmark {doc.get('created', '')}: {machine.get('cpus')} CPUs "
        f"({machine.get('cpu', '')}), Python {machine.get('python')}; median of "
        f"{max(r['runs'] for r in doc['summary'])} runs for W1-W3; dashed lines: issue 5 targets",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        draw(json.load(f), sys.argv[2])
