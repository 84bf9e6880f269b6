"""Differential tests of the v3lock and v3election gRPC services: kvstore against a real etcd
3.4 (Debian's), over grpcio stubs generated from proto/v3lock.proto and proto/v3election.proto.

Each scenario is a function of one server's ``Side`` that returns a transcript of what the
server answered: every response (header included) or error (code and message), and what the
scenario saw between calls (which blocked calls are still waiting, the keys of the lock's
prefix). It runs against kvstore and etcd at the same time (threads) and the transcripts must
be equal once what differs by nature is dropped: cluster and member ids and the raft term;
revisions count from the scenario's start; lease ids a server chose (a session lease for lease
0) become S1, S2... in the order seen. Leases the scenarios grant themselves have fixed ids.

The waits are the servers': a blocked Lock or Campaign is a grpc future; the scenario checks
that it is still pending, acts (unlock, revoke, resign), then waits for its answer.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import text_format

from etcdctl import kv_server, ref_server  # noqa: F401  (module-scoped pair of servers)
from kvstore.api import (
    rpc_pb2 as pb,
    rpc_pb2_grpc,
    v3election_pb2 as epb,
    v3election_pb2_grpc,
    v3lock_pb2 as lpb,
    v3lock_pb2_grpc,
)

pytestmark = pytest.mark.timeout(90)

SETTLE = 0.3  # seconds a blocked call is given to (wrongly) return before it is checked
ANSWER = 10.0  # seconds a call that must return is waited for
_REVISION_FIELDS = {"revision", "rev", "create_revision", "mod_revision"}


class Side:
    """One server: stubs, the scenario's base revision, names for the lease ids it chose."""

    def __init__(self, endpoint: str, namespace: str):
        self.channel = grpc.insecure_channel(endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.lock = v3lock_pb2_grpc.LockStub(self.channel)
        self.election = v3election_pb2_grpc.ElectionStub(self.channel)
        self.ns = namespace.encode()
        self.base = self.revision()
        self.granted: list[int] = []
        self.names: dict[int, str] = {}

    def close(self) -> None:
        for lease_id in self.granted:
            try:
                self.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease_id), timeout=ANSWER)
            except grpc.RpcError:
                pass  # revoked by the scenario
        self.channel.close()

    def revision(self) -> int:
        return self.kv.Range(pb.RangeRequest(key=b"\0"), timeout=ANSWER).header.revision

    def name(self, suffix: str) -> bytes:
        return self.ns + suffix.encode()

    def grant(self, lease_id: int, ttl: int = 30) -> int:
        self.lease.LeaseGrant(pb.LeaseGrantRequest(ID=lease_id, TTL=ttl), timeout=ANSWER)
        self.granted.append(lease_id)
        return lease_id

    def session(self, lease_id: int) -> str:
        """The name of a lease the server chose."""
        self.granted.append(lease_id)
        return self.names.setdefault(lease_id, f"S{len(self.names) + 1}")

    # -- what the transcript records ---------------------------------------------------------

    def text(self, msg) -> str:
        msg = type(msg).FromString(msg.SerializeToString())
        self._normalize(msg)
        text = text_format.MessageToString(msg, as_one_line=True, as_utf8=True)
        text = text.replace(self.ns.decode(), "")
        for lease_id, name in self.names.items():
            text = text.replace(f"{lease_id:x}", name).replace(str(lease_id), name)
        return text

    def _normalize(self, msg) -> None:
        for field, value in msg.ListFields():
            if field.message_type is not None:
                for m in (value if field.is_repeated else [value]):
                    self._normalize(m)
            elif field.name in _REVISION_FIELDS and value > 0:
                setattr(msg, field.name, value - self.base)
        if msg.DESCRIPTOR.full_name == "etcdserverpb.ResponseHeader":
            msg.ClearField("cluster_id")
            msg.ClearField("member_id")
            msg.ClearField("raft_term")

    def call(self, method, request, timeout: float = ANSWER) -> str:
        try:
            return self.text(method(request, timeout=timeout))
        except grpc.RpcError as e:
            return self.error(e)

    @staticmethod
    def error(e: grpc.RpcError) -> str:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "error DEADLINE_EXCEEDED"  # the client's own deadline: its text is grpc's
        return f"error {e.code().name}: {e.details()}"

    def answer(self, future) -> str:
        try:
            return self.text(future.result(timeout=ANSWER))
        except grpc.RpcError as e:
            return self.error(e)

    def pending(self, *futures) -> str:
        time.sleep(SETTLE)
        return "pending: " + " ".join("waiting" if not f.done() else "ANSWERED" for f in futures)

    def keys(self, name: bytes) -> str:
        """The keys of the recipe's prefix by create revision, with their values."""
        resp = self.kv.Range(pb.RangeRequest(key=name + b"/", range_end=name + b"0",
                                             sort_target=pb.RangeRequest.CREATE,
                                             sort_order=pb.RangeRequest.ASCEND), timeout=ANSWER)
        return "keys: " + " ".join(self.text(kv) for kv in resp.kvs)

    def await_keys(self, name: bytes, count: int) -> None:
        """Until the prefix has ``count`` keys (a blocked call has put its key)."""
        deadline = time.monotonic() + ANSWER
        while self.kv.Range(pb.RangeRequest(key=name + b"/", range_end=name + b"0",
                                            count_only=True), timeout=ANSWER).count != count:
            assert time.monotonic() < deadline, f"{name!r} never had {count} keys"
            time.sleep(0.02)


