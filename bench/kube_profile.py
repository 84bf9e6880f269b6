#!/usr/bin/env python3
"""Kubernetes-shaped mixed load, open loop, against kvstore and etcd, whole and split by the kube map.

Four setups, each started fresh on loopback (data dirs on one medium: --medium disk or tmpfs),
one after the other, driven by the same load generator:

  (a) kvstore       one `kvstore serve` process, LMDB log
  (b) kvstore-kube  the kube profile: 5 partitions (default, nodes, pods, leases, events), one
                    process each (`kvstore serve --profile kube`, or the 5 workers started by
                    this script when the CLI has no --profile yet; --kube-workers)
  (c) etcd          one etcd (Debian's), default flags apart from data dir and URLs
  (d) etcd-kube     5 etcds on the kube map's ports, each its own single-member cluster

The load is three streams, each request routed by its key (kvstore.partition.kube.kube_map for
(b) and (d); one endpoint for (a) and (c)):

  leases  node heartbeats: kube-apiserver's update Txn If(mod_revision(key) == r) Then(Put)
          Else(Range) on 10,000 Lease keys /registry/leases/kube-node-lease/node-NNNNN (~400 B),
          created before the steps; r is the revision the generator last saw of the key (the
          Put's header revision, or the Else Range's kv), as kube's cache keeps it
  pods    pod churn on /registry/pods/default/pod-N (~4 KB): create If(create_revision == 0)
          Then Put, update (the mod_revision Txn), delete If(mod_revision == r) Then DeleteRange,
          1 : 3 : 1; one watch on /registry/pods/ (prev_kv, as kube-apiserver's) stays open, and
          its events are counted against the pod writes acknowledged
  events  /registry/events/default/ev-N (~1 KB): If(create_revision == 0) Then Put with a lease,
          one LeaseGrant (TTL 3600) reused for 60 s of events (--lease-reuse-duration-seconds)

Offered rates rise in steps, as multiples (--scales, up to --max-scale) of the base mix 10,000
lease Txn/s + 1,000 pod writes/s + 500 events/s. Open loop: each request has a scheduled send
time, is sent then whether or not earlier ones have completed, and its latency runs from that
scheduled time (no coordinated omission; the generator's own lateness is shown as the send
lag). Each step ramps linearly from 0 over --ramp-seconds, then holds the rate for
--step-seconds, and only requests scheduled in that window count; achieved/s is their answers
(an Else branch is an answer) over the window. In-flight requests are capped per generator
process and stream (--max-inflight, so a saturated partition does not hold back the others'
requests); a request over the cap is not sent. A step is sustained when every stream achieves
>= 95% of its offered rate with p99 <= 100 ms, no errors and nothing left unsent; a setup stops
after two consecutive steps that are not. Reported per step and stream: offered/s, achieved/s,
p50/p99 ms, errors, Else branches, send lag; per step: the CPU-seconds in the window of all
server processes of the setup (and of each one), of the generator, and of everything else on
the machine (/proc/stat busy time minus those two), and the watch's events against the pod
writes acknowledged. Then a summary: the highest sustained total per setup, the ratios
(b)/(d), (b)/(a), (a)/(c), and the goals: (b) sustains x1 with every p99 <= 100 ms; (b)'s
highest sustained total >= 2x (d)'s. --json FILE writes it all. The kvstore build is named in
the header; the pure-Python twins are refused. etcd gets an 8 GiB backend quota (nothing is
compacted during a run).

The generator shares the 2 cores with the servers, so it is made cheap: --procs processes
(default 2) split the keys and the rates, each on uvloop with --conns connections per endpoint
(default 2), sending pre-encoded requests, at nice -10 (--generator-nice: in a real cluster the
load comes from other machines; it uses well under a core). By default they speak gRPC through
a small HTTP/2 client of their own, on kvstore's compiled frame reader and HPACK decoder:
grpc.aio costs 150-300 us of CPU a unary call on this machine (the raw client 25-60 us), so at
x1 it alone would need more than both cores. --client grpc uses grpc.aio instead (--conns
channels per endpoint, raw bytes in and out), to check figures against it at low rates.

    python3 bench/kube_profile.py                                  # all four setups, disk
    python3 bench/kube_profile.py --setups a,c --max-scale 0.25 --step-seconds 3   # smoke run
    python3 bench/kube_profile.py --medium tmpfs --json /tmp/kube_profile.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

# bench/ (etcd_side_by_side, kube_load) and the repository (kvstore) as top-level packages; the
# spawned generator processes inherit this sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from etcd_side_by_side import git_state, log  # noqa: E402
from kube_load.coordinator import run_setup  # noqa: E402
from kube_load.report import report  # noqa: E402
from kube_load.servers import etcd_version, kvstore_build  # noqa: E402
from kube_load.setups import SETUPS, Setup, medium_of  # noqa: E402
from kube_load.wire import check_encoders  # noqa: E402
from kube_load.workload import BASE  # noqa: E402

DEFAULT_SCALES = "0.1,0.25,0.4,0.5,0.6,0.75,0.9,1,1.25,1.5,2,2.5,3,4"


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_scales(s: str) -> list[float]:
    return sorted({float(x) for x in s.split(",") if x.strip() and float(x) > 0})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default="a,b,c,d", help="any of a,b,c,d (see above)")
    ap.add_argument("--scales", default=DEFAULT_SCALES, help="multiples of the base mix, in order")
    ap.add_argument("--max-scale", type=float, default=4.0)
    ap.add_argument("--step-seconds", type=float, default=8.0, help="measured part of a step")
    ap.add_argument("--ramp-seconds", type=float, default=2.0, help="linear ramp before it")
    ap.add_argument("--drain-seconds", type=float, default=3.0,
                    help="how long a step waits for its last answers (later: unanswered)")
    ap.add_argument("--medium", choices=("disk", "tmpfs"), default="disk",
                    help="where every setup's data dirs go: a temp dir under /tmp, or /dev/shm")
    ap.add_argument("--procs", type=int, default=2, help="generator processes")
    ap.add_argument("--conns", type=int, default=2, help="connections per endpoint and process")
    ap.add_argument("--client", choices=("raw", "grpc"), default="raw",
                    help="raw: the generator's own HTTP/2 gRPC client; grpc: grpc.aio")
    ap.add_argument("--max-inflight", type=int, default=2000,
                    help="cap of requests in flight per generator process and stream")
    ap.add_argument("--generator-nice", type=int, default=-10,
                    help="nice value of the generator processes (0: as the servers): the load "
                         "comes from elsewhere in a real cluster, so it should not queue behind "
                         "the servers for a core; it uses well under one")
    ap.add_argument("--tick", type=float, default=0.002, help="the generator's send interval, s")
    ap.add_argument("--lease-keys", type=int, default=10_000)
    ap.add_argument("--lease-reuse-seconds", type=float, default=60.0,
                    help="how long one event lease is used (kube-apiserver's "
                         "--lease-reuse-duration-seconds)")
    ap.add_argument("--pods", type=int, default=1_000, help="pods created before the steps")
    ap.add_argument("--kube-workers", choices=("auto", "supervisor", "processes"), default="auto",
                    help="(b): `serve --profile kube`, or 5 plain workers started here; auto: "
                         "the supervisor when `kvstore serve --help` lists --profile")
    ap.add_argument("--etcd-bin", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--quota-backend-bytes", type=int, default=8 << 30,
                    help="etcd's (nothing is compacted during a run)")
    ap.add_argument("--start-timeout", type=float, default=60)
    ap.add_argument("--json", default=None, help="write the results here too")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    args = ap.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    if bad := [s for s in setups if s not in SETUPS]:
        ap.error(f"unknown setups {bad}: choose from {','.join(SETUPS)}")
    scales = [x for x in parse_scales(args.scales) if x <= args.max_scale]
    if not scales:
        ap.error("no step at or below --max-scale")
    check_encoders()
    build = kvstore_build()
    root = Path(tempfile.mkdtemp(prefix="kvstore-kubeprofile-",
                                 dir="/dev/shm" if args.medium == "tmpfs" else "/tmp"))
    meta = {"git": git_state(), "build": build, "etcd_version": etcd_version(args.etcd_bin),
            "medium": medium_of(root), "workdir": str(root), "procs": args.procs,
            "client": args.client, "conns": args.conns, "ramp_seconds": args.ramp_seconds,
            "generator_nice": args.generator_nice, "max_inflight": args.max_inflight,
            "step_seconds": args.step_seconds, "scales": scales, "base": BASE,
            "argv": sys.argv[1:]}
    log(f"data dirs under {root} ({meta['medium']}); {build} build; steps x"
        + ", x".join(f"{x:g}" for x in scales))
    results = []
    signal.signal(signal.SIGTERM, interrupted)  # stop every server, as on Ctrl-C
    try:
        for key in setups:
            results.append(run_setup(Setup(key, root, args), args, scales))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text, summary = report(results, meta, args.step_seconds)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "summary": summary},
                                              indent=1, default=str))
    return 0 if all(not r["error"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
