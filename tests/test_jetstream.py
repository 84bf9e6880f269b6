"""Members on a shared JetStream log: real nats-server processes (one, or a 3-node cluster with
R3 streams), real kvstore member processes, grpcio clients."""
from __future__ import annotations

import asyncio
import contextlib
import random
import time

import grpc
import pytest

from jetstream_members import Members
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.log import LogUnavailable
from linearizability import cas_outcome
from nats_cluster import NatsCluster

# Real NATS and kvstore processes; independent of the client transport (run once, on h2).
pytestmark = [pytest.mark.jetstream, pytest.mark.timeout(600)]

ALL = dict(key=b"\x00", range_end=b"\x00")


@pytest.fixture(scope="module")
def nats1(tmp_path_factory):
    with NatsCluster(tmp_path_factory.mktemp("nats1"), size=1) as c:
        yield c


@pytest.fixture(scope="module")
def nats3(tmp_path_factory):
    with NatsCluster(tmp_path_factory.mktemp("nats3"), size=3) as c:
        yield c


class Client:
    """Async grpcio stubs for one member."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.channel = grpc.aio.insecure_channel(endpoint)
        self.kv = rpc.KVStub(self.channel)
        self.lease = rpc.LeaseStub(self.channel)
        self.watch = rpc.WatchStub(self.channel)
        self.maintenance = rpc.MaintenanceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()


def stubs(endpoint: str):
    ch = grpc.insecure_channel(endpoint)
    return rpc.KVStub(ch), rpc.LeaseStub(ch), rpc.MaintenanceStub(ch)


def kv_tuple(kv) -> tuple:
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


async def random_writes(c: Client, rng: random.Random, n: int, leases: list[int]) -> int:
    """n random writes of the kinds kube and etcd clients make; returns how many succeeded."""
    ok = 0
    for _ in range(n):
        key = b"conv/%02d" % rng.randrange(24)
        kind = rng.random()
        try:
            if kind < 0.40:
                await c.kv.Put(pb.PutRequest(key=key, value=b"v%d" % rng.randrange(10**6)))
            elif kind < 0.70:  # kube's update: If mod_revision == seen Then Put Else Range
                got = await c.kv.Range(pb.RangeRequest(key=key))
                rev = got.kvs[0].mod_revision if got.kvs else 0
                await c.kv.Txn(pb.TxnRequest(
                    compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=rev)],
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"cas"))],
                    failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]))
            elif kind < 0.82:
                await c.kv.DeleteRange(pb.DeleteRangeRequest(key=key, range_end=key + b"\xff"))
            elif kind < 0.92:
                if leases and rng.random() < 0.7:
                    lease_id = rng.choice(leases)
                else:
                    lease_id = (await c.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=rng.choice([2, 60])))).ID
                    leases.append(lease_id)
                await c.kv.Put(pb.PutRequest(key=key, value=b"leased", lease=lease_id))
            elif leases:
                await c.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=leases.pop(rng.randrange(len(leases)))))
            ok += 1
        except grpc.aio.AioRpcError as e:
            # a lease expired or revoked meanwhile by another client: etcd's answer
            assert e.details() == "etcdserver: requested lease not found", e
    return ok


async def current_revision(c: Client) -> int:
    return (await c.kv.Range(pb.RangeRequest(key=b"x"))).header.revision


async def wait_same_revision(clients: list[Client], timeout: float = 30.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        revs = [await current_revision(c) for c in clients]
        if len(set(revs)) == 1:
            return revs[0]
        assert asyncio.get_running_loop().time() < deadline, revs
        await asyncio.sleep(0.2)


async def state_at(c: Client, rev: int) -> list[tuple]:
    resp = await c.kv.Range(pb.RangeRequest(revision=rev, serializable=True, **ALL))
    return [kv_tuple(kv) for kv in resp.kvs]


async def all_events(c: Client, last_rev: int) -> list[tuple]:
    """Every event from revision 1 through last_rev, as a watch on this member delivers them."""
    call = c.watch.Watch()
    await call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(start_revision=1, prev_kv=True,
                                                                          **ALL)))
    events: list[tuple] = []
    while not events or events[-1][1][3] < last_rev:
        resp = await asyncio.wait_for(call.read(), 20)
        for ev in resp.events:
            events.append((ev.type, kv_tuple(ev.kv),
                           kv_tuple(ev.prev_kv) if ev.HasField("prev_kv") else None))
    call.cancel()
    return events


async def check_converged(endpoints: list[str], sample: int = 150) -> int:
    """Every member: the same revision, the same watch event sequence (with previous values)
    from revision 1, each revision once; and the same Range over all keys at a sample of
    revisions (every one in a short history). The same events from the same empty start make
    the same state at every revision. Returns the revision."""
    clients = [Client(e) for e in endpoints]
    try:
        rev = await wait_same_revision(clients)
        histories = [await all_events(c, rev) for c in clients]
        assert all(h == histories[0] for h in histories)
        assert len({ev[1][3] for ev in histories[0]}) == rev - 1  # each revision once, none skipped
        revisions = list(range(1, rev + 1))
        if len(revisions) > sample:
            revisions = sorted(random.Random(rev).sample(revisions, sample - 1) + [rev])
        for r in revisions:
            states = [await state_at(c, r) for c in clients]
            assert all(s == states[0] for s in states), f"members differ at revision {r}"
        return rev
    finally:
        for c in clients:
            await c.close()


async def test_one_member_on_a_single_nats_server(nats1, tmp_path):
    with Members(tmp_path, nats1, n=1, name="solo") as m:
        kv, lease, maint = stubs(m[0].endpoint)
        for i in range(20):
            kv.Put(pb.PutRequest(key=b"s/%d" % i, value=b"%d" % i))
        st = maint.Status(pb.StatusRequest())
        assert st.leader == st.header.member_id and st.raftTerm > 0
        assert st.raftAppliedIndex == st.raftIndex >= 21
        m[0].stop()
        m[0].start()  # recovers from the stream
        kv, lease, maint = stubs(m[0].endpoint)
        got = kv.Range(pb.RangeRequest(key=b"s/", range_end=b"s0"))
        assert len(got.kvs) == 20 and got.header.revision == 21


async def test_members_converge_under_concurrent_writes_through_every_member(nats3, tmp_path):
    with Members(tmp_path, nats3, n=3, name="conv") as m:
        clients = [Client(e) for e in m.endpoints]
        try:
            leases: list[int] = []
            done = await asyncio.gather(*(random_writes(clients[i % 3], random.Random(i), 60, leases)
                                          for i in range(12)))
            assert sum(done) > 600
            await asyncio.sleep(4)  # leases of 2 s expire: their deletes go through the log too
        finally:
            for c in clients:
                await c.close()
        rev = await check_converged(m.endpoints)
        assert rev > 500


async def test_a_write_on_one_member_is_read_at_once_on_another(nats3, tmp_path):
    """Linearizable reads wait for the read index: a put acknowledged by A is seen by B."""
    with Members(tmp_path, nats3, n=2, name="lin") as m:
        a, b = Client(m[0].endpoint), Client(m[1].endpoint)
        try:
            for i in range(100):
                put = await a.kv.Put(pb.PutRequest(key=b"lin", value=b"%d" % i))
                got = await b.kv.Range(pb.RangeRequest(key=b"lin"))
                assert got.kvs[0].value == b"%d" % i and got.header.revision >= put.header.revision
        finally:
            await a.close()
            await b.close()


async def test_the_read_index_follows_writes_acked_while_its_server_was_paused(nats3):
    """A member's NATS server led the stream and was paused; the other two elected a leader and
    acknowledged writes. Read indexes asked through it, before and just after it resumes, are
    past every acknowledged write. (Stream info's last sequence is not: the resumed server
    answers it with its own state until it learns it was replaced.)"""
    from kvstore.log.jetstream.log import JetStreamLog

    cluster = "ri" + random.randbytes(4).hex()
    first = JetStreamLog(nats3.urls, cluster=cluster)
    await first.open()
    stream = first.names.stream
    old = nats3.stream_leader(stream)
    others = [s.url for s in nats3.servers if s is not old]
    writer = JetStreamLog(others, cluster=cluster)
    reader = JetStreamLog([old.url], cluster=cluster)
    try:
        await writer.open()
        await reader.open()
        before = await first.append(b"before", "before")
        assert await reader.read_index() >= before
        with old.paused():
            acked, deadline = 0, time.monotonic() + 30
            while acked == 0:  # the others elect a leader (NATS: 4 to 9 s)
                assert time.monotonic() < deadline, "no write was acknowledged"
                with contextlib.suppress(LogUnavailable):
                    acked = await writer.append(b"while paused", "paused-0")
            for i in range(1, 5):
                acked = await writer.append(b"while paused", f"paused-{i}")
            reads = [asyncio.ensure_future(reader.read_index()) for _ in range(5)]
            await asyncio.sleep(0.2)  # in the paused server's socket
        for _ in range(10):  # and while it learns that it was replaced
            reads.append(asyncio.ensure_future(reader.read_index()))
            await asyncio.sleep(0.02)
        indexes = await asyncio.gather(*reads)
        assert min(indexes) >= acked, (indexes, acked)
    finally:
        for log in (first, writer, reader):
            await log.close()
        nats3.request(f"$JS.API.STREAM.DELETE.{stream}")


async def test_leases_keepalive_on_any_member_and_expire_everywhere_at_one_revision(nats3, tmp_path):
    with Members(tmp_path, nats3, n=3, name="lease") as m:
        leader = m.leader()
        others = [p for p in m if p is not leader]
        kv, lease, _ = stubs(others[0].endpoint)
        kept = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2)).ID
        dies = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2)).ID
        kv.Put(pb.PutRequest(key=b"l/kept", value=b"v", lease=kept))
        kv.Put(pb.PutRequest(key=b"l/dies", value=b"v", lease=dies))
        kv2, lease2, _ = stubs(others[1].endpoint)

        def pings():
            for _ in range(10):
                yield pb.LeaseKeepAliveRequest(ID=kept)
                time.sleep(0.5)  # on grpcio's thread

        replies = list(lease2.LeaseKeepAlive(pings()))  # through a member that is not the leader
        assert [(r.ID, r.TTL) for r in replies] == [(kept, 2)] * 10
        ttl = lease2.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=kept, keys=True))
        assert 0 <= ttl.TTL <= 2 and ttl.grantedTTL == 2 and list(ttl.keys) == [b"l/kept"]
        # 5 s later the other lease is gone on every member, deleted at one revision
        revs = set()
        for p in m:
            kvp, _, _ = stubs(p.endpoint)
            got = kvp.Range(pb.RangeRequest(key=b"l/", range_end=b"l0"))
            assert [x.key for x in got.kvs] == [b"l/kept"]
            revs.add(got.header.revision)
        assert len(revs) == 1
        await check_converged(m.endpoints)


class Writers:
    """Clients writing unique keys through every member until stopped; what was acknowledged
    (key -> revision) and when each acknowledgement came."""

    def __init__(self, endpoints: list[str], per_member: int = 4):
        self.clients = [Client(e) for e in endpoints]
        self.per_member = per_member
        self.acked: dict[bytes, int] = {}
        self.ack_times: list[float] = []
        self.failures = 0
        self._stop = False
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write(i))
                       for i in range(len(self.clients) * self.per_member)]

    async def _write(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while not self._stop:
            c = self.clients[(i + n) % len(self.clients)]  # spread over the members
            key = b"w/%02d/%06d" % (i, n)
            n += 1
            try:
                resp = await c.kv.Put(pb.PutRequest(key=key, value=key), timeout=10)
            except grpc.aio.AioRpcError:
                self.failures += 1  # unknown outcome: not counted as acknowledged
                await asyncio.sleep(0.05)
                continue
            self.acked[key] = resp.header.revision
            self.ack_times.append(loop.time())

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)
        for c in self.clients:
            await c.close()

    def longest_stall(self, since: float) -> float:
        times = [t for t in self.ack_times if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


async def verify_acknowledged(endpoints: list[str], acked: dict[bytes, int]) -> None:
    """Every acknowledged write is on every member, at the revision it was acknowledged with."""
    for e in endpoints:
        c = Client(e)
        try:
            got = await c.kv.Range(pb.RangeRequest(key=b"w/", range_end=b"w0"))
            have = {kv.key: kv.mod_revision for kv in got.kvs}
            lost = {k: r for k, r in acked.items() if have.get(k) != r}
            assert not lost, f"{len(lost)} acknowledged writes lost or moved on {e}: {list(lost.items())[:5]}"
        finally:
            await c.close()


async def test_faults_under_write_load_lose_nothing_acknowledged(nats3, tmp_path):
    """SIGKILL of the stream's leader, of a JetStream follower and of a kvstore member, each
    restarted, while clients write through every member."""
    loop = asyncio.get_running_loop()
    with Members(tmp_path, nats3, n=3, name="faults") as m:
        writers = Writers(m.endpoints)
        writers.start()
        stalls = {}
        try:
            await asyncio.sleep(2)
            for fault in ("stream leader", "stream follower", "kvstore member"):
                if fault == "stream leader":
                    victim = nats3.stream_leader(m.stream)
                elif fault == "stream follower":
                    leader = nats3.stream_leader(m.stream)
                    victim = next(s for s in nats3.servers if s is not leader)
                else:
                    victim = m[1]
                at = loop.time()
                await loop.run_in_executor(None, victim.kill)
                await asyncio.sleep(3)
                await loop.run_in_executor(None, victim.start)
                if fault != "kvstore member":
                    await loop.run_in_executor(None, nats3.wait_ready)
                await asyncio.sleep(3)
                stalls[fault] = writers.longest_stall(at)
                assert stalls[fault] < 15, (fault, stalls[fault])
        finally:
            await writers.stop()
        print(f"\nlongest stall of acknowledgements: {stalls}; acknowledged {len(writers.acked)}, "
              f"failed {writers.failures}")
        assert len(writers.acked) > 200
        await verify_acknowledged(m.endpoints, writers.acked)
        await check_converged(m.endpoints)
        for p in m:
            assert "apply stopped" not in p.log()


async def test_members_without_the_log_answer_as_etcd_without_a_leader_and_recover(tmp_path):
    """All NATS servers down: writes fail with etcd's timeout within their deadline, calls that
    require a leader get "no leader", serializable reads still answer; when NATS returns, the
    members recover by themselves and nothing acknowledged is lost."""

    with NatsCluster(tmp_path / "nats", size=3) as nats, Members(tmp_path, nats, n=2, name="out") as m:
        kv, _, _ = stubs(m[0].endpoint)
        for i in range(10):
            kv.Put(pb.PutRequest(key=b"o/%d" % i, value=b"before"))
        nats.kill()
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            kv.Put(pb.PutRequest(key=b"o/x", value=b"during"), timeout=30)
        took = time.monotonic() - t0
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE,
                                                       "etcdserver: request timed out")
        assert took < 9, took  # the request deadline (7 s) and a check interval
        with pytest.raises(grpc.RpcError) as e:
            kv.Range(pb.RangeRequest(key=b"o/1"), metadata=(("hasleader", "true"),), timeout=5)
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        got = kv.Range(pb.RangeRequest(key=b"o/", range_end=b"o0", serializable=True), timeout=5)
        assert len(got.kvs) == 10
        with pytest.raises(grpc.RpcError) as e:  # a linearizable read needs the log's read index
            kv.Range(pb.RangeRequest(key=b"o/1"), timeout=30)
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE,
                                                       "etcdserver: request timed out")
        for s in nats.servers:
            s.start(wait_jetstream=False)
        nats.wait_ready()
        deadline = time.monotonic() + 60
        while True:  # back by themselves: no member was restarted
            try:
                for p in m:
                    kvp, _, _ = stubs(p.endpoint)
                    kvp.Put(pb.PutRequest(key=b"o/after", value=p.endpoint.encode()), timeout=10)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "members did not recover"
                await asyncio.sleep(1)
        for p in m:
            kvp, _, _ = stubs(p.endpoint)
            got = kvp.Range(pb.RangeRequest(key=b"o/", range_end=b"o0"))
            assert [kv.value for kv in got.kvs if kv.value == b"before"] == [b"before"] * 10
        await check_converged(m.endpoints)
        nats.kill()  # a member stops by itself, in time, with its log unreachable
        t0 = time.monotonic()
        m[0].proc.terminate()
        assert m[0].proc.wait(15) == 0, m[0].log()
        print(f"stopped without NATS in {time.monotonic() - t0:.2f}s")


async def test_new_and_wiped_members_start_from_the_shared_snapshot(nats3, tmp_path):
    """The leader shares its snapshots in the object store and trims the stream below the one
    shared before: a new member, a wiped one, and one that was away start from the shared
    snapshot plus the stream's tail."""
    import shutil

    from procs import KvstoreProcess

    with Members(tmp_path, nats3, n=3, name="boot", extra_args=["--snapshot-count", "40"]) as m:
        away = m[2]
        away.stop()
        kv, lease, _ = stubs(m[0].endpoint)
        lease_id = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=600)).ID
        for i in range(300):
            kv.Put(pb.PutRequest(key=b"b/%03d" % (i % 120), value=b"%d" % i,
                                 lease=lease_id if i % 7 == 0 else 0))
        deadline = time.monotonic() + 30
        while nats3.stream_info(m.stream)["state"]["first_seq"] <= 40:
            assert time.monotonic() < deadline, "the stream was never trimmed"
            await asyncio.sleep(0.5)
        first = nats3.stream_info(m.stream)["state"]["first_seq"]
        newcomer = KvstoreProcess(tmp_path / "boot-new", backend="jetstream",
                                  extra_args=["--name", "new", "--nats-url", nats3.url,
                                              "--cluster-name", "boot"])
        newcomer.start(timeout=60)
        try:
            away.start(timeout=60)  # its own snapshot is older than the stream's start
            m[1].stop()
            shutil.rmtree(m[1].data_dir)  # wiped
            m[1].start(timeout=60)
            for p in (newcomer, away, m[1]):
                assert "installed the shared snapshot" in p.log(), p.log()
            await check_converged([*m.endpoints, newcomer.endpoint])
            _, lease_new, _ = stubs(newcomer.endpoint)
            ttl = lease_new.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id, keys=True))
            assert ttl.grantedTTL == 600 and len(ttl.keys) > 0
        finally:
            newcomer.stop()
        assert first > 40


