"""Maintenance and Cluster against a real etcd: the same requests to a fresh etcd 3.4 and a fresh
kvstore server (both processes on loopback), answers compared.

HashKV hashes every revision the servers hold, so each test starts its own pair: the same
writes give the same revisions, and then the same hash. Alarms, defragmentation, member changes
and MoveLeader are compared too, through grpcio and through Debian's etcdctl.
"""
from __future__ import annotations

import re

import grpc
import pytest

from etcdctl import Etcdctl
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc
from procs import EtcdProcess, KvstoreProcess, channel

pytestmark = pytest.mark.timeout(120)


class Server:
    """One server's stubs."""

    def __init__(self, proc):
        self.proc = proc
        self.channel = channel(proc.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.cluster = rpc_pb2_grpc.ClusterStub(self.channel)
        self.ctl = Etcdctl(proc.endpoint)

    @property
    def member_id(self) -> int:
        return self.maintenance.Status(pb.StatusRequest(), timeout=5).header.member_id

    def call(self, stub: str, method: str, request):
        """(response or None, (code, details) or None)."""
        try:
            return getattr(getattr(self, stub), method)(request, timeout=10), None
        except grpc.RpcError as e:
            return None, (e.code(), e.details())


@pytest.fixture
def pair(tmp_path):
    """A fresh etcd and a fresh kvstore (the LMDB log, the default)."""
    with EtcdProcess(tmp_path / "etcd") as etcd, KvstoreProcess(tmp_path / "kv") as kv:
        servers = Server(etcd), Server(kv)
        yield servers
        for s in servers:
            s.channel.close()


def both(pair, stub: str, method: str, request):
    """The same request to both; their outcomes must agree (errors: code and message)."""
    (r_etcd, e_etcd), (r_kv, e_kv) = (s.call(stub, method, request) for s in pair)
    assert e_kv == e_etcd, f"{method}: kvstore {e_kv}, etcd {e_etcd}"
    return r_etcd, r_kv


def write_history(pair) -> None:
    """Puts, overwrites, a Txn of several writes, a multi-key delete, a leased key: the same
    on both servers, so both hold the same revisions."""
    for i in range(20):
        both(pair, "kv", "Put", pb.PutRequest(key=b"k%02d" % i, value=b"v%d" % i))
    both(pair, "kv", "Put", pb.PutRequest(key=b"k03", value=b"again"))
    txn = pb.TxnRequest(success=[
        pb.RequestOp(request_put=pb.PutRequest(key=b"t/b", value=b"2")),
        pb.RequestOp(request_put=pb.PutRequest(key=b"t/a", value=b"1")),
        pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"k05")),
        pb.RequestOp(request_put=pb.PutRequest(key=b"t/c", value=b"3"))])
    both(pair, "kv", "Txn", txn)
    both(pair, "kv", "DeleteRange", pb.DeleteRangeRequest(key=b"k10", range_end=b"k15"))
    lease_etcd, lease_kv = both(pair, "lease", "LeaseGrant", pb.LeaseGrantRequest(ID=0x1234, TTL=600))
    assert lease_etcd.ID == lease_kv.ID == 0x1234
    both(pair, "kv", "Put", pb.PutRequest(key=b"leased", value=b"x", lease=0x1234))
    both(pair, "kv", "Put", pb.PutRequest(key=b"t/b", value=b"22"))


def hashes(pair, revision: int = 0):
    r_etcd, r_kv = both(pair, "maintenance", "HashKV", pb.HashKVRequest(revision=revision))
    assert r_kv.header.revision == r_etcd.header.revision
    assert r_kv.compact_revision == r_etcd.compact_revision
    return r_etcd.hash, r_kv.hash


