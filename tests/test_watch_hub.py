"""Watch fan-out in process: synced/unsynced movement, bounded queues, compaction, filters."""
import asyncio

import pytest

import kvstore
from kvstore.api import kv_pb2, rpc_pb2 as pb
from kvstore.store import watch_stream

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


def create(stream, key, end=b"", **kw):
    stream.handle(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=end, **kw)))


async def drain(stream, timeout=0.2):
    out = []
    while True:
        try:
            resp = await asyncio.wait_for(stream.next(), timeout)
        except TimeoutError:
            return out
        if resp is None:
            return out
        out.append(resp)


async def test_slow_stream_goes_unsynced_and_catches_up_in_order():
    s = await kvstore.Store.open("memory")
    try:
        slow, fast = s.watch_stream(), s.watch_stream()
        create(slow, b"k", b"l")
        create(fast, b"k", b"l")
        fast_events = []
        n = watch_stream.MAX_QUEUED * 3
        for i in range(n):
            await s.put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
            while fast.queue:  # the fast reader keeps up
                fast_events.extend(ev.kv.mod_revision for ev in (await fast.next()).events)
        # the slow stream's queue is full: its watcher was moved to the unsynced group
        assert len(slow.queue) == watch_stream.MAX_QUEUED
        assert s.watch_hub.unsynced_count == 1 and s.watch_hub.synced_count == 1
        assert fast_events == list(range(2, n + 2))
        slow_events = [ev.kv.mod_revision for r in await drain(slow) for ev in r.events]
        assert slow_events == list(range(2, n + 2))
        assert s.watch_hub.unsynced_count == 0 and s.watch_hub.synced_count == 2
    finally:
        await s.close()


async def test_unsynced_watcher_whose_history_is_compacted_is_canceled():
    s = await kvstore.Store.open("memory")
    try:
        for i in range(10):
            await s.put(pb.PutRequest(key=b"a", value=b"%d" % i))
        await s.compact(pb.CompactionRequest(revision=5))
        st = s.watch_stream()
        create(st, b"a", start_revision=4)
        create(st, b"a", start_revision=5)  # the compaction revision itself is still there
        out = await drain(st)
        assert [(r.watch_id, r.created) for r in out[:2]] == [(0, True), (1, True)]
        by_watch = {w: [r for r in out[2:] if r.watch_id == w] for w in (0, 1)}
        [canceled] = by_watch[0]
        assert canceled.compact_revision == 5 and canceled.canceled
        assert canceled.header.revision == 0 and not canceled.events
        assert [e.kv.mod_revision for r in by_watch[1] for e in r.events] == list(range(5, 12))
        assert list(st.watchers) == [1]
    finally:
        await s.close()


async def test_filters_prev_kv_and_ranges():
    s = await kvstore.Store.open("memory")
    try:
        st = s.watch_stream()
        create(st, b"a", b"\x00", filters=[pb.WatchCreateRequest.NOPUT], prev_kv=True)  # all >= a
        create(st, b"b")  # the single key b
        await s.put(pb.PutRequest(key=b"a", value=b"1"))
        await s.put(pb.PutRequest(key=b"b", value=b"2"))
        await s.delete_range(pb.DeleteRangeRequest(key=b"a", range_end=b"\x00"))
        out = [r for r in await drain(st) if not r.created]
        by_watch = {}
        for r in out:
            by_watch.setdefault(r.watch_id, []).extend((e.type, e.kv.key, e.prev_kv.value) for e in r.events)
        assert by_watch[0] == [(DELETE, b"a", b"1"), (DELETE, b"b", b"2")]
        assert by_watch[1] == [(PUT, b"b", b""), (DELETE, b"b", b"")]
    finally:
        await s.close()


