#!/usr/bin/env python3
"""How long writes stall when a part of a replicated kvstore dies, beside NATS's own election.

Three NATS servers (R3 stream, sync_interval always) and three kvstore members on loopback;
clients write unique keys through every member without pause. For each fault -- SIGKILL of the
stream's leader, of a JetStream follower, of a kvstore member -- over --trials trials, it
reports the longest gap between two acknowledged writes from the kill on (the stall), and, for
the stream leader, NATS's own figure: the time from the kill until a raw JetStream publish to
the stream is acknowledged again. Every killed process is restarted before the next trial, and
at the end every acknowledged write is checked on every member.

    python3 bench/failover.py [--trials 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import grpc  # noqa: E402
import nats  # noqa: E402

from jetstream_members import Members  # noqa: E402
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402
from nats_cluster import NatsCluster  # noqa: E402

FAULTS = ("stream leader", "stream follower", "kvstore member")


class Writers:
    def __init__(self, endpoints: list[str], per_member: int = 4):
        self.channels = [grpc.aio.insecure_channel(e) for e in endpoints]
        self.stubs = [rpc.KVStub(ch) for ch in self.channels]
        self.n = len(endpoints) * per_member
        self.acked: dict[bytes, int] = {}
        self.ack_times: list[float] = []
        self.stop = False
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._write(i)) for i in range(self.n)]

    async def _write(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while not self.stop:
            stub = self.stubs[(i + n) % len(self.stubs)]
            key = b"f/%02d/%07d" % (i, n)
            n += 1
            try:
                resp = await stub.Put(pb.PutRequest(key=key, value=key), timeout=10)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
                continue
            self.acked[key] = resp.header.revision
            self.ack_times.append(loop.time())

    def stall_since(self, t: float) -> float:
        times = [x for x in self.ack_times if x >= t]
        before = [x for x in self.ack_times if x < t]
        if before:
            times.insert(0, before[-1])
        return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))

    async def close(self) -> None:
        self.stop = True
        await asyncio.gather(*self.tasks)
        for ch in self.channels:
            await ch.close()


def lead_probe_from(nats3, server) -> None:
    """Moves the probe stream's leader to ``server``: killing it then starts the same election
    for both streams."""
    for _ in range(20):
        if nats3.stream_leader("PROBE") is server:
            return
        nats3.request("$JS.API.STREAM.LEADER.STEPDOWN.PROBE",
                      json.dumps({"placement": {"preferred": server.server_name}}))
        time.sleep(0.5)
    raise RuntimeError(f"the probe stream's leader did not move to {server.server_name}")


async def nats_recovery(urls: list[str], subject: str, since: float) -> float:
    """Seconds from ``since`` until a raw publish to the stream is acknowledged."""
    async def quiet(e):  # the killed server refuses connections: expected
        pass

    nc = await nats.connect(urls, max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                            error_cb=quiet)
    js = nc.jetstream(timeout=0.5)
    try:
        while True:
            try:
                await js.publish(subject + ".probe", b"")
                return asyncio.get_running_loop().time() - since
            except Exception:
                await asyncio.sleep(0.05)
    finally:
        await nc.close()


async def run(args) -> dict:
    loop = asyncio.get_running_loop()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kvstore-failover-"))
    out: dict[str, list] = {f: [] for f in FAULTS}
    out["nats election"] = []
    with NatsCluster(work / "nats", size=3) as nats3, \
            Members(work, nats3, n=3, name="fo") as m:
        # a subject of its own in the stream's namespace would be captured by the stream: the
        # probe goes to a stream of its own, R3 like kvstore's
        nats3.request("$JS.API.STREAM.CREATE.PROBE", json.dumps(
            {"name": "PROBE", "subjects": ["probe.>"], "num_replicas": 3, "storage": "file"}))
        writers = Writers(m.endpoints)
        writers.start()
        try:
            await asyncio.sleep(2)
            for trial in range(args.trials):
                for fault in FAULTS:
                    if fault == "stream leader":
                        victim = nats3.stream_leader(m.stream)
                        await loop.run_in_executor(None, lead_probe_from, nats3, victim)
                    elif fault == "stream follower":
                        leader = nats3.stream_leader(m.stream)
                        victim = next(s for s in nats3.servers if s is not leader)
                    else:
                        victim = m[trial % 3]
                    at = loop.time()
                    await loop.run_in_executor(None, victim.kill)
                    if fault == "stream leader":
                        out["nats election"].append(await nats_recovery(nats3.urls, "probe", at))
                    await asyncio.sleep(args.down)
                    await loop.run_in_executor(None, victim.start)
                    if fault != "kvstore member":
                        await loop.run_in_executor(None, nats3.wait_ready)
                    await asyncio.sleep(args.settle)
                    out[fault].append(writers.stall_since(at))
                    print(f"trial {trial + 1}: {fault}: stall {out[fault][-1]:.2f} s", file=sys.stderr)
        finally:
            await writers.close()
        lost = 0
        for e in m.endpoints:
            async with grpc.aio.insecure_channel(e) as ch:
                got = await rpc.KVStub(ch).Range(pb.RangeRequest(key=b"f/", range_end=b"f0"))
            have = {kv.key: kv.mod_revision for kv in got.kvs}
            lost += sum(1 for k, r in writers.acked.items() if have.get(k) != r)
        out["acknowledged"] = len(writers.acked)
        out["lost"] = lost
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--down", type=float, default=3.0, help="seconds a killed process stays down")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after its restart")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    out = asyncio.run(run(args))
    print("| fault | stall of acknowledged writes, s (min / median / max) |\n|---|---|")
    for name in (*FAULTS, "nats election"):
        xs = out[name]
        print(f"| {name} | {min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f} |")
    print(f"\n{out['acknowledged']} writes acknowledged, {out['lost']} lost "
          f"(counted on every member)")
    return 0 if out["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