def both(kv_server, ref_server, scenario, *args) -> list[str]:  # noqa: F811
    """Runs scenario(side, *args) against kvstore and etcd at once; asserts that the
    transcripts are equal; returns kvstore's."""
    namespace = f"{scenario.__name__}-{time.monotonic_ns()}-"

    def run(server):
        side = Side(server.endpoint, namespace)
        try:
            return scenario(side, *args)
        finally:
            side.close()

    with ThreadPoolExecutor(2) as pool:
        kv, ref = [f.result() for f in [pool.submit(run, s) for s in (kv_server, ref_server)]]
    if kv != ref:
        lines = [f"kvstore and etcd differ in {scenario.__name__}:"]
        for i in range(max(len(kv), len(ref))):
            a = kv[i] if i < len(kv) else "(none)"
            b = ref[i] if i < len(ref) else "(none)"
            lines.append(f"{'  ' if a == b else '!!'} kvstore: {a}")
            if a != b:
                lines.append(f"!! etcd:    {b}")
        raise AssertionError("\n".join(lines))
    return kv


# -- Lock ---------------------------------------------------------------------------------------

def _lock_contention(s: Side) -> list[str]:
    name = s.name("lk")
    a, b, c = s.grant(0xA1), s.grant(0xB2), s.grant(0xC3)
    t = ["A " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=a))]
    fb = s.lock.Lock.future(lpb.LockRequest(name=name, lease=b), timeout=ANSWER * 3)
    s.await_keys(name, 2)
    fc = s.lock.Lock.future(lpb.LockRequest(name=name, lease=c), timeout=ANSWER * 3)
    s.await_keys(name, 3)
    t += [s.pending(fb, fc), s.keys(name)]
    t.append("unlock A " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=name + b"/a1")))
    t.append("B " + s.answer(fb))
    t.append(s.pending(fc))
    # the holder's lease revoked: its key goes, the next waiter holds the lock
    t.append("revoke B " + s.call(s.lease.LeaseRevoke, pb.LeaseRevokeRequest(ID=b)))
    t.append("C " + s.answer(fc))
    t.append(s.keys(name))
    t.append("unlock C " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=name + b"/c3")))
    t.append(s.keys(name))
    return t


def test_lock_waiters_acquire_in_order_on_unlock_and_on_revoke(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _lock_contention)
    assert t[0] == "A header { revision: 1 } key: \"lk/a1\""
    assert t[1] == "pending: waiting waiting"
    assert t[4].startswith("B header { revision: 4 }")      # the unlock's revision
    assert t[5] == "pending: waiting"
    assert t[7].startswith("C header { revision: 5 }")      # the revoke's revision
    assert t[-1] == "keys: "


def _lock_requests(s: Side) -> list[str]:
    name = s.name("lr")
    a = s.grant(0x1F)
    return [
        "no such lease " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=0x7777)),
        "lock " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=a)),
        # the same lease again is the same acquisition: its key, no write
        "again " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=a)),
        s.keys(name),
        "unlock " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=name + b"/1f")),
        "unlock again " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=name + b"/1f")),
        "unlock no key " + s.call(s.lock.Unlock, lpb.UnlockRequest()),
        "empty name " + s.call(s.lock.Lock, lpb.LockRequest(lease=a)),
        "unlock it " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=b"/1f")),
    ]


def test_lock_errors_reentry_and_unlock(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _lock_requests)
    # etcd's lock server gets its KV's errors through an in-process client: code UNKNOWN
    assert t[0] == "no such lease error UNKNOWN: etcdserver: requested lease not found"
    assert t[2] == "again header { revision: 1 } key: \"lr/1f\""
    assert t[6] == "unlock no key error UNKNOWN: etcdserver: key is not provided"


