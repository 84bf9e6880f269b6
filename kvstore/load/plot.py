"""results.json as one PNG: throughput over time, p50/p99 over time, and the latency
distribution by percentile from each op's HDR histogram; --compare's runs overlaid.

matplotlib is an optional extra (pip install 'kvstore[plot]'), imported only here; the Agg
backend draws without a display.
"""
from __future__ import annotations

from typing import Any

from . import histogram
from .recorder import MEANINGFUL_INTERVAL


class PlotUnavailable(Exception):
    pass


def plot_results(document: dict[str, Any], png: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib: pip install 'kvstore[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, ScalarFormatter

    runs = document["runs"]
    fig, (throughput, latency, distribution) = plt.subplots(3, 1, figsize=(12, 12))
    fig.suptitle(f"kvstore load {document['scenario']}  ({document['started']})")
    styles: list[Any] = ["-", "--", ":", "-."]  # matplotlib types them as Literals
    # one color per op label, the same in every run; one line style per run
    labels = list(dict.fromkeys(label for run in runs for label in run["ops"]))
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    color = {label: palette(i % palette.N) for i, label in enumerate(labels)}
    crowded = len(labels) > 3  # p99 alone over time, or the panel is unreadable
    for r, run in enumerate(runs):
        style = styles[r % len(styles)]
        for label, op in run["ops"].items():
            points = [(s["t"], s["ops"][label]) for s in _plotted(run["series"]) if label in s["ops"]]
            t = [p[0] for p in points]
            c = color[label]
            throughput.plot(t, [p[1]["rate"] for p in points], style, color=c)
            if not op.get("latency_ms"):
                continue  # counted, not timed
            for q, marker in ((("p99", "^"),) if crowded else (("p50", "o"), ("p99", "^"))):
                latency.plot(t, [p[1].get(q) for p in points], style, color=c, marker=marker,
                             markersize=3)
            curve = histogram.percentile_curve_ms(histogram.decode(op["histogram"]))
            # x: 1/(1 - percentile) on a log scale, so that the tail (99%, 99.9%) gets room
            xs = [1 / (1 - p / 100) for p, _ in curve if p < 100]
            ys = [ms for p, ms in curve if p < 100]
            distribution.plot(xs, ys, style, color=c)
        if run.get("lost"):
            throughput.axvline(run["lost"]["t"], color="red", linewidth=0.8)
    handles = [Line2D([], [], color=color[label], label=label) for label in labels]
    if len(runs) > 1:
        handles += [Line2D([], [], color="black", linestyle=styles[r % len(styles)],
                           label=f"{run['name']}: {', '.join(run['endpoints'])}")
                    for r, run in enumerate(runs)]
    if not crowded:
        handles += [Line2D([], [], color="gray", marker="o", markersize=3, label="p50"),
                    Line2D([], [], color="gray", marker="^", markersize=3, label="p99")]
    throughput.set_title("throughput")
    throughput.set_ylabel("ok requests/s")
    throughput.set_ylim(bottom=0)
    latency.set_title("latency over time" + (" (p99)" if crowded else ""))
    latency.set_ylabel("ms")
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(ScalarFormatter())
    for ax in (throughput, latency):
        ax.set_xlabel("seconds")
        ax.grid(True, alpha=0.3)
    distribution.set_title("latency by percentile (HDR histogram of the whole run)")
    distribution.set_xscale("log")
    distribution.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    distribution.xaxis.set_major_locator(FixedLocator(ticks))
    distribution.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / x:g}%"))
    distribution.set_xlabel("percentile")
    distribution.set_ylabel("ms")
    distribution.yaxis.set_major_formatter(ScalarFormatter())
    distribution.grid(True, alpha=0.3)
    # one legend for the three panels, beside them
    legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.99, 0.95), fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title
    fig.savefig(png, dpi=80, bbox_extra_artists=[legend], bbox_inches="tight")
    plt.close(fig)


def _plotted(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series without a last interval too short for its rate to mean much."""
    if len(series) > 1 and series[-1]["duration"] < MEANINGFUL_INTERVAL:
        return series[:-1]
    return series
