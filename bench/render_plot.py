"""The freshness plot (bench/results/freshness.png) and the kind of run it is titled with."""

from __future__ import annotations

from typing import Any

from bench.common import RESULTS

PLOT = RESULTS / "freshness.png"
FULL = {"events": 1_000_000, "duration": 60, "ids": 1_000_000}


def run_kind(results: dict[str, Any]) -> str:
    args = results.get("args", {})
    small = [name for name, full in FULL.items() if args.get(name, full) < full]
    if results.get("experiment"):
        return "experiment"
    return "smoke" if small else "full"


def plot(results: dict[str, Any]) -> bool:
    rows = results.get("freshness") or []
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drain = float(results["args"].get("drain", 60))
    rates = [row["rate"] for row in rows]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = (
        ("p50_s", "p50", "o"),
        ("p95_s", "p95", "s"),
        ("p99_s", "p99", "^"),
        ("max_s", "max", "v"),
    )
    for key, label, marker in styles:
        shown = [row[key] if row[key] is not None else drain for row in rows]
        censored = [row[key] is None for row in rows]
        (line,) = axes.plot(rates, shown, marker=marker, label=label)
        for rate, value, cut in zip(rates, shown, censored, strict=True):
            if cut:
                axes.annotate("↑", (rate, value), ha="center", va="bottom", color=line.get_color())
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="1 s target (p99 at 5k/s)")
    axes.set_yscale("log")
    if max(rates) >= 10 * min(rates):
        axes.set_xscale("log")
    axes.set_xticks(rates, [f"{rate:,}" for rate in rates])
    axes.minorticks_off()
    axes.set_xlabel("produce rate, events/s")
    axes.set_ylabel("produce → searchable in Elasticsearch, s")
    kind = run_kind(results)
    duration = results["args"].get("duration")
    axes.set_title(
        f"leadedge freshness ({kind} run, {duration:g} s per rate)"
        + (f"; ↑ = over {drain:g} s" if any(None in (r["p99_s"], r["max_s"]) for r in rows) else "")
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT)
    plt.close(figure)
    return True