async def record_history(clients: list[Client], history, n_keys: int, stop: asyncio.Event,
                         client_id: int, rng: random.Random) -> None:
    """One client's concurrent ops on a few keys through random members, recorded."""
    while not stop.is_set():
        t = None
        c = rng.choice(clients)
        key = b"lz/%d" % rng.randrange(n_keys)
        kind = rng.choice(["put", "get", "get", "stream", "cas", "delete"])
        try:
            if kind == "put":
                value = b"%d-%d" % (client_id, rng.randrange(10**9))
                t = history.call(client_id, "put", key, value=value)
                resp = await c.kv.Put(pb.PutRequest(key=key, value=value), timeout=10)
                history.ok(t, revision=resp.header.revision)
            elif kind in ("get", "stream"):  # Range, or the RangeStream kube-apiserver 1.37 LISTs with
                t = history.call(client_id, "get", key)
                if kind == "get":
                    resp = await c.kv.Range(pb.RangeRequest(key=key), timeout=10)
                else:
                    [chunk] = [m async for m in c.kv.RangeStream(pb.RangeRequest(key=key), timeout=10)]
                    resp = chunk.range_response
                kv = resp.kvs[0] if resp.kvs else None
                history.ok(t, revision=resp.header.revision, value=kv.value if kv else None,
                           mod_revision=kv.mod_revision if kv else 0)
            elif kind == "cas":
                seen = await c.kv.Range(pb.RangeRequest(key=key), timeout=10)
                expected = seen.kvs[0].mod_revision if seen.kvs else 0
                value = b"%d-%d" % (client_id, rng.randrange(10**9))
                t = history.call(client_id, "cas", key, value=value, expected=expected)
                resp = await c.kv.Txn(pb.TxnRequest(
                    compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=expected)],
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
                    failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]), timeout=10)
                history.ok(t, **cas_outcome(resp))
            else:
                t = history.call(client_id, "delete", key)
                resp = await c.kv.DeleteRange(pb.DeleteRangeRequest(key=key), timeout=10)
                history.ok(t, revision=resp.header.revision, deleted=resp.deleted)
        except grpc.aio.AioRpcError:
            if t is not None:  # (a cas whose first read failed was never called)
                history.unknown(t)
            await asyncio.sleep(0.05)


