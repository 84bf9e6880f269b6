"""End to end: Debian's etcdctl 3.4 ``lock`` and ``elect`` (clientv3/concurrency's client-side
recipe) against holders of the same lock or election through the v3lock and v3election gRPC
services, on kvstore and on a real etcd at once: both recipes use the same keys, so each blocks
the other. Transcripts must be equal (etcdctl's own session lease ids become "<etcdctl>").
"""
from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from etcdctl import Background, Etcdctl, ctl, kv_server, ref_server  # noqa: F401
from kvstore.api import (
    rpc_pb2 as pb,
    rpc_pb2_grpc,
    v3election_pb2 as epb,
    v3election_pb2_grpc,
    v3lock_pb2 as lpb,
    v3lock_pb2_grpc,
)

pytestmark = pytest.mark.timeout(90)

SETTLE = 1.0  # seconds a blocked etcdctl is given to (wrongly) print
TIMEOUT = 10.0


class Grpc:
    def __init__(self, endpoint: str):
        self.channel = grpc.insecure_channel(endpoint)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lock = v3lock_pb2_grpc.LockStub(self.channel)
        self.election = v3election_pb2_grpc.ElectionStub(self.channel)

    def grant(self, lease_id: int) -> int:
        self.lease.LeaseGrant(pb.LeaseGrantRequest(ID=lease_id, TTL=30), timeout=TIMEOUT)
        return lease_id

    def revoke_all(self) -> None:
        """etcdctl's sessions and ours outlive the scenario: revoke every lease."""
        for status in self.lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=TIMEOUT).leases:
            try:
                self.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=status.ID), timeout=TIMEOUT)
            except grpc.RpcError:
                pass  # expired meanwhile

    def keys(self, name: str) -> list[str]:
        resp = self.kv.Range(pb.RangeRequest(key=f"{name}/".encode(), range_end=f"{name}0".encode(),
                                             sort_target=pb.RangeRequest.CREATE), timeout=TIMEOUT)
        return [kv.key.decode() for kv in resp.kvs]


def named(name: str, lines, ours: dict[str, str]) -> str:
    """Lines with ``name/<hex>`` keys named: ours by their label, etcdctl's as <etcdctl>."""
    def sub(m):
        return f"{name}/{ours.get(m.group(1), '<etcdctl>')}"
    return " ".join(re.sub(rf"^{re.escape(name)}/([0-9a-f]+)$", sub, line) for line in lines)


def both(ctl, scenario) -> list[str]:  # noqa: F811
    with ThreadPoolExecutor(2) as pool:
        kv, ref = [f.result() for f in [pool.submit(scenario, c) for c in (ctl.kv, ctl.ref)]]
    assert kv == ref, f"kvstore and etcd differ in {scenario.__name__}:\n{kv}\n{ref}"
    return kv


def _grpc_lock_blocks_etcdctl(c: Etcdctl) -> list[str]:
    g = Grpc(c.endpoint)
    h = None
    try:
        lease = g.grant(0x61)
        held = g.lock.Lock(lpb.LockRequest(name=b"ilk", lease=lease), timeout=TIMEOUT)
        t = [f"grpc holds {held.key.decode()}"]
        h = c.start("lock", "ilk")
        time.sleep(SETTLE)
        t.append(f"etcdctl while held: {h.lines}")
        t.append("keys: " + named("ilk", g.keys("ilk"), {"61": "grpc"}))
        g.lock.Unlock(lpb.UnlockRequest(key=held.key), timeout=TIMEOUT)
        t.append("etcdctl after unlock: " + named("ilk", h.wait_lines(1)[:1], {}))
        # and now the gRPC Lock waits for etcdctl's
        waiting = g.lock.Lock.future(lpb.LockRequest(name=b"ilk", lease=lease), timeout=TIMEOUT * 2)
        time.sleep(SETTLE)
        t.append(f"grpc waiting: {not waiting.done()}")
        h.signal(signal.SIGINT)                               # etcdctl unlocks
        t.append(f"etcdctl exit {h.wait(TIMEOUT)}")
        t.append(f"grpc holds {waiting.result(timeout=TIMEOUT).key.decode()}")
        return t
    finally:
        if h is not None:
            h.kill()
        g.revoke_all()
        g.channel.close()


def test_a_lock_held_through_grpc_blocks_etcdctl_lock_and_the_other_way(ctl):  # noqa: F811
    assert both(ctl, _grpc_lock_blocks_etcdctl) == [
        "grpc holds ilk/61", "etcdctl while held: []", "keys: ilk/grpc ilk/<etcdctl>",
        "etcdctl after unlock: ilk/<etcdctl>", "grpc waiting: True", "etcdctl exit 0",
        "grpc holds ilk/61"]


def _grpc_campaign_and_etcdctl_elect(c: Etcdctl) -> list[str]:
    g = Grpc(c.endpoint)
    obs: Background | None = None
    cand: Background | None = None
    ours = {"62": "grpc"}
    try:
        lease = g.grant(0x62)
        won = g.election.Campaign(epb.CampaignRequest(name=b"iel", lease=lease, value=b"g1"),
                                  timeout=TIMEOUT)
        obs = c.start("elect", "-l", "iel")                   # etcdctl observes ours
        t = ["observer: " + named("iel", obs.wait_lines(2), ours)]
        g.election.Proclaim(epb.ProclaimRequest(leader=won.leader, value=b"g2"), timeout=TIMEOUT)
        t.append("observer: " + named("iel", obs.wait_lines(4)[2:], ours))
        cand = c.start("elect", "iel", "e1")                  # etcdctl campaigns: it waits
        time.sleep(SETTLE)
        t.append(f"candidate while grpc leads: {cand.lines}")
        g.election.Resign(epb.ResignRequest(leader=won.leader), timeout=TIMEOUT)
        t.append("candidate: " + named("iel", cand.wait_lines(2), ours))
        t.append("observer: " + named("iel", obs.wait_lines(6)[4:], ours))
        leader = g.election.Leader(epb.LeaderRequest(name=b"iel"), timeout=TIMEOUT)
        t.append("leader: " + named("iel", [leader.kv.key.decode(), leader.kv.value.decode()], ours))
        cand.signal(signal.SIGINT)                            # etcdctl resigns
        t.append(f"candidate exit {cand.wait(TIMEOUT)}")
        try:
            g.election.Leader(epb.LeaderRequest(name=b"iel"), timeout=TIMEOUT)
            t.append("a leader left")
        except grpc.RpcError as e:
            t.append(f"leader: {e.code().name} {e.details()}")
        return t
    finally:
        for p in (obs, cand):
            if p is not None:
                p.kill()
        g.revoke_all()
        g.channel.close()


def test_etcdctl_elect_observes_and_follows_a_grpc_campaign(ctl):  # noqa: F811
    assert both(ctl, _grpc_campaign_and_etcdctl_elect) == [
        "observer: iel/grpc g1", "observer: iel/grpc g2", "candidate while grpc leads: []",
        "candidate: iel/<etcdctl> e1", "observer: iel/<etcdctl> e1", "leader: iel/<etcdctl> e1",
        "candidate exit 0", "leader: UNKNOWN election: no leader"]
