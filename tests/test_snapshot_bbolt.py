"""Snapshots both ways, as etcd's bbolt db: ``etcdctl snapshot save`` against kvstore, restored
by ``etcdctl snapshot restore`` into a real etcd; and an etcd's snapshot restored by ``kvstore
restore`` into a kvstore. Each side must then serve the same keys, revisions, versions and
leases as the server the snapshot came from.

One module fixture runs the same writes (puts, deletes, a Txn of several operations, a lease
with a key, a value big enough for bbolt's overflow pages, a compaction) on a kvstore and on an
etcd, and saves a snapshot of each.
"""
import asyncio
import hashlib
import subprocess
import sys

import grpc
import pytest

import kvstore
from etcdctl import Etcdctl
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.mvcc import MVCCStore
from kvstore.mvcc.backend_view import backend_revisions, mvcc_from_revisions
from kvstore.store import etcd_db
from kvstore.store.etcd_restore import db_bytes
from procs import REPO, EtcdProcess, KvstoreProcess, channel

LEASE_TTL = 300
LEASE_ID = 0x2B5C_0FFE_E000_0001
COMPACT_AT = 7  # the Txn's revision: its puts at sub-revisions 0 and 1 survive the compaction
READ_REVS = (7, 8, 20, 39, 41)


def write_history(ctl: Etcdctl) -> str:
    """The writes both servers get; returns the lease's id (hex)."""
    ctl.ok("put", "a", "1")  # 2
    ctl.ok("put", "b", "2")  # 3
    ctl.ok("put", "a", "3")  # 4
    ctl.ok("del", "b")  # 5
    # The same lease id on both (etcdctl has the server draw one): HashKV covers the records.
    with channel(ctl.endpoint) as ch:
        rpc.LeaseStub(ch).LeaseGrant(pb.LeaseGrantRequest(ID=LEASE_ID, TTL=LEASE_TTL), timeout=10)
    lease = f"{LEASE_ID:x}"
    ctl.ok("put", "c", "4", f"--lease={lease}")  # 6
    ctl.ok("txn", input="\nput x 1\nput y 2\ndel a\n\n\n")  # 7: x, y, a's tombstone
    ctl.ok("put", "big", "z" * 20_000)  # 8
    for i in range(30):  # 9..38
        ctl.ok("put", f"k{i:02d}", f"v{i}" * (i + 1))
    ctl.ok("put", "a", "5")  # 39: a again, a new generation
    ctl.ok("compact", str(COMPACT_AT))
    ctl.ok("put", "x", "after")  # 40
    ctl.ok("del", "k0", "--prefix")  # 41: ten keys in one revision
    return lease


def observed(ctl: Etcdctl, lease: str) -> dict:
    """What a client sees of the state: every key now and at older revisions (create and
    mod revisions, versions, values, leases), the compacted revisions' error, the lease, and
    HashKV (etcd's hash of the key bucket's records: revision keys, sub-revisions included)."""
    def kvs(*args):
        out = ctl.json("get", "", "--prefix", *args)
        return out["header"]["revision"], out.get("kvs", [])

    ttl = ctl.json("lease", "timetolive", lease, "--keys")
    hash_kv = ctl.json("endpoint", "hashkv")[0]["HashKV"]
    return {
        "hashkv": (hash_kv["hash"], hash_kv["compact_revision"]),
        "now": kvs(),
        "at": {rev: kvs(f"--rev={rev}") for rev in READ_REVS},
        "compacted": ctl.fail("get", "a", f"--rev={COMPACT_AT - 1}").error,
        "leases": ctl.ok("lease", "list").stdout,
        "lease": (ttl["granted-ttl"], ttl.get("keys")),
        "remaining": ttl["ttl"],
    }


def same_state(got: dict, want: dict) -> None:
    # A restored lease gets its full TTL again (etcd's restore and kvstore's both).
    assert LEASE_TTL - 10 <= got.pop("remaining") <= LEASE_TTL + 1
    want = dict(want)
    want.pop("remaining")
    assert got == want


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """Both servers after the same writes, what each serves, and a snapshot of each."""
    tmp = tmp_path_factory.mktemp("snapshots")
    with KvstoreProcess(tmp / "kv") as kv, EtcdProcess(tmp / "etcd") as etcd:
        kv_ctl, etcd_ctl = Etcdctl(kv.endpoint), Etcdctl(etcd.endpoint)
        kv_lease = write_history(kv_ctl)
        etcd_lease = write_history(etcd_ctl)
        kv_ctl.ok("snapshot", "save", str(tmp / "kv.db"))
        etcd_ctl.ok("snapshot", "save", str(tmp / "etcd.db"))
        yield {"tmp": tmp, "kv": (kv_ctl, kv_lease, observed(kv_ctl, kv_lease)),
               "etcd": (etcd_ctl, etcd_lease, observed(etcd_ctl, etcd_lease))}