async def test_histories_across_members_with_kill_faults_are_linearizable(nats3, tmp_path):
    """Clients talking to different members record a concurrent history of puts, reads,
    compare-and-swaps and deletes while the stream's leader and a member are killed and
    restarted; the history must be linearizable (tests/linearizability.py)."""
    from linearizability import History, check

    loop = asyncio.get_running_loop()
    with Members(tmp_path, nats3, n=3, name="lz") as m:
        history = History()
        clients = [Client(e) for e in m.endpoints]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(record_history(clients, history, 6, stop, i, random.Random(i)))
                 for i in range(9)]
        try:
            await asyncio.sleep(3)
            leader = nats3.stream_leader(m.stream)
            await loop.run_in_executor(None, leader.kill)
            await asyncio.sleep(2)
            await loop.run_in_executor(None, leader.start)
            await asyncio.sleep(3)
            await loop.run_in_executor(None, m[2].kill)
            await asyncio.sleep(2)
            await loop.run_in_executor(None, m[2].start)
            await asyncio.sleep(3)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for c in clients:
                await c.close()
        ops = list(history)
        acked = [op for op in ops if op.status == "ok"]
        assert len(acked) > 300 and any(op.status != "ok" for op in ops)  # faults were felt
        result = await loop.run_in_executor(None, lambda: check(history, timeout=120))
        assert result.ok, result.report()


