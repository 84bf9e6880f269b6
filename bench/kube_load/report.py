"""The run's report: a Markdown table of every step per setup, then the summary (highest
sustained totals, their ratios, the goals)."""
from __future__ import annotations

import os
from collections import Counter

from .stats import best_sustained, fmt_ms
from .workload import BASE, GOAL_ACHIEVED, GOAL_P99, STREAMS


def report(results: list[dict], meta: dict, measure: float) -> tuple[str, dict]:
    lines = [f"kvstore {meta['git']['head']}{' +changes' if meta['git']['changed'] else ''}, "
             f"{meta['build']} build; etcd {meta['etcd_version']}; data on {meta['medium']}; "
             f"{os.cpu_count()} CPUs shared by the servers and the generator ({meta['procs']} "
             f"processes, nice {meta['generator_nice']}, client {meta['client']}, {meta['conns']} "
             "connections per endpoint each)",
             f"steps: {meta['ramp_seconds']:g} s ramp + {measure:g} s measured; x1 = "
             + " + ".join(f"{BASE[s]:,.0f} {s}/s" for s in STREAMS)
             + f"; sustained: every stream >= {GOAL_ACHIEVED:.0%} of offered, p99 <= "
             f"{GOAL_P99 * 1000:.0f} ms, no errors, nothing over the in-flight cap"]
    for r in results:
        lines += ["", f"### ({r['setup']}) {r['name']}: {r['label']}", f"{r['how']}"]
        if r["error"]:
            lines.append(f"**FAILED**: {r['error']}")
        if not r["steps"]:
            continue
        lines += ["", "| scale | stream | offered/s | achieved/s | p50 ms | p99 ms | errors | "
                  "Else | send lag p99 ms | server CPU-s (cores) | generator CPU-s (cores) | "
                  "other CPU-s | watch events / pod writes | sustained |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for st in r["steps"]:
            for s, v in st["streams"].items():
                err = f"{v['errors']}" + (f" +{v['skipped']} not sent" if v["skipped"] else "")
                if v["unfinished"]:
                    err += f" +{v['unfinished']} unanswered"
                lines.append(f"| x{st['scale']:g} | {s} | {v['offered_per_s']:,.0f} | "
                             f"{v['achieved_per_s']:,.0f} | {fmt_ms(v['p50_ms'])} | "
                             f"{fmt_ms(v['p99_ms'])} | {err} | {v['conflicts']} | "
                             f"{fmt_ms(v['send_lag_p99_ms'])} | | | | | |")
            watch = f"{st['watch_events']:,} / {st['pod_writes_acked']:,}"
            if st["watch_error"]:
                watch += f" ({st['watch_error']})"
            lines.append(f"| x{st['scale']:g} | **total** | {st['offered_per_s']:,.0f} | "
                         f"{st['achieved_per_s']:,.0f} | | | | | | {st['server_cpu_s']:.1f} "
                         f"({st['server_cpu_s'] / measure:.2f}) | {st['generator_cpu_s']:.1f} "
                         f"({st['generator_cpu_s'] / measure:.2f}) | {st['other_cpu_s']:.1f} | "
                         f"{watch} | {'yes' if st['sustained'] else 'no: ' + '; '.join(st['why_not'])} |")
        if len(r["steps"][0]["server_cpu_s_by_process"]) > 1:
            lines.append("")
            lines += [f"server cores by process at x{st['scale']:g}: " + ", ".join(
                f"{k} {v / measure:.2f}" for k, v in sorted(
                    st["server_cpu_s_by_process"].items(), key=lambda kv: -kv[1]))
                for st in r["steps"]]
        kinds = Counter()
        for st in r["steps"]:
            for v in st["streams"].values():
                kinds.update(v["error_kinds"])
        if kinds:
            lines.append("errors seen: " + "; ".join(f"{n} x {k}" for k, n in kinds.most_common(5)))
    by = {r["setup"]: r for r in results}
    best = {k: best_sustained(r) for k, r in by.items()}
    summary: dict = {"best": {}, "ratios": {}, "goals": {}}
    lines += ["", "### summary", "", "| setup | highest sustained step | total req/s there | "
              "server cores there | generator cores there |", "|---|---|---|---|---|"]
    for k, r in by.items():
        b = best[k]
        summary["best"][k] = ({"scale": b["scale"], "achieved_per_s": b["achieved_per_s"]}
                              if b else None)
        lines.append(f"| ({k}) {r['name']} | " + (
            f"x{b['scale']:g} | {b['achieved_per_s']:,.0f} | {b['server_cpu_s'] / measure:.2f} | "
            f"{b['generator_cpu_s'] / measure:.2f} |" if b else
            ("failed: " + r["error"] if r["error"] and not r["steps"] else "none") + " | 0 | | |"))
    lines.append("")

    def total(k: str) -> float | None:
        if k not in by:
            return None
        return best[k]["achieved_per_s"] if best[k] else 0.0

    for num, den in (("b", "d"), ("b", "a"), ("a", "c")):
        a, b = total(num), total(den)
        ratio = a / b if a is not None and b else None
        summary["ratios"][f"{num}/{den}"] = ratio
        lines.append(f"* ({num})/({den}) highest sustained total: "
                     + (f"**{ratio:.2f}x**" if ratio is not None else "–"))
    if "b" in by:
        at1 = [s for s in by["b"]["steps"] if s["scale"] == 1.0]
        g1 = bool(at1 and at1[0]["sustained"])
        summary["goals"]["b_sustains_x1"] = g1
        last = by["b"]["steps"][-1]["scale"] if by["b"]["steps"] else None
        why = "" if g1 else (": " + "; ".join(at1[0]["why_not"]) if at1 else
                             f": x1 not reached (stopped after x{last:g})" if last else ": no step ran")
        lines.append(f"* goal: (b) sustains x1 (10k + 1k + 500 per s) with every p99 <= 100 ms: "
                     f"**{'met' if g1 else 'not met'}**{why}")
        if "d" in by:
            g2 = bool(total("d") is not None and total("b") >= 2 * total("d") and total("b") > 0)
            summary["goals"]["b_at_least_2x_d"] = g2
            lines.append(f"* goal: (b)'s highest sustained total >= 2x (d)'s: "
                         f"**{'met' if g2 else 'not met'}**")
    return "\n".join(lines), summary