def test_hashkv_equals_etcds_through_writes_and_compactions(pair):
    etcd, kv = pair
    assert hashes(pair)[0] == hashes(pair)[1]  # empty stores (revision 1)
    write_history(pair)
    current = kv.kv.Range(pb.RangeRequest(key=b"k"), timeout=5).header.revision
    assert current == etcd.kv.Range(pb.RangeRequest(key=b"k"), timeout=5).header.revision
    seen = set()
    for rev in (0, 2, 10, current - 3, current - 2, current):
        h_etcd, h_kv = hashes(pair, rev)
        assert h_kv == h_etcd, f"HashKV at revision {rev}"
        seen.add(h_kv)
    assert len(seen) >= 5  # the hash moves with the revision: it is not a constant

    # Compaction keeps each key's newest revision (sub-revisions of the Txn included).
    txn_rev = current - 4
    for compact_at in (txn_rev - 1, txn_rev, current - 1):
        both(pair, "kv", "Compact", pb.CompactionRequest(revision=compact_at, physical=True))
        for rev in (0, compact_at + 1, current):
            h_etcd, h_kv = hashes(pair, rev)
            assert h_kv == h_etcd, f"HashKV at {rev} after compacting at {compact_at}"
        # A compacted revision and a future one: etcd's errors, code and message.
        both(pair, "maintenance", "HashKV", pb.HashKVRequest(revision=compact_at))
        both(pair, "maintenance", "HashKV", pb.HashKVRequest(revision=current + 5))
    _, err = kv.call("maintenance", "HashKV", pb.HashKVRequest(revision=current + 5))
    assert err == (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    _, err = kv.call("maintenance", "HashKV", pb.HashKVRequest(revision=2))
    assert err == (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")

    # No key live at the hashed revision: etcd 3.4 then hashes every record compaction kept.
    both(pair, "kv", "Put", pb.PutRequest(key=b"k03", value=b"last"))
    everything = pb.DeleteRangeRequest(key=b"\0", range_end=b"\0")
    last = both(pair, "kv", "DeleteRange", everything)[1].header.revision
    for rev in (last - 1, last):
        h_etcd, h_kv = hashes(pair, rev)
        assert h_kv == h_etcd, f"HashKV at {rev}, all keys deleted at {last}"
    both(pair, "kv", "Compact", pb.CompactionRequest(revision=last - 1, physical=True))
    h_etcd, h_kv = hashes(pair, last)
    assert h_kv == h_etcd, "HashKV with every key deleted, compacted before"

    # etcdctl endpoint hashkv prints the same hash.
    out_kv = kv.ctl.ok("endpoint", "hashkv", "-w", "json").json()
    out_etcd = etcd.ctl.ok("endpoint", "hashkv", "-w", "json").json()
    assert out_kv[0]["HashKV"]["hash"] == out_etcd[0]["HashKV"]["hash"]
    assert out_kv[0]["HashKV"]["compact_revision"] == last - 1


def test_hashkv_after_a_restart_and_a_snapshot(tmp_path):
    """The sub-revisions compaction keeps are in snapshots: a restarted kvstore (recovering
    from its snapshot and log) reports the same hash."""
    with KvstoreProcess(tmp_path / "kv", extra_args=["--snapshot-count", "5"]) as proc:
        s = Server(proc)
        txn = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"a%d" % i, value=b"v"))
                                     for i in range(4)])
        s.kv.Txn(txn, timeout=5)
        for i in range(12):
            s.kv.Put(pb.PutRequest(key=b"b%d" % i, value=b"w"), timeout=5)
        rev = s.kv.Range(pb.RangeRequest(key=b"a"), timeout=5).header.revision
        s.kv.Compact(pb.CompactionRequest(revision=rev - 1, physical=True), timeout=5)
        before = s.maintenance.HashKV(pb.HashKVRequest(), timeout=5).hash
        whole_before = s.maintenance.Hash(pb.HashRequest(), timeout=5).hash
        s.channel.close()
        proc.stop()
        proc.start()
        s = Server(proc)
        assert s.maintenance.HashKV(pb.HashKVRequest(), timeout=5).hash == before
        assert s.maintenance.Hash(pb.HashRequest(), timeout=5).hash == whole_before
        s.kv.Put(pb.PutRequest(key=b"c", value=b"x"), timeout=5)
        assert s.maintenance.Hash(pb.HashRequest(), timeout=5).hash != whole_before
        s.channel.close()