def test_etcdctl_with_every_member_keeps_working_when_one_dies(nats3, tmp_path):
    from etcdctl import Etcdctl

    with Members(tmp_path, nats3, n=3, name="ctl") as m:
        ctl = Etcdctl(",".join(m.endpoints))
        ctl.ok("put", "ctl/a", "1")
        members = ctl.json("member", "list")["members"]
        assert sorted(x["name"] for x in members) == ["m0", "m1", "m2"]
        assert all(x["clientURLs"] and x["peerURLs"] for x in members)
        statuses = ctl.json("endpoint", "status")
        leaders = {s["Status"]["leader"] for s in statuses}
        terms = {s["Status"]["raftTerm"] for s in statuses}
        assert len(leaders) == 1 and len(terms) == 1 and 0 not in leaders
        assert leaders <= {x["ID"] for x in members}
        m[0].kill()
        for i in range(10):  # the client moves on to the members still up
            ctl.ok("put", f"ctl/k{i}", str(i))
            assert ctl.ok("get", f"ctl/k{i}", "--print-value-only").stdout.strip() == str(i)
        assert ctl.ok("get", "ctl/a", "--print-value-only").stdout.strip() == "1"
        ctl.ok("txn", input="value(\"ctl/a\") = \"1\"\n\nput ctl/a 2\n\nput ctl/a 3\n\n")
        assert Etcdctl(m[1].endpoint).ok("get", "ctl/a", "--print-value-only").stdout.strip() == "2"
        # the dead member leaves the member list once its record expires
        deadline = time.monotonic() + 20
        while len(Etcdctl(m[1].endpoint).json("member", "list")["members"]) != 2:
            assert time.monotonic() < deadline
            time.sleep(1)


