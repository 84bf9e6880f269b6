"""The figures of a step: each stream's rates and latency percentiles merged from the generator
processes' tallies, the CPU used in the measured window, and whether the step was sustained."""
from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import NamedTuple

from .workload import BASE, GOAL_ACHIEVED, GOAL_P99, STREAMS


class CpuSample(NamedTuple):
    """CPU-seconds used so far, read at either end of a step's measured window."""
    server: float  # all the setup's server processes
    generator: float  # all the generator processes
    busy: dict[str, float]  # each CPU's busy time (etcd_side_by_side.cpu_busy)
    by_process: dict[str, float]  # each server process (Setup.cpu_by_process)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def fmt_ms(x: float) -> str:
    """Milliseconds as the tables and the reasons a step is not sustained show them: – for no
    value (NaN), ∞ for a request never answered."""
    if x != x:
        return "–"
    if math.isinf(x):
        return "∞"
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def merge_stream(stream: str, scale: float, measure: float, parts: list[dict]) -> dict:
    lat: list[float] = []
    lag: list[float] = []
    kinds: Counter = Counter()
    agg = dict.fromkeys(("ok", "errors", "skipped", "conflicts", "unfinished"), 0)
    for part in parts:
        lat.extend(array("d", part["lat"]))
        lag.extend(array("d", part["lag"]))
        kinds.update(part["kinds"])
        for k in agg:
            agg[k] += part[k]
    lat.extend([math.inf] * agg["unfinished"])  # never answered: slower than anything
    lat.sort()
    lag.sort()
    offered = BASE[stream] * scale
    row = {"offered_per_s": offered, "achieved_per_s": agg["ok"] / measure,
           "p50_ms": percentile(lat, 0.50) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
           "send_lag_p99_ms": percentile(lag, 0.99) * 1000, **agg, "error_kinds": dict(kinds)}
    why = []
    if row["achieved_per_s"] < GOAL_ACHIEVED * offered:
        why.append(f"{stream} {row['achieved_per_s'] / offered:.0%} of offered")
    if not row["p99_ms"] <= GOAL_P99 * 1000:
        why.append(f"{stream} p99 {fmt_ms(row['p99_ms'])} ms")
    if agg["errors"]:
        why.append(f"{stream} {agg['errors']} errors")
    if agg["skipped"]:
        why.append(f"{stream} {agg['skipped']} not sent (in-flight cap)")
    row["why_not"] = why
    return row


def merge_step(scale: float, measure: float, replies: list[dict], cpu0: CpuSample, cpu1: CpuSample,
               watch_events: int, pod_writes_acked: int) -> dict:
    """A step's row from the generator processes' replies and the CPU read before and after its
    measured window (`measure` seconds)."""
    s0, g0, b0, p0 = cpu0
    s1, g1, b1, p1 = cpu1
    busy = sum(b1.values()) - sum(b0.values()) if b0 and b1 else float("nan")
    step = {"scale": scale,
            "streams": {s: merge_stream(s, scale, measure,
                                        [r["streams"][s] for r in replies]) for s in STREAMS},
            "server_cpu_s": s1 - s0, "generator_cpu_s": g1 - g0,
            "server_cpu_s_by_process": {k: v - p0.get(k, 0.0) for k, v in p1.items()},
            "other_cpu_s": busy - (s1 - s0) - (g1 - g0),
            "watch_events": watch_events, "pod_writes_acked": pod_writes_acked,
            "watch_error": replies[0]["watch_error"],
            "lease_grants_so_far": sum(r["grants"] for r in replies),
            "lease_grant_errors": sum(r["grant_errors"] for r in replies),
            "left_in_flight": sum(r["inflight"] for r in replies)}
    step["offered_per_s"] = sum(v["offered_per_s"] for v in step["streams"].values())
    step["achieved_per_s"] = sum(v["achieved_per_s"] for v in step["streams"].values())
    step["why_not"] = [w for v in step["streams"].values() for w in v["why_not"]]
    step["sustained"] = not step["why_not"]
    return step


def best_sustained(r: dict) -> dict | None:
    good = [s for s in r["steps"] if s["sustained"]]
    return max(good, key=lambda s: s["achieved_per_s"]) if good else None