def _lock_session_lease(s: Side) -> list[str]:
    name = s.name("ls")
    resp = s.lock.Lock(lpb.LockRequest(name=name), timeout=ANSWER)
    prefix, hex_id = resp.key.rsplit(b"/", 1)
    lease_id = int(hex_id, 16)
    ttl = s.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id), timeout=ANSWER)
    label = s.session(lease_id)
    return [f"{label} " + s.text(resp), f"prefix {prefix == name} granted TTL {ttl.grantedTTL}",
            s.keys(name)]


def test_lock_without_a_lease_takes_a_new_60s_session_lease(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _lock_session_lease)
    assert t[:2] == ["S1 header { revision: 1 } key: \"ls/S1\"", "prefix True granted TTL 60"]


def _lock_cancelled(s: Side) -> list[str]:
    name = s.name("lc")
    a, b = s.grant(0xA), s.grant(0xB)
    t = ["A " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=a))]
    # B gives up waiting: the server deletes the key B's Lock put
    # (Which side sees the deadline first is a race: the client's DEADLINE_EXCEEDED, or etcd's
    # server ending the call with its context's error, which its lock server sends as UNKNOWN.)
    gave_up = s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=b), timeout=0.5)
    deadline = gave_up in ("error DEADLINE_EXCEEDED", "error UNKNOWN: context deadline exceeded")
    t.append("B " + ("gave up at its deadline" if deadline else gave_up))
    s.await_keys(name, 1)
    t.append(s.keys(name))
    t.append("revision now " + str(s.revision() - s.base))
    t.append("unlock A " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=name + b"/a")))
    t.append("B again " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=b)))
    return t


def test_lock_given_up_by_its_client_deletes_its_key(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _lock_cancelled)
    assert t[1] == "B gave up at its deadline"
    assert t[3] == "revision now 3"  # B's put, then its delete


def _lock_waiter_lease_expires(s: Side) -> list[str]:
    name = s.name("le")
    a, w = s.grant(0xA), s.grant(0xE, ttl=2)
    t = ["A " + s.call(s.lock.Lock, lpb.LockRequest(name=name, lease=a))]
    fw = s.lock.Lock.future(lpb.LockRequest(name=name, lease=w), timeout=ANSWER * 2)
    s.await_keys(name, 2)
    s.await_keys(name, 1)  # the waiter's lease expired, its key with it
    t += [s.pending(fw), s.keys(name)]
    t.append("unlock A " + s.call(s.lock.Unlock, lpb.UnlockRequest(key=name + b"/a")))
    # etcd 3.4 answers the waiter with its key, although the key is gone
    t += ["W " + s.answer(fw), s.keys(name)]
    return t


def test_lock_waiter_whose_lease_expires_is_answered_with_its_dead_key(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _lock_waiter_lease_expires)
    assert t[-2:] == ["W header { revision: 4 } key: \"le/e\"", "keys: "]


# -- Election -----------------------------------------------------------------------------------

def _leader_key(resp) -> epb.LeaderKey:
    return resp.leader


def _election(s: Side) -> list[str]:
    name = s.name("el")
    a, b = s.grant(0xA), s.grant(0xB)
    t = ["no leader yet " + s.call(s.election.Leader, epb.LeaderRequest(name=name))]
    ca = s.election.Campaign(epb.CampaignRequest(name=name, lease=a, value=b"va"), timeout=ANSWER)
    t.append("A " + s.text(ca))
    fb = s.election.Campaign.future(epb.CampaignRequest(name=name, lease=b, value=b"vb"),
                                    timeout=ANSWER * 3)
    s.await_keys(name, 2)
    t += [s.pending(fb), s.keys(name)]
    t.append("leader " + s.call(s.election.Leader, epb.LeaderRequest(name=name)))
    t.append("proclaim " + s.call(s.election.Proclaim,
                                  epb.ProclaimRequest(leader=ca.leader, value=b"va2")))
    stale = epb.LeaderKey()
    stale.CopyFrom(ca.leader)
    stale.rev += 1
    t.append("proclaim stale " + s.call(s.election.Proclaim,
                                        epb.ProclaimRequest(leader=stale, value=b"x")))
    t.append("proclaim no leader " + s.call(s.election.Proclaim, epb.ProclaimRequest(value=b"x")))
    t.append("resign stale " + s.call(s.election.Resign, epb.ResignRequest(leader=stale)))
    t.append("resign no leader " + s.call(s.election.Resign, epb.ResignRequest()))
    t.append("leader " + s.call(s.election.Leader, epb.LeaderRequest(name=name)))
    t.append(s.pending(fb))
    t.append("resign A " + s.call(s.election.Resign, epb.ResignRequest(leader=ca.leader)))
    cb = fb.result(timeout=ANSWER)
    t.append("B " + s.text(cb))           # the header is the campaign's own txn's
    t.append("leader " + s.call(s.election.Leader, epb.LeaderRequest(name=name)))
    # campaigning again with the key held: the same leadership, the new value proclaimed
    t.append("B again " + s.call(s.election.Campaign,
                                 epb.CampaignRequest(name=name, lease=b, value=b"vb2")))
    t.append(s.keys(name))
    t.append("resign B " + s.call(s.election.Resign, epb.ResignRequest(leader=cb.leader)))
    t.append("no leader " + s.call(s.election.Leader, epb.LeaderRequest(name=name)))
    t.append("no such lease " + s.call(s.election.Campaign,
                                       epb.CampaignRequest(name=name, lease=0x7777, value=b"x")))
    return t