def test_move_leader_hands_the_leadership_to_the_member_named(nats3, tmp_path):
    """etcdctl move-leader: the leader hands its leadership to the member named, which then
    leads (every member agrees); writes and leases go on. A follower answers `not leader`,
    an id that is no member `bad leader transferee`, as etcd's members do."""
    from etcdctl import Etcdctl

    with Members(tmp_path, nats3, n=3, name="mv") as m:
        ctl = Etcdctl(",".join(m.endpoints))
        ctl.ok("put", "mv/a", "1")
        before = m.leader()
        ids = {p.endpoint: Etcdctl(p.endpoint).json("endpoint", "status")[0]["Status"]["header"]["member_id"]
               for p in m}
        target = next(p for p in m if p is not before)
        out = ctl.ok("move-leader", f"{ids[target.endpoint]:x}").stdout
        assert out == f"Leadership transferred from {ids[before.endpoint]:x} to {ids[target.endpoint]:x}\n"
        assert m.leader() is target
        terms = {s["Status"]["raftTerm"] for s in ctl.json("endpoint", "status")}
        assert len(terms) == 1
        with grpc.insecure_channel(before.endpoint) as ch:  # the former leader now follows
            with pytest.raises(grpc.RpcError) as e:
                rpc.MaintenanceStub(ch).MoveLeader(pb.MoveLeaderRequest(targetID=ids[before.endpoint]),
                                                   timeout=5)
            not_leader = (grpc.StatusCode.UNAVAILABLE, "etcdserver: not leader")
            assert (e.value.code(), e.value.details()) == not_leader
        assert Etcdctl(target.endpoint).fail("move-leader", "1234").error == (
            "Error: etcdserver: bad leader transferee")
        lease = int(ctl.ok("lease", "grant", "2").stdout.split()[1], 16)
        ctl.ok("put", "mv/leased", "x", f"--lease={lease:x}")
        ctl.ok("put", "mv/a", "2")
        deadline = time.monotonic() + 15  # the new leader expires leases
        while ctl.json("get", "mv/leased").get("count"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert Etcdctl(before.endpoint).ok("get", "mv/a", "--print-value-only").stdout.strip() == "2"


async def test_a_watch_survives_a_snapshot_installed_while_its_member_serves(nats3, tmp_path):
    """A member paused (SIGSTOP) while the stream is trimmed past it installs the shared
    snapshot when it resumes; a watch open on it meanwhile gets every event, once, in order."""
    from watchclient import WatchClient

    with Members(tmp_path, nats3, n=2, name="inst", extra_args=["--snapshot-count", "30"]) as m:
        paused = m[1]
        w = WatchClient(paused.endpoint)
        try:
            kv, _, _ = stubs(m[0].endpoint)
            start = kv.Put(pb.PutRequest(key=b"i/first", value=b"0")).header.revision
            await w.create(b"i/", b"i0", start_revision=start)
            assert len(await w.events(1)) == 1
            with paused.paused():
                paused_at = time.monotonic()
                # more than the sockets buffer: NATS drops the paused member as a slow consumer
                for i in range(400):
                    kv.Put(pb.PutRequest(key=b"i/%03d" % (i % 50), value=b"%d" % i + b"." * 20_000),
                           timeout=30)
                deadline = time.monotonic() + 30
                while nats3.stream_info(m.stream)["state"]["first_seq"] < 100:
                    assert time.monotonic() < deadline, "the stream was never trimmed"
                    await asyncio.sleep(0.5)
                await asyncio.sleep(max(0.0, paused_at + 15 - time.monotonic()))
            events = await w.events(400, timeout=90)
            revisions = [ev.kv.mod_revision for _, ev in events]
            assert revisions == list(range(start + 1, start + 401))
            assert [ev.kv.value[:3].rstrip(b".") for _, ev in events] == [b"%d" % i for i in range(400)]
            # (the watchers catch up from the installed state while its file is still being
            # saved: the line that says it was comes once the save is done)
            deadline = time.monotonic() + 30
            while "installed the shared snapshot" not in paused.log():
                assert time.monotonic() < deadline, "the member never installed the snapshot"
                await asyncio.sleep(0.2)
            await check_converged(m.endpoints)
        finally:
            await w.close()


def test_auth_state_reaches_every_member_and_a_new_one(nats3, tmp_path):
    """Users, roles and permissions are replicated state: set up through one member, enforced
    by the others; a simple token issued by one member is good on every member (its
    Authenticate entry went through the log); a member that joins later, from the shared
    snapshot, enforces the same."""
    from etcdctl import Etcdctl
    from procs import KvstoreProcess

    cost = ["--bcrypt-cost", "4"]
    with Members(tmp_path, nats3, n=3, name="auth", extra_args=["--snapshot-count", "20", *cost]) as m:
        ctl = Etcdctl(m[0].endpoint)
        for args in (("user", "add", "root:rootpw"), ("role", "add", "root"),
                     ("user", "grant-role", "root", "root"), ("role", "add", "r"),
                     ("role", "grant-permission", "r", "read", "--prefix", "pub/"),
                     ("user", "add", "u:upw"), ("user", "grant-role", "u", "r"), ("auth", "enable")):
            ctl.ok(*args)
        for i in range(60):  # past --snapshot-count: a shared snapshot holds the auth state
            ctl.ok("--user", "root:rootpw", "put", f"pub/{i % 5}", str(i))
        token = rpc.AuthStub(grpc.insecure_channel(m[1].endpoint)).Authenticate(
            pb.AuthenticateRequest(name="u", password="upw"), timeout=10).token
        for p in m:
            kv = rpc.KVStub(grpc.insecure_channel(p.endpoint))
            deadline = time.monotonic() + 10
            while True:  # the member applies the Authenticate entry soon after the leader
                try:
                    resp = kv.Range(pb.RangeRequest(key=b"pub/0", serializable=True),
                                    metadata=[("token", token)], timeout=5)
                    break
                except grpc.RpcError as e:
                    assert e.details() == "etcdserver: invalid auth token" and time.monotonic() < deadline
                    time.sleep(0.1)
            assert resp.kvs[0].value == b"55"
            with pytest.raises(grpc.RpcError) as denied:
                kv.Range(pb.RangeRequest(key=b"other"), metadata=[("token", token)], timeout=5)
            assert denied.value.details() == "etcdserver: permission denied"
        newcomer = KvstoreProcess(tmp_path / "auth-new", backend="jetstream",
                                  extra_args=["--name", "new", "--nats-url", nats3.url,
                                              "--cluster-name", "auth", *cost])
        newcomer.start(timeout=60)
        try:
            assert "installed the shared snapshot" in newcomer.log(), newcomer.log()
            new = Etcdctl(newcomer.endpoint)
            assert "user name is empty" in new.fail("get", "pub/0").error
            assert new.ok("--user", "u:upw", "get", "pub/0", "--print-value-only").stdout == "55\n"
            assert "permission denied" in new.fail("--user", "u:upw", "put", "pub/0", "x").error
            assert new.ok("--user", "root:rootpw", "user", "list").stdout == "root\nu\n"
        finally:
            newcomer.stop()