def test_both_servers_serve_the_same_state(snapshots):
    # The premise of the comparisons below.
    kv, etcd = snapshots["kv"][2], snapshots["etcd"][2]
    assert kv["now"][0] == 41 and kv["at"][8][1] and kv["lease"][1]
    assert any(item.get("lease") == LEASE_ID for item in kv["now"][1])
    same_state(dict(kv), etcd)


def test_etcdctl_snapshot_status_reads_kvstore_snapshot(snapshots):
    tmp = snapshots["tmp"]
    ctl = snapshots["kv"][0]
    kv_status = ctl.json("snapshot", "status", str(tmp / "kv.db"))
    etcd_status = ctl.json("snapshot", "status", str(tmp / "etcd.db"))
    # The same records as etcd's own snapshot of the same writes, bucket by bucket (the hash
    # differs: member ids, the consistent index).
    assert kv_status["revision"] == etcd_status["revision"] == 41
    assert kv_status["totalKey"] == etcd_status["totalKey"]
    assert kv_status["totalSize"] >= 20_000 and kv_status["hash"]
    data = (tmp / "kv.db").read_bytes()
    assert len(data) % 4096 == 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]


def test_kvstore_snapshot_restored_into_real_etcd(snapshots):
    tmp = snapshots["tmp"]
    ctl, lease, want = snapshots["kv"]
    restored = EtcdProcess(tmp / "etcd-restored")
    peer = f"http://127.0.0.1:{restored.peer_port}"
    # Without --skip-hash-check: etcdctl checks the SHA-256 kvstore's stream ended with.
    ctl.ok("snapshot", "restore", str(tmp / "kv.db"), "--data-dir", str(restored.data_dir),
           "--name", "ref", "--initial-cluster", f"ref={peer}",
           "--initial-advertise-peer-urls", peer)
    with restored:
        etcd_ctl = Etcdctl(restored.endpoint)
        same_state(observed(etcd_ctl, lease), want)
        # And it goes on from there.
        assert etcd_ctl.json("put", "after-restore", "1")["header"]["revision"] == 42


def test_etcd_snapshot_restored_into_kvstore(snapshots):
    tmp = snapshots["tmp"]
    _, lease, want = snapshots["etcd"]
    data_dir = tmp / "kv-restored"
    r = subprocess.run([sys.executable, "-m", "kvstore", "restore", str(tmp / "etcd.db"),
                        "--data-dir", str(data_dir)], capture_output=True, text=True,
                       env={"PYTHONPATH": str(REPO)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "revision 41" in r.stdout and "hash checked" in r.stdout
    with KvstoreProcess(data_dir) as kv:
        kv_ctl = Etcdctl(kv.endpoint)
        same_state(observed(kv_ctl, lease), want)
        assert kv_ctl.json("put", "after-restore", "1")["header"]["revision"] == 42
    # Restarted, it still holds it (the restore is its first snapshot, the log goes on after).
    with KvstoreProcess(data_dir) as kv:
        assert Etcdctl(kv.endpoint).json("get", "after-restore")["header"]["revision"] == 42


def kvstore_restore(file, data_dir):
    return subprocess.run([sys.executable, "-m", "kvstore", "restore", str(file), "--data-dir",
                           str(data_dir)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO)}, timeout=60)


def etcd_restored_from(snapshot, data_dir) -> EtcdProcess:
    """A real etcd (not started) on the data dir `etcdctl snapshot restore` makes of ``snapshot``."""
    restored = EtcdProcess(data_dir)
    peer = f"http://127.0.0.1:{restored.peer_port}"
    Etcdctl("127.0.0.1:1").ok("snapshot", "restore", str(snapshot), "--data-dir",
                              str(restored.data_dir), "--name", "ref", "--initial-cluster",
                              f"ref={peer}", "--initial-advertise-peer-urls", peer)
    return restored


def test_raised_alarms_go_both_ways(tmp_path):
    """An alarm raised on etcd is in its snapshot's alarm bucket: kvstore restores it (writes
    refused until disarmed), and kvstore's snapshot carries it on to a restored etcd."""
    with EtcdProcess(tmp_path / "etcd") as etcd:
        ctl = Etcdctl(etcd.endpoint)
        ctl.ok("put", "a", "1")
        with grpc.insecure_channel(etcd.endpoint) as ch:
            m = rpc.MaintenanceStub(ch)
            member = m.Status(pb.StatusRequest(), timeout=5).header.member_id
            m.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=member,
                                    alarm=pb.AlarmType.NOSPACE), timeout=5)
        ctl.ok("snapshot", "save", str(tmp_path / "etcd.db"))
    r = kvstore_restore(tmp_path / "etcd.db", tmp_path / "kv")
    assert r.returncode == 0, r.stderr
    raised = f"memberID:{member} alarm:NOSPACE \n"
    with KvstoreProcess(tmp_path / "kv") as kv:
        kv_ctl = Etcdctl(kv.endpoint)
        assert kv_ctl.ok("alarm", "list").stdout == raised
        assert "database space exceeded" in kv_ctl.fail("put", "b", "2").error
        kv_ctl.ok("snapshot", "save", str(tmp_path / "kv.db"))
    restored = etcd_restored_from(tmp_path / "kv.db", tmp_path / "etcd-restored")
    with restored:
        etcd_ctl = Etcdctl(restored.endpoint)
        assert etcd_ctl.ok("alarm", "list").stdout == raised
        assert "database space exceeded" in etcd_ctl.fail("put", "b", "2").error