def test_alarms_as_etcd_applies_them(pair):
    """NOSPACE raised through Alarm(ACTIVATE): the same refusals, the same lists, the same
    disarm, on both servers."""
    ids = [s.member_id for s in pair]

    def alarm(action, alarm_type=pb.AlarmType.NOSPACE, own_id=True):
        outs = []
        for s, member in zip(pair, ids, strict=True):
            resp, err = s.call("maintenance", "Alarm", pb.AlarmRequest(
                action=action, memberID=member if own_id else 0, alarm=alarm_type))
            outs.append((err, [(a.memberID == member, a.alarm) for a in resp.alarms] if resp else None))
        assert outs[0] == outs[1]
        return outs[1]

    both(pair, "kv", "Put", pb.PutRequest(key=b"before", value=b"1"))
    assert alarm(pb.AlarmRequest.GET, pb.AlarmType.NONE) == (None, [])
    assert alarm(pb.AlarmRequest.ACTIVATE) == (None, [(True, pb.AlarmType.NOSPACE)])
    assert alarm(pb.AlarmRequest.ACTIVATE) == (None, [(True, pb.AlarmType.NOSPACE)])  # again
    assert alarm(pb.AlarmRequest.GET, pb.AlarmType.NONE) == (None, [(True, pb.AlarmType.NOSPACE)])
    assert alarm(pb.AlarmRequest.GET, pb.AlarmType.CORRUPT) == (None, [])
    nospace = (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
    # Writes that grow the state are refused; reads, deletes, a delete-only Txn and
    # compaction go on.
    for stub, method, request in [
            ("kv", "Put", pb.PutRequest(key=b"x", value=b"1")),
            ("kv", "Txn", pb.TxnRequest(failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"x"))])),
            ("lease", "LeaseGrant", pb.LeaseGrantRequest(TTL=60))]:
        assert pair[1].call(stub, method, request)[1] == nospace
        both(pair, stub, method, request)
    r_etcd, r_kv = both(pair, "kv", "Range", pb.RangeRequest(key=b"before"))
    assert r_kv.kvs[0].value == b"1"
    both(pair, "kv", "Txn", pb.TxnRequest(success=[
        pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"before"))]))
    both(pair, "kv", "DeleteRange", pb.DeleteRangeRequest(key=b"nothing"))
    rev = pair[1].kv.Range(pb.RangeRequest(key=b"x"), timeout=5).header.revision
    both(pair, "kv", "Compact", pb.CompactionRequest(revision=rev))
    # Status lists the alarm; disarm clears it; writes go on.
    for s in pair:
        assert s.maintenance.Status(pb.StatusRequest(), timeout=5).errors == [
            f"memberID:{s.member_id} alarm:NOSPACE "]
    assert alarm(pb.AlarmRequest.DEACTIVATE, pb.AlarmType.CORRUPT) == (None, [])
    assert alarm(pb.AlarmRequest.DEACTIVATE) == (None, [(True, pb.AlarmType.NOSPACE)])
    assert alarm(pb.AlarmRequest.GET, pb.AlarmType.NONE) == (None, [])
    both(pair, "kv", "Put", pb.PutRequest(key=b"x", value=b"after"))


