"""One setup's run: its servers started, the generator processes connected and the keys
created, then the steps at rising scales until two in a row are not sustained."""
from __future__ import annotations

import time

from etcd_side_by_side import cpu_busy, log

from .generator_procs import Generators
from .setups import Setup
from .stats import CpuSample, fmt_ms, merge_step


def run_setup(setup: Setup, args, scales: list[float]) -> dict:
    out: dict = {"setup": setup.key, "name": setup.name, "label": setup.label, "how": setup.how,
                 "steps": [], "error": None}
    gens = None
    try:
        log(f"[{setup.name}] starting: {setup.how}")
        setup.start()
        setup.wait_ready(args.start_timeout)
        cfgs = [{"worker": w, "procs": args.procs, "port": setup.port,
                 "partitioned": setup.partitioned, "client": args.client, "conns": args.conns,
                 "max_inflight": args.max_inflight, "tick": args.tick, "nice": args.generator_nice,
                 "lease_keys": args.lease_keys, "pods": args.pods, "lease_value": 400,
                 "pod_value": 4096, "event_value": 1024, "lease_reuse": args.lease_reuse_seconds}
                for w in range(args.procs)]
        gens = Generators(cfgs)
        eps = gens.ask("connect")[0]["endpoints"]
        log(f"[{setup.name}] generator connected to {', '.join(eps)}; creating keys")
        t = time.monotonic()
        gens.ask("prepare", timeout=300)
        log(f"[{setup.name}] {args.lease_keys} lease keys and {args.pods} pods created in "
            f"{time.monotonic() - t:.1f} s")
        watch_seen, acked_seen = sync_watch(gens)
        misses = 0
        for scale in scales:
            t0 = time.monotonic() + 0.3
            for pipe in gens.pipes:
                pipe.send(("step", scale, t0, args.ramp_seconds, args.step_seconds, args.drain_seconds))
            time.sleep(max(0.0, t0 + args.ramp_seconds - time.monotonic()))
            cpu0 = sample_cpu(setup, gens)
            time.sleep(max(0.0, t0 + args.ramp_seconds + args.step_seconds - time.monotonic()))
            cpu1 = sample_cpu(setup, gens)
            replies = []
            for i, pipe in enumerate(gens.pipes):
                if not pipe.poll(args.drain_seconds + 60):
                    raise RuntimeError(f"generator {i} did not finish the step")
                reply = pipe.recv()
                if "error" in reply:
                    raise RuntimeError(f"generator {i}, step: {reply['error']}")
                replies.append(reply)
            acked = sum(r["pod_acked"] for r in replies)
            watch_now, _ = sync_watch(gens, acked)
            step = merge_step(scale, args.step_seconds, replies, cpu0, cpu1,
                              watch_now - watch_seen, acked - acked_seen)
            watch_seen, acked_seen = watch_now, acked
            out["steps"].append(step)
            log(f"[{setup.name}] x{scale:g}: {step['achieved_per_s']:,.0f}/{step['offered_per_s']:,.0f} "
                f"req/s, p99 " + " ".join(f"{s} {fmt_ms(v['p99_ms'])}" for s, v in step["streams"].items())
                + f" ms; server {step['server_cpu_s'] / args.step_seconds:.2f} cores, generator "
                f"{step['generator_cpu_s'] / args.step_seconds:.2f}; "
                + ("sustained" if step["sustained"] else "NOT sustained: " + "; ".join(step["why_not"])))
            if setup.died():
                raise RuntimeError(setup.died())
            misses = 0 if step["sustained"] else misses + 1
            if misses >= 2:
                break
    except Exception as e:  # noqa: BLE001 - a setup that fails is reported, the run goes on
        out["error"] = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        log(f"[{setup.name}] FAILED: {e}")
    finally:
        if gens is not None:
            gens.stop()
        setup.stop()
    return out


def sample_cpu(setup: Setup, gens: Generators) -> CpuSample:
    return CpuSample(setup.cpu(), gens.cpu(), cpu_busy(), setup.cpu_by_process())


def sync_watch(gens: Generators, acked: int | None = None) -> tuple[int, int]:
    """(watch events received, pod writes acknowledged), once the watch caught up with the
    writes (or 3 s passed)."""
    if acked is None:
        acked = sum(r["pod_acked"] for r in gens.ask("counts"))
    deadline = time.monotonic() + 3
    while True:
        seen = gens.ask("counts", only=0)[0]["watch_events"]
        if seen >= acked or time.monotonic() > deadline:
            return seen, acked
        time.sleep(0.05)
