"""Watches on a real kvstore, held to etcd's guarantees by the watch checker
(tests/watch_checker.py): concurrent puts, deletes and multi-key Txns; watches from now and from
the past, of the whole prefix, sub-ranges and single keys, one of them a slow reader; progress
requests and periodic progress notifications; a kill -9 in the middle, every watch resumed from
where it had got to; watches restarted from random revisions; a compaction (and a kill -9 after
it)."""
from __future__ import annotations

import asyncio
import os
import random

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import EtcdProcess, KvstoreProcess
from watch_checker import CheckedStream as Stream, Reference, WriteLog

pytestmark = pytest.mark.timeout(180)

PREFIX, PREFIX_END = b"wk/", b"wk0"
GROUPS = b"abcdef"
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 300)]


def key(rng: random.Random) -> bytes:
    return b"wk/%c/%d" % (rng.choice(GROUPS), rng.randrange(8))


class Writers:
    """Clients making random puts, deletes (of a key or of a group's range) and multi-key Txns
    on wk/, each recorded in a WriteLog with what its acknowledgement said."""

    def __init__(self, endpoint: str, n: int = 3, seed: int = 0):
        self.log = WriteLog()
        self.channel = grpc.aio.insecure_channel(endpoint, options=FAST_RECONNECT)
        self.kv = rpc.KVStub(self.channel)
        self._stop = False
        self._tasks = [asyncio.create_task(self._run(i, random.Random(seed * 100 + i))) for i in range(n)]

    async def _run(self, i: int, rng: random.Random) -> None:
        n = 0
        while not self._stop:
            n += 1
            value = b"%d.%d" % (i, n)
            kind = rng.random()
            if kind < 0.5:
                ops = [("put", key(rng), value)]
            elif kind < 0.62:
                ops = [("delete", key(rng), b"")]
            elif kind < 0.67:
                g = b"wk/%c/" % rng.choice(GROUPS)
                ops = [("delete", g, g[:-1] + b"0")]
            else:  # a Txn of 2-4 ops on distinct keys, a delete among them at times
                keys = list(dict.fromkeys(key(rng) for _ in range(rng.randint(2, 4))))
                ops = [("delete", k, b"") if j == 1 and rng.random() < 0.4 else ("put", k, value + b"." + k)
                       for j, k in enumerate(keys)]
            w = self.log.call(ops)
            try:
                if len(ops) == 1 and ops[0][0] == "put":
                    r = await self.kv.Put(pb.PutRequest(key=ops[0][1], value=ops[0][2]), timeout=5)
                    self.log.ok(w, r.header.revision, [])
                elif len(ops) == 1:
                    r = await self.kv.DeleteRange(pb.DeleteRangeRequest(
                        key=ops[0][1], range_end=ops[0][2], prev_kv=True), timeout=5)
                    self.log.ok(w, r.header.revision, [[kv.key for kv in r.prev_kvs]])
                else:
                    r = await self.kv.Txn(pb.TxnRequest(success=[
                        pb.RequestOp(request_put=pb.PutRequest(key=k, value=v)) if op == "put" else
                        pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=k, prev_kv=True))
                        for op, k, v in ops]), timeout=5)
                    assert r.succeeded
                    self.log.ok(w, r.header.revision, [
                        [kv.key for kv in resp.response_delete_range.prev_kvs]
                        for (op, _, _), resp in zip(ops, r.responses) if op == "delete"])
            except grpc.aio.AioRpcError as e:
                assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                    grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), e
                self.log.unknown(w)
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop = True
        await asyncio.gather(*self._tasks)
        await self.channel.close()


async def current_revision(endpoint: str) -> int:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        return (await rpc.KVStub(ch).Range(pb.RangeRequest(key=b"x"), timeout=10)).header.revision