def test_kvstore_restore_refuses_damage_and_a_used_data_dir(snapshots):
    tmp = snapshots["tmp"]
    data = (tmp / "etcd.db").read_bytes()
    cases = {
        "flipped": data[:9000] + bytes([data[9000] ^ 1]) + data[9001:],  # the hash catches it
        "truncated": data[:len(data) // 2],
        "meta": bytes(4096 * 4),
    }
    for name, damaged in cases.items():
        (tmp / f"{name}.db").write_bytes(damaged)
        r = kvstore_restore(tmp / f"{name}.db", tmp / f"dir-{name}")
        assert r.returncode == 1 and r.stdout == "", (name, r)
        assert r.stderr.startswith("kvstore restore: ") and "damaged" in r.stderr, (name, r)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    used = tmp / "used"
    used.mkdir()
    (used / "x").write_text("")
    r = kvstore_restore(tmp / "etcd.db", used)
    assert r.returncode == 1 and "is not empty" in r.stderr
    # A db without the hash (an etcd data dir's member/snap/db) is taken as it is.
    (tmp / "bare.db").write_bytes(data[:-32])
    r = kvstore_restore(tmp / "bare.db", tmp / "dir-bare")
    assert r.returncode == 0 and "no hash to check" in r.stdout, r


# -- in process -------------------------------------------------------------------------------

def mvcc_with_history():
    m = MVCCStore()
    for i in range(300):
        w = m.write()
        w.put(b"k%03d" % (i % 40), b"v%d" % i, lease=7 if i % 3 == 0 else 0)
        if i % 11 == 0:
            w.put(b"t%03d" % i, b"x")
            w.delete_range(b"k%03d" % ((i + 5) % 40), None)
        w.end()
    m.compact(150)
    w = m.write()
    w.delete_range(b"k", b"l")
    w.end()
    return m


@pytest.mark.inprocess
def test_etcd_db_round_trip_in_process(tmp_path):
    m = mvcc_with_history()
    with open(tmp_path / "db", "w+b") as out:
        steps = etcd_db.write_db(out, backend_revisions(m), [(7, 60), (9, 5)],
                                 [etcd_db.Member(1, "m", ["http://p"], ["http://c"])], 99,
                                 m.compact_rev, [(1, pb.AlarmType.NOSPACE)])
        for _ in steps:
            pass
    db = etcd_db.read_db((tmp_path / "db").read_bytes())
    assert (db.current_rev, db.compact_rev, db.consistent_index) == (m.current_rev, 150, 99)
    assert db.alarms == [(1, pb.AlarmType.NOSPACE)]
    assert sorted(db.leases) == [(7, 60), (9, 5)]
    want = [(main, sub, kv.as_tuple()) for main, sub, kv in backend_revisions(m)]
    assert [(main, sub, kv.as_tuple()) for main, sub, kv in db.revisions] == want
    back = mvcc_from_revisions(db.revisions, db.current_rev, db.compact_rev)
    assert [(a, b, kv.as_tuple()) for a, b, kv in backend_revisions(back)] == want


@pytest.mark.inprocess
async def test_snapshot_stream_lets_writes_go_on():
    """A snapshot of 20,000 keys is built in steps: the loop goes round meanwhile and puts sent
    then are answered; the snapshot holds the state as of its start, and ends with the
    SHA-256 of what it streamed."""
    s = await kvstore.Store.open("memory")
    try:
        for i in range(0, 20_000, 1000):
            await asyncio.gather(*(s.put(pb.PutRequest(key=b"key%06d" % j, value=b"v" * 200))
                                   for j in range(i, i + 1000)))
        rev = s.mvcc.current_rev
        turns = 0

        async def ticker():
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        puts = asyncio.gather(*(s.put(pb.PutRequest(key=b"during%d" % j, value=b"x"))
                                for j in range(50)))
        stream = s.etcd_snapshot()
        chunks = [pb.SnapshotResponse.FromString(await stream.__anext__())]  # built by then
        turns_while_building = turns
        async for raw in stream:
            chunks.append(pb.SnapshotResponse.FromString(raw))
        tick.cancel()
        await puts
        assert turns_while_building >= 4, "the build held the loop"
        blobs = [c.blob for c in chunks]
        data = b"".join(blobs[:-1])
        assert hashlib.sha256(data).digest() == blobs[-1] and chunks[-1].remaining_bytes == 0
        assert all(len(b) == 32 * 1024 for b in blobs[:-2])
        assert [c.remaining_bytes for c in chunks[:-1]] == [
            len(data) - sum(map(len, blobs[:i + 1])) for i in range(len(blobs) - 1)]
        db = etcd_db.read_db(db_bytes(data + blobs[-1])[0])
        assert db.current_rev == rev and len(db.revisions) == 20_000
        assert s.mvcc.current_rev == rev + 50
    finally:
        await s.close()


@pytest.mark.inprocess
async def test_snapshot_started_before_a_compaction_is_built_again_after_it(caplog):
    caplog.set_level("INFO", logger="kvstore.store.etcd_snapshot")
    s = await kvstore.Store.open("memory")
    try:
        for i in range(0, 20_000, 1000):
            await asyncio.gather(*(s.put(pb.PutRequest(key=b"key%06d" % (j % 5000), value=b"v"))
                                   for j in range(i, i + 1000)))
        rev = s.mvcc.current_rev
        stream = s.etcd_snapshot()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # the build has begun, at no compaction
        assert not first.done() and s.mvcc.compact_rev == -1
        await s.compact(pb.CompactionRequest(revision=rev - 10))
        chunks = [pb.SnapshotResponse.FromString(await first)]
        chunks += [pb.SnapshotResponse.FromString(raw) async for raw in stream]
        db = etcd_db.read_db(b"".join(c.blob for c in chunks[:-1]))
        # Built from the compacted state: each key's newest revision, and the last 10.
        assert (db.current_rev, db.compact_rev) == (rev, rev - 10)
        assert [(m, sub, kv.as_tuple()) for m, sub, kv in db.revisions] == [
            (m, sub, kv.as_tuple()) for m, sub, kv in backend_revisions(s.mvcc)]
        assert 5000 <= len(db.revisions) <= 5010
        assert "building again" in caplog.text
    finally:
        await s.close()


def test_users_roles_and_permissions_go_both_ways(tmp_path):
    """etcd's users, roles and permissions (auth enabled) restored into kvstore: the same users
    log in with the same passwords and get the same answers; kvstore's snapshot carries them
    on to a restored etcd."""
    def setup(ctl: Etcdctl) -> None:
        ctl.ok("put", "pub/a", "1")
        ctl.ok("put", "secret", "2")
        for args in (("user", "add", "root:rootpw"), ("role", "add", "root"),
                     ("user", "grant-role", "root", "root"), ("role", "add", "reader"),
                     ("role", "grant-permission", "reader", "read", "--prefix", "pub/"),
                     ("user", "add", "u:upw"), ("user", "grant-role", "u", "reader"),
                     ("auth", "enable")):
            ctl.ok(*args)

    def answers(ctl: Etcdctl) -> list:
        return [ctl.run("--user", "u:upw", "get", "pub/a").stdout,
                ctl.run("--user", "u:upw", "get", "secret").error,
                ctl.run("--user", "u:bad", "get", "pub/a").error,
                ctl.run("get", "pub/a").error,
                ctl.run("--user", "root:rootpw", "role", "get", "reader").stdout,
                ctl.run("--user", "root:rootpw", "user", "list").stdout]

    with EtcdProcess(tmp_path / "etcd") as etcd:
        ctl = Etcdctl(etcd.endpoint)
        setup(ctl)
        want = answers(ctl)
        ctl.ok("--user", "root:rootpw", "snapshot", "save", str(tmp_path / "etcd.db"))
    assert want[0] == "pub/a\n1\n" and "permission denied" in want[1]
    r = kvstore_restore(tmp_path / "etcd.db", tmp_path / "kv")
    assert r.returncode == 0, r.stderr
    with KvstoreProcess(tmp_path / "kv") as kv:
        kv_ctl = Etcdctl(kv.endpoint)
        assert answers(kv_ctl) == want
        kv_ctl.ok("--user", "root:rootpw", "snapshot", "save", str(tmp_path / "kv.db"))
    restored = etcd_restored_from(tmp_path / "kv.db", tmp_path / "etcd-restored")
    with restored:
        assert answers(Etcdctl(restored.endpoint)) == want