def test_alarm_commands_and_quota(tmp_path):
    """--quota-backend-bytes: puts past it raise NOSPACE; etcdctl lists and disarms it;
    reads, deletes and compaction keep working; the alarm survives a restart; once the state
    is back under the quota, disarmed, writes go on."""
    with KvstoreProcess(tmp_path / "kv", extra_args=["--quota-backend-bytes", str(256 * 1024)]) as proc:
        ctl = Etcdctl(proc.endpoint)
        value = "v" * 4096
        written = 0
        for i in range(200):
            r = ctl.run("put", f"big/{i:03d}", value)
            if r.returncode:
                assert "etcdserver: mvcc: database space exceeded" in r.error
                break
            written += 1
        assert 40 <= written < 70  # ~4.3 KB a key, 256 KiB: it stopped near the quota
        member = Server(proc).member_id
        assert ctl.ok("alarm", "list").stdout == f"memberID:{member:d} alarm:NOSPACE \n"
        # The alarm stays raised for every write that grows the state, even a small one.
        assert "database space exceeded" in ctl.fail("put", "small", "1").error
        assert ctl.json("get", "big/000")["count"] == 1
        proc.stop()
        proc.start()  # replicated state: it survives a restart
        assert ctl.ok("alarm", "list").stdout == f"memberID:{member:d} alarm:NOSPACE \n"
        assert ctl.ok("del", "--prefix", "big/").stdout.strip() == str(written)
        rev = ctl.revision()
        ctl.ok("compaction", "--physical", str(rev))
        assert ctl.ok("alarm", "disarm").stdout == f"memberID:{member:d} alarm:NOSPACE \n"
        assert ctl.ok("alarm", "list").stdout == ""
        ctl.ok("put", "small", "1")
        status = ctl.json("endpoint", "status")[0]["Status"]
        assert status.get("errors") is None