async def progress_pinger(streams: list[Stream], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for s in streams:
            if s.ended is None:
                try:
                    await s.progress()
                except Exception:  # the stream broke meanwhile (a kill): its reader says so
                    pass
        await asyncio.sleep(0.15)


SUB_WATCHES = [  # (key, range_end, create options)
    (b"wk/a/", b"wk/a0", dict(prev_kv=True)),
    (b"wk/b/3", b"", dict(progress_notify=True)),
    (b"wk/c/", b"wk/e/", dict(progress_notify=True)),
    (b"wk/f/7", b"", {}),
]


async def open_watches(endpoint: str, starts: dict[str, int]) -> dict[str, tuple[Stream, list]]:
    """The watches of the scenario, each from its start revision (0: from now): the reference
    (the whole prefix), sub-ranges sharing one stream, and a slow reader of the whole prefix."""
    ref = Stream(endpoint, "reference")
    ref_w = await ref.watch(PREFIX, PREFIX_END, starts["reference"], prev_kv=True)
    subs = Stream(endpoint, "sub-ranges")
    sub_ws = [await subs.watch(k, e, starts.get(f"sub{i}", starts["sub"]), **kw)
              for i, (k, e, kw) in enumerate(SUB_WATCHES)]
    slow = Stream(endpoint, "slow reader", slow=0.004)
    slow_w = await slow.watch(PREFIX, PREFIX_END, starts["slow"], progress_notify=True)
    return {"reference": (ref, [ref_w]), "sub": (subs, sub_ws), "slow": (slow, [slow_w])}


def server_for(kind: str, data_dir):
    if kind == "etcd":
        if not EtcdProcess.available():
            pytest.skip("etcd is not installed")
        return EtcdProcess(data_dir, extra_args=["--snapshot-count", "300",
                                                 "--experimental-watch-progress-notify-interval", "300ms"])
    return KvstoreProcess(data_dir, extra_args=["--snapshot-count", "300",
                                                "--watch-progress-notify-interval", "300ms"])


async def restart(server, kill: bool = True) -> None:
    loop = asyncio.get_running_loop()
    if kill:
        await loop.run_in_executor(None, server.kill)
    await loop.run_in_executor(None, server.start)


def assert_ok(*checkers) -> None:
    bad = [c.report() for c in checkers if not c.ok]
    assert not bad, "\n".join(bad)


# On etcd, the scenario checks the checker (no false alarm). etcd 3.4.23 (Debian's) answers a
# progress request at once with its current revision, even while a watch of the stream is still
# catching up (etcd issue 15220, fixed in 3.4.25 and 3.5.8): the checker flags that, so against
# etcd the scenario sends progress requests only once the writes have stopped.
# KVSTORE_WATCH_CHECK_ETCD=1 runs it against etcd too (not by default: it checks the checker).
KINDS = ["kvstore", *(["etcd"] if os.environ.get("KVSTORE_WATCH_CHECK_ETCD") else [])]


@pytest.mark.parametrize("kind", KINDS)
async def test_watches_under_writes_kill9_and_compaction(kind, tmp_path):
    rng = random.Random(int(os.environ.get("KVSTORE_WATCH_SEED", "13")))
    pings = kind != "etcd"  # progress requests while writing
    server = server_for(kind, tmp_path / "data").start()
    ep = server.endpoint
    try:
        writers = Writers(ep, n=3)
        await asyncio.sleep(0.3)  # some history for the watches from the past
        first = await open_watches(ep, {"reference": 2, "sub": 0, "slow": 2})
        streams = [s for s, _ in first.values()]
        stop_pings = asyncio.Event()
        pinger = asyncio.create_task(progress_pinger(streams if pings else [], stop_pings))
        await asyncio.sleep(3)

        # kill -9 under load (writes in flight have unknown outcomes, and fail until the
        # server is back); every watch resumed where it had got to
        await restart(server)
        ref1 = first["reference"][1][0]
        starts = {"reference": ref1.last_revision + 1,  # from the last event seen
                  "sub": 0, "slow": first["slow"][1][0].covered + 1}
        for i, w in enumerate(first["sub"][1]):
            starts[f"sub{i}"] = w.covered + 1  # from the last event or progress notification
        second = await open_watches(ep, starts)
        stop_pings.set()
        await pinger
        stop_pings = asyncio.Event()
        pinger = asyncio.create_task(progress_pinger([s for s, _ in second.values()] if pings else [],
                                                     stop_pings))
        await asyncio.sleep(3)
        await writers.stop()
        stop_pings.set()
        await pinger
        upto = await current_revision(ep)
        for s, _ in second.values():
            await s.settle(upto)
        for s, _ in [*first.values(), *second.values()]:
            await s.close()

        # the reference: the whole prefix's watch, before and after the kill, held to what the
        # writers were acknowledged; every other watch, before and after, held to it
        ref2 = second["reference"][1][0]
        assert writers.log.validate(ref1, ref2, upto=upto) == [], (ref1.report(), ref2.report())
        ref = Reference.from_watch(ref1, ref2, upto=upto)
        for name in first:
            for before, after in zip(first[name][1], second[name][1]):
                before.expect(ref, before.covered)
                after.expect(ref, upto)
        assert_ok(*(s.checker for s, _ in [*first.values(), *second.values()]))
        acked = len(writers.log.acknowledged)
        unknown = sum(w.status == "unknown" for w in writers.log.writes)
        progress = sum(w.progress_notifications for s, _ in second.values() for w in s.checker.all)
        # the faults were felt: writes with unknown outcomes, the slow reader caught up from
        # history (responses of several revisions), progress notifications arrived
        batches = sum(w.batches for w in (*first["slow"][1], *second["slow"][1]))
        assert acked > 200 and unknown > 0 and batches > 0 and progress > 5 * pings, (
            acked, unknown, batches, progress)

        # restarted from any revision: exactly the events from there on
        resumed = Stream(ep, "resumed")
        xs = sorted(rng.sample(range(ref.first, upto + 1), 8))
        ws = [await resumed.watch(PREFIX, PREFIX_END, x) if i % 2 else
              await resumed.watch(*SUB_WATCHES[i % 3][:2], x) for i, x in enumerate(xs)]
        await resumed.settle(upto)
        await resumed.close()
        for w in ws:
            w.expect(ref, upto)
        assert_ok(resumed.checker)

        # compaction: a watch from below it is canceled with the compaction revision; from
        # above it, exactly the events; the same after a kill -9
        compact = rng.randrange(ref.first + 10, upto - 10)
        async with grpc.aio.insecure_channel(ep) as ch:
            await rpc.KVStub(ch).Compact(pb.CompactionRequest(revision=compact), timeout=10)
        for crash in (False, True):
            if crash:
                await restart(server)
            s = Stream(ep, f"after compaction{' and a kill -9' if crash else ''}")
            below = [await s.watch(PREFIX, PREFIX_END, x) for x in (ref.first, compact - 1)]
            above = [await s.watch(PREFIX, PREFIX_END, compact + 1),
                     await s.watch(*SUB_WATCHES[0][:2], compact + 1)]
            await s.settle(upto)
            await s.close()
            for w in below:
                assert w.canceled and w.compact_revision == compact and not w.events, w.name
            for w in above:
                w.expect(ref, upto)
            assert_ok(s.checker)
        print(f"\n{kind}: revisions {ref.first}..{upto}, writes acknowledged {acked}, unknown "
              f"{unknown}, slow reader's catch-up responses {batches}, progress notifications {progress}, "
              f"compacted at {compact}")
    finally:
        server.stop()
