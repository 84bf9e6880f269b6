"""The tables printed at the end: one run's ops, and --compare's ratios. They read the JSON form
of a run (results.RunResults.to_json), so they show exactly what results.json holds."""
from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

Run = dict[str, Any]

_LATENCIES = ("p50", "p90", "p99", "p99.9", "max")


def console() -> Console:
    # not a terminal (a log, a pipe): wide enough that a table is not folded
    return Console() if sys.stdout.isatty() else Console(width=160, no_color=True)


def run_table(run: Run) -> Table:
    title = f"{run['name']}: {', '.join(run['endpoints'])}, {run['elapsed_s']:.1f}s"
    if run["ended"] != "completed":
        title += f" ({run['ended']}: {run['message']})"
    table = Table(title=title, title_justify="left")
    table.add_column("op")
    for name in ("ok", "ok/s", *(f"{p} ms" for p in _LATENCIES)):
        table.add_column(name, justify="right")
    table.add_column("errors")
    for label, op in run["ops"].items():
        latency = op["latency_ms"]
        errors = ", ".join(f"{code} {n:,}" for code, n in op["errors"].items()) or "-"
        table.add_row(label, f"{op['ok']:,}", f"{op['rate']:,.1f}",
                      *(f"{latency[p]:.3f}" if p in latency else "-" for p in _LATENCIES), errors)
    return table


def run_footer(run: Run) -> str:
    cpu = run["cpu_seconds"]
    lines = [f"client CPU {cpu['total']:.2f}s (workers {cpu['workers']:.2f}s, coordinator "
             f"{cpu['coordinator']:.2f}s): {run['ok_per_cpu_second'] or 0:,.0f} ok requests "
             f"per CPU-second"]
    if run["skipped"] or run["backlog_max"]:
        lines.append(f"open loop: {run['skipped']:,} requests due were never sent; at most "
                     f"{run['backlog_max']:,} waited for a free slot (--max-in-flight)")
    return "\n".join(lines)


def compare_table(a: Run, b: Run) -> Table:
    """B/A per op: throughput and latency ratios (above 1: B has more of it)."""
    table = Table(title=f"B/A: B = {', '.join(b['endpoints'])} over A = {', '.join(a['endpoints'])}",
                  caption="ok/s above 1: B is faster; latency above 1: B is slower",
                  title_justify="left", caption_justify="left")
    for name in ("op", "ok/s B/A", "p50 B/A", "p99 B/A"):
        table.add_column(name, justify="left" if name == "op" else "right")
    for label in sorted(set(a["ops"]) | set(b["ops"])):
        op_a, op_b = a["ops"].get(label), b["ops"].get(label)
        if op_a is None or op_b is None:
            table.add_row(label, "-", "-", "-")
            continue
        table.add_row(label, _ratio(op_b["rate"], op_a["rate"]),
                      *(_ratio(op_b["latency_ms"].get(p), op_a["latency_ms"].get(p))
                        for p in ("p50", "p99")))
    return table


def compare_summary(a: Run, b: Run) -> dict[str, dict[str, float | None]]:
    """The ratios of compare_table, for results.json."""
    out: dict[str, dict[str, float | None]] = {}
    for label in sorted(set(a["ops"]) & set(b["ops"])):
        op_a, op_b = a["ops"][label], b["ops"][label]
        out[label] = {"rate_b_over_a": _quotient(op_b["rate"], op_a["rate"]),
                      "p50_b_over_a": _quotient(op_b["latency_ms"].get("p50"), op_a["latency_ms"].get("p50")),
                      "p99_b_over_a": _quotient(op_b["latency_ms"].get("p99"), op_a["latency_ms"].get("p99"))}
    return out


def _quotient(b: float | None, a: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return round(b / a, 3)


def _ratio(b: float | None, a: float | None) -> str:
    q = _quotient(b, a)
    return "-" if q is None else f"{q:.2f}"