def test_campaign_proclaim_leader_resign(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _election)
    assert t[0] == "no leader yet error UNKNOWN: election: no leader"
    assert t[6] == "proclaim stale error UNKNOWN: election: not leader"
    assert t[7] == "proclaim no leader error UNKNOWN: \"leader\" field must be provided"
    assert t[-2] == "no leader error UNKNOWN: election: no leader"
    assert t[-1] == "no such lease error UNKNOWN: etcdserver: requested lease not found"


def _campaign_cancelled(s: Side) -> list[str]:
    name = s.name("cc")
    a, b = s.grant(0xA), s.grant(0xB)
    t = ["A " + s.call(s.election.Campaign, epb.CampaignRequest(name=name, lease=a, value=b"1"))]
    # B's client cancels its waiting call (a stream reset; the lock test above lets the
    # deadline run out instead): the server resigns B's candidacy, deleting its key
    fb = s.election.Campaign.future(epb.CampaignRequest(name=name, lease=b, value=b"2"),
                                    timeout=ANSWER)
    s.await_keys(name, 2)
    t.append(s.pending(fb))
    fb.cancel()
    s.await_keys(name, 1)
    t += [s.keys(name), "revision now " + str(s.revision() - s.base)]
    return t


def test_campaign_given_up_by_its_client_deletes_its_key(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _campaign_cancelled)
    assert t[1:] == ["pending: waiting", "keys: key: \"cc/a\" create_revision: 1 mod_revision: 1"
                     " version: 1 value: \"1\" lease: 10", "revision now 3"]


def _observe(s: Side) -> list[str]:
    name = s.name("ob")
    a, b = s.grant(0xA), s.grant(0xB)
    seen: list[str] = []
    observer = s.election.Observe(epb.LeaderRequest(name=name), timeout=ANSWER * 3)

    def read():
        try:
            for resp in observer:
                seen.append(s.text(resp))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                seen.append(s.error(e))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def observed(n: int) -> None:
        # Each write waits for the observer to report the one before: the header of what it
        # reports next is the revision its watch catches up to, so a write landing while etcd
        # registers that watch would show in it.
        deadline = time.monotonic() + ANSWER
        while len(seen) < n:
            assert time.monotonic() < deadline, f"observer saw {seen}"
            time.sleep(0.02)

    time.sleep(SETTLE)  # the observer's watch waits for a first leader
    ca = s.election.Campaign(epb.CampaignRequest(name=name, lease=a, value=b"a1"), timeout=ANSWER)
    observed(1)
    s.election.Proclaim(epb.ProclaimRequest(leader=ca.leader, value=b"a2"), timeout=ANSWER)
    observed(2)
    s.election.Resign(epb.ResignRequest(leader=ca.leader), timeout=ANSWER)
    cb = s.election.Campaign(epb.CampaignRequest(name=name, lease=b, value=b"b1"), timeout=ANSWER)
    observed(3)
    s.election.Proclaim(epb.ProclaimRequest(leader=cb.leader, value=b"b2"), timeout=ANSWER)
    observed(4)
    # a second observer, started with a leader in office, gets it first
    late = s.election.Observe(epb.LeaderRequest(name=name), timeout=ANSWER)
    first = s.text(next(late))
    late.cancel()
    # a key of the prefix that no campaign put: not the leader while B's key exists; when B's
    # lease is revoked the observer moves on to it
    s.kv.Put(pb.PutRequest(key=name + b"/zz", value=b"zz"), timeout=ANSWER)
    s.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=b), timeout=ANSWER)
    observed(5)
    time.sleep(SETTLE)
    observer.cancel()
    reader.join(ANSWER)
    return [f"observed {line}" for line in seen] + [f"late observer {first}"]


def test_observe_follows_leaders_in_order(kv_server, ref_server):  # noqa: F811
    t = both(kv_server, ref_server, _observe)
    assert [line.split("value: ")[1].split(" ")[0] for line in t] == [
        '"a1"', '"a2"', '"b1"', '"b2"', '"zz"', '"b2"'], t
