"""Watch guarantees against a real server process (etcd's, as its API documents them)."""
import asyncio

import grpc

from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess
from watchclient import WatchClient

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


async def put_many(endpoint, keys_values, concurrency=32):
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        it = iter(keys_values)

        async def worker():
            for k, v in it:
                await kv.Put(pb.PutRequest(key=k, value=v))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def test_historical_watch_across_10k_writes_sees_every_event_once_in_order(kvstore_server):
    ep = kvstore_server.endpoint
    await put_many(ep, ((b"h/%05d" % (i % 500), b"%d" % i) for i in range(10_000)))
    w = WatchClient(ep)
    try:
        await w.create(b"h/", b"h0", start_revision=2)
        # writes continue while the watcher catches up from history
        more = asyncio.create_task(put_many(ep, ((b"h/new%d" % i, b"x") for i in range(500)), 4))
        got = await w.events(10_500)
        await more
        revs = [ev.kv.mod_revision for _, ev in got]
        assert revs == list(range(2, 10_502)), "gaps, duplicates or disorder in the event stream"
        assert all(ev.type == PUT for _, ev in got)
        values = sorted(int(ev.kv.value) for _, ev in got[:10_000])
        assert values == list(range(10_000))
    finally:
        await w.close()


async def test_txn_events_arrive_in_one_response_in_txn_order(kvstore_server):
    ep = kvstore_server.endpoint
    w = WatchClient(ep)
    try:
        created = await w.create(b"t/", b"t0", prev_kv=True)
        async with grpc.aio.insecure_channel(ep) as ch:
            kv = rpc.KVStub(ch)
            await kv.Put(pb.PutRequest(key=b"t/a", value=b"1"))
            await kv.Txn(pb.TxnRequest(success=[
                pb.RequestOp(request_put=pb.PutRequest(key=b"t/z", value=b"2")),
                pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"t/a")),
                pb.RequestOp(request_put=pb.PutRequest(key=b"t/m", value=b"3"))]))
        first = await w.read()
        second = await w.read()
        rev = created.header.revision
        assert [(e.type, e.kv.key) for e in first.events] == [(PUT, b"t/a")]
        assert first.header.revision == rev + 1
        assert [(e.type, e.kv.key) for e in second.events] == [(PUT, b"t/z"), (DELETE, b"t/a"),
                                                              (PUT, b"t/m")]
        assert second.header.revision == rev + 2
        assert all(e.kv.mod_revision == rev + 2 for e in second.events)
        assert second.events[1].prev_kv.value == b"1"  # prev_kv of the delete
    finally:
        await w.close()


async def test_watch_resumed_after_restart_continues_without_gaps(tmp_path):
    server = KvstoreProcess(tmp_path / "kv", extra_args=["--snapshot-count", "200"]).start()
    seen: list[int] = []
    try:
        await put_many(server.endpoint, ((b"r/%d" % i, b"a") for i in range(300)), 8)
        w = WatchClient(server.endpoint)
        await w.create(b"r/", b"r0", start_revision=2)
        seen += [ev.kv.mod_revision for _, ev in await w.events(300)]
        await w.close()
        server.kill()  # crash, not a clean stop
        server = KvstoreProcess(tmp_path / "kv", port=server.port,
                                extra_args=["--snapshot-count", "200"]).start()
        w = WatchClient(server.endpoint)
        await w.create(b"r/", b"r0", start_revision=seen[-1] + 1)
        await put_many(server.endpoint, ((b"r/%d" % i, b"b") for i in range(200)), 8)
        seen += [ev.kv.mod_revision for _, ev in await w.events(200)]
        await w.close()
        assert seen == list(range(2, 502))
    finally:
        server.stop()


async def test_progress_request_and_periodic_progress(tmp_path):
    server = KvstoreProcess(tmp_path / "kv", extra_args=[
        "--watch-progress-notify-interval", "500ms"]).start()
    try:
        w = WatchClient(server.endpoint)
        await w.create(b"p/", b"p0", progress_notify=True)
        await put_many(server.endpoint, [(b"p/a", b"1"), (b"other", b"2")], 1)
        ev = await w.read()
        assert [e.kv.key for e in ev.events] == [b"p/a"]
        await w.progress()
        prog = await w.read()
        assert prog.watch_id == -1 and not prog.events and prog.header.revision == 3
        # idle: periodic progress notifications carry this watcher's id and the revision
        tick = await w.read(timeout=5)
        assert tick.watch_id == 0 and not tick.events and tick.header.revision == 3
        await w.close()
    finally:
        server.stop()


async def test_progress_request_waits_for_catch_up(kvstore_server):
    ep = kvstore_server.endpoint
    await put_many(ep, ((b"c/%d" % i, b"v" * 200) for i in range(3000)), 16)
    w = WatchClient(ep)
    try:
        await w.create(b"c/", b"c0", start_revision=2)
        await w.progress()
        events, progress = 0, None
        while progress is None:
            resp = await w.read()
            if resp.watch_id == -1:
                progress = resp
            events += len(resp.events)
        assert events == 3000, "the progress response overtook events it vouches for"
        assert progress.header.revision == 3001
    finally:
        await w.close()


async def test_slow_consumer_does_not_slow_a_fast_one(kvstore_server):
    """One stream never reads (its HTTP/2 window stays small and fills); another reads. Writes
    and the fast stream go on; the slow stream later catches up from history, in order."""
    ep = kvstore_server.endpoint
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]
    slow = WatchClient(ep, channel_options=small_window)
    fast = WatchClient(ep)
    try:
        created = await slow.create(b"s/", b"s0")
        await fast.create(b"s/", b"s0")
        n = 1500
        value = b"x" * 8192  # ~12 MB of events: far beyond any window or queue
        writer = asyncio.create_task(put_many(ep, ((b"s/%d" % i, value) for i in range(n)), 16))
        got_fast = await fast.events(n, timeout=60)
        await asyncio.wait_for(writer, 60)
        first = created.header.revision + 1
        assert [ev.kv.mod_revision for _, ev in got_fast] == list(range(first, first + n))
        got_slow = await slow.events(n, timeout=60)
        assert [ev.kv.mod_revision for _, ev in got_slow] == list(range(first, first + n))
    finally:
        await slow.close()
        await fast.close()


async def test_compacted_start_revision_cancels_the_watch(kvstore_server):
    ep = kvstore_server.endpoint
    await put_many(ep, ((b"k%d" % i, b"v") for i in range(10)), 1)
    async with grpc.aio.insecure_channel(ep) as ch:
        await rpc.KVStub(ch).Compact(pb.CompactionRequest(revision=8))
    w = WatchClient(ep)
    try:
        created = await w.create(b"k", b"l", start_revision=3)
        resp = await w.read()
        assert resp.watch_id == created.watch_id
        assert resp.compact_revision == 8 and resp.canceled and not resp.events
    finally:
        await w.close()


async def test_future_start_revision_waits_for_it(kvstore_server):
    ep = kvstore_server.endpoint
    w = WatchClient(ep)
    try:
        await w.create(b"f", start_revision=5)
        await put_many(ep, [(b"f", b"%d" % i) for i in range(6)], 1)  # revisions 2..7
        got = await w.events(3)
        assert [ev.kv.mod_revision for _, ev in got] == [5, 6, 7]
    finally:
        await w.close()