def test_etcdctl_member_list_move_leader_and_member_changes(tmp_path):
    peer = "http://127.0.0.1:12380"
    with EtcdProcess(tmp_path / "etcd") as etcd_proc, KvstoreProcess(
            tmp_path / "kv", extra_args=["--initial-advertise-peer-urls", peer,
                                         "--listen-peer-urls", peer]) as kv_proc:
        kv, etcd = Server(kv_proc), Server(etcd_proc)
        line = kv.ctl.ok("member", "list").stdout.strip()
        member = kv.member_id
        assert line == f"{member:x}, started, test, {peer}, {kv_proc.url}, false"
        # move-leader: to itself (the leader), as etcd; to no member, etcd's error.
        for s in (kv, etcd):
            me = f"{s.member_id:x}"
            assert s.ctl.ok("move-leader", me).stdout == f"Leadership transferred from {me} to {me}\n"
            assert s.ctl.fail("move-leader", "1234").error == "Error: etcdserver: bad leader transferee"
        # Member changes this deployment cannot make: etcd's errors.
        assert kv.ctl.fail("member", "remove", "1234").error == "Error: etcdserver: member not found"
        assert etcd.ctl.fail("member", "remove", "1234").error == "Error: etcdserver: member not found"
        assert kv.ctl.fail("member", "promote", f"{member:x}").error == (
            "Error: etcdserver: can only promote a learner member")
        assert etcd.ctl.fail("member", "promote", f"{etcd.member_id:x}").error == (
            "Error: etcdserver: can only promote a learner member")
        assert kv.ctl.fail("member", "remove", f"{member:x}").error == (
            "Error: etcdserver: re-configuration failed due to not enough started members")
        assert etcd.ctl.fail("member", "remove", f"{etcd.member_id:x}").error == (
            "Error: etcdserver: re-configuration failed due to not enough started members")
        for s in (kv, etcd):
            assert s.ctl.fail("member", "add", "m2", "--peer-urls", "nothttp").error.startswith(
                "Error: URL scheme must be http, https, unix, or unixs")  # refused by etcdctl
            _, err = s.call("cluster", "MemberAdd", pb.MemberAddRequest(peerURLs=["ftp://x:1"]))
            assert err == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid")
        _, err = kv.call("cluster", "MemberAdd", pb.MemberAddRequest(peerURLs=[peer]))
        assert err == (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists")
        # member update changes the peer URLs, for good.
        new_peer = "http://127.0.0.1:22380"
        kv.ctl.ok("member", "update", f"{member:x}", f"--peer-urls={new_peer}")
        kv_proc.stop()
        kv_proc.start()
        assert f", {new_peer}, " in kv.ctl.ok("member", "list").stdout


def test_defragment_returns_freed_space(tmp_path):
    """Deleted and compacted data leaves free pages in the log's file; defrag returns them:
    dbSize falls to about dbSizeInUse, the data is intact, writes go on, and a restart
    recovers the same state."""
    with KvstoreProcess(tmp_path / "kv", extra_args=["--snapshot-count", "100000"]) as proc:
        ctl = Etcdctl(proc.endpoint)
        s = Server(proc)
        for i in range(300):
            s.kv.Put(pb.PutRequest(key=b"d/%04d" % i, value=b"x" * 8192), timeout=5)
        s.kv.Put(pb.PutRequest(key=b"keep", value=b"me"), timeout=5)
        rev = s.kv.DeleteRange(pb.DeleteRangeRequest(key=b"d/", range_end=b"d0"), timeout=5).header.revision
        s.kv.Compact(pb.CompactionRequest(revision=rev, physical=True), timeout=5)
        before = s.maintenance.Status(pb.StatusRequest(), timeout=5)
        assert before.dbSize > 2_000_000 and 0 < before.dbSizeInUse <= before.dbSize
        out = ctl.ok("defrag").stdout
        assert re.fullmatch(r"Finished defragmenting etcd member\[[^\]]+\]\n", out), out
        after = s.maintenance.Status(pb.StatusRequest(), timeout=5)
        assert after.dbSize < before.dbSize / 4, (before, after)
        assert after.dbSizeInUse <= after.dbSize
        hash_before = s.maintenance.HashKV(pb.HashKVRequest(), timeout=5).hash
        s.kv.Put(pb.PutRequest(key=b"after", value=b"defrag"), timeout=5)
        proc.stop()
        proc.start()
        s.channel.close()
        s = Server(proc)
        assert s.kv.Range(pb.RangeRequest(key=b"keep"), timeout=5).kvs[0].value == b"me"
        assert s.kv.Range(pb.RangeRequest(key=b"after"), timeout=5).kvs[0].value == b"defrag"
        assert s.kv.Range(pb.RangeRequest(key=b"d/", range_end=b"d0"), timeout=5).count == 0
        s.kv.Put(pb.PutRequest(key=b"after", value=b"x"), timeout=5)
        s.kv.DeleteRange(pb.DeleteRangeRequest(key=b"after"), timeout=5)
        assert hash_before != 0
        s.channel.close()


def test_hash_is_stable_for_the_same_state(tmp_path):
    """Hash: two servers given the same writes agree; another write changes it. (etcd's hashes
    its database file, so no comparison with etcd; etcdctl 3.4 has no command for it.)"""
    with KvstoreProcess(tmp_path / "a") as a, KvstoreProcess(tmp_path / "b") as b:
        servers = Server(a), Server(b)
        for s in servers:
            s.kv.Put(pb.PutRequest(key=b"a", value=b"1"), timeout=5)
            s.lease.LeaseGrant(pb.LeaseGrantRequest(ID=7, TTL=100), timeout=5)
            s.kv.Put(pb.PutRequest(key=b"b", value=b"2", lease=7), timeout=5)
        first = [s.maintenance.Hash(pb.HashRequest(), timeout=5).hash for s in servers]
        assert first[0] == first[1]
        servers[1].kv.Put(pb.PutRequest(key=b"a", value=b"1"), timeout=5)  # same value, new revision
        assert servers[1].maintenance.Hash(pb.HashRequest(), timeout=5).hash != first[0]
        servers[0].lease.LeaseGrant(pb.LeaseGrantRequest(ID=8, TTL=100), timeout=5)  # a lease only
        assert servers[0].maintenance.Hash(pb.HashRequest(), timeout=5).hash != first[0]
        for s in servers:
            s.channel.close()