async def test_create_errors_and_ids():
    s = await kvstore.Store.open("memory")
    try:
        st = s.watch_stream()
        create(st, b"b", b"a")  # key >= range_end
        create(st, b"x", watch_id=7)
        create(st, b"x", watch_id=7)
        create(st, b"x")  # auto ids start at 0
        out = await drain(st)
        assert [(r.watch_id, r.created, r.canceled, r.cancel_reason) for r in out] == [
            (-1, True, True, "mvcc: watcher range is empty"),
            (7, True, False, ""),
            (-1, True, True, "mvcc: duplicate watch ID provided on the WatchStream"),
            (0, True, False, ""),
        ]
        st.cancel(7)
        st.cancel(99)  # unknown: no answer
        out = await drain(st)
        assert [(r.watch_id, r.canceled) for r in out] == [(7, True)]
    finally:
        await s.close()


async def test_fragmented_watch_splits_large_revisions():
    s = await kvstore.Store.open("memory")
    try:
        for i in range(300):
            await s.put(pb.PutRequest(key=b"f%03d" % i, value=b"x" * 8000))
        st = s.watch_stream()
        create(st, b"f", b"g", fragment=True, prev_kv=True)
        create(st, b"f", b"g", prev_kv=True)
        # one revision whose events (with prev_kv) exceed max request bytes + 512 KiB
        await s.delete_range(pb.DeleteRangeRequest(key=b"f", range_end=b"g"))
        out = [r for r in await drain(st) if not r.created]
        frag = [r for r in out if r.watch_id == 0]
        whole = [r for r in out if r.watch_id == 1]
        assert len(whole) == 1 and len(whole[0].events) == 300
        assert len(frag) > 1 and all(r.fragment for r in frag[:-1]) and not frag[-1].fragment
        assert [e.kv.key for r in frag for e in r.events] == [e.kv.key for e in whole[0].events]
        limit = s.max_request_bytes + 512 * 1024
        assert all(r.ByteSize() < limit or len(r.events) == 1 for r in frag)
    finally:
        await s.close()


async def test_watchers_of_one_key_on_one_stream_each_get_their_own_response():
    """One change, several watchers of its key on one stream (delivered together): each gets
    one response under its own id, with prev_kv or not and its filter applied; past the
    queue's room the rest go unsynced and get the same event once from history."""
    s = await kvstore.Store.open("memory")
    try:
        st = s.watch_stream()
        create(st, b"k", b"", prev_kv=True)  # 0: range end b"" is "k" alone here
        st.handle(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k", prev_kv=True)))  # 1
        st.handle(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k")))  # 2
        st.handle(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=b"k", filters=[pb.WatchCreateRequest.NOPUT])))  # 3
        await drain(st)
        await s.put(pb.PutRequest(key=b"k", value=b"1"))
        await s.put(pb.PutRequest(key=b"k", value=b"2"))
        await s.delete_range(pb.DeleteRangeRequest(key=b"k"))
        got: dict[int, list] = {}
        for r in await drain(st):
            got.setdefault(r.watch_id, []).extend(
                (e.type, e.kv.value, e.prev_kv.value) for e in r.events)
        with_prev = [(PUT, b"1", b""), (PUT, b"2", b"1"), (DELETE, b"", b"2")]
        assert got[1] == with_prev
        assert got[2] == [(PUT, b"1", b""), (PUT, b"2", b""), (DELETE, b"", b"")]
        assert got[3] == [(DELETE, b"", b"")]
        assert got[0] == with_prev[:2] + [(DELETE, b"", b"2")]

        crowd = s.watch_stream()
        n = watch_stream.MAX_QUEUED + 10
        for _ in range(n):
            crowd.handle(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"c")))
        created = await drain(crowd)
        assert len(created) == n
        rev = (await s.put(pb.PutRequest(key=b"c", value=b"x"))).header.revision
        events = [(r.watch_id, e.kv.mod_revision) for r in await drain(crowd) for e in r.events]
        assert sorted(events) == [(i, rev) for i in range(n)]  # each once, the last 10 late
        assert s.watch_hub.unsynced_count == 0
    finally:
        await s.close()
