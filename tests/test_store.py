"""The embedded Store: write path through a real log, group commit, snapshots and recovery."""
import asyncio

import pytest

import kvstore
from kvstore import errors
from kvstore.api import rpc_pb2 as pb

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess


async def open_lmdb(path, **opts):
    return await kvstore.Store.open("lmdb", path, **opts)


def values(store, key=b"", end=b"\x00"):
    return {kv.key: kv.value for kv in store.range(pb.RangeRequest(key=key or b"\x00", range_end=end)).kvs}


async def test_embedded_memory_store_put_get():
    s = await kvstore.Store.open("memory")
    try:
        r = await s.put(pb.PutRequest(key=b"a", value=b"1"))
        assert r.header.revision == 2 and r.header.member_id != 0
        got = s.range(pb.RangeRequest(key=b"a"))
        assert [(kv.key, kv.value) for kv in got.kvs] == [(b"a", b"1")]
    finally:
        await s.close()


async def test_concurrent_puts_share_log_appends(tmp_path):
    s = await open_lmdb(tmp_path / "d")
    try:
        p = s._proposer
        entries, batches = p.entries, p.batches  # the start's LEADER entry is in the log
        await asyncio.gather(*(s.put(pb.PutRequest(key=b"k%d" % i, value=b"v")) for i in range(200)))
        assert p.entries - entries == 200
        assert p.batches - batches < 50, (f"{p.batches - batches} fsyncs for 200 concurrent puts: "
                                          "no group commit")
        assert s.mvcc.current_rev == 201
    finally:
        await s.close()


async def test_recovery_replays_log(tmp_path):
    s = await open_lmdb(tmp_path / "d")
    for i in range(50):
        await s.put(pb.PutRequest(key=b"k%02d" % (i % 7), value=b"%d" % i))
    await s.delete_range(pb.DeleteRangeRequest(key=b"k03"))
    await s.compact(pb.CompactionRequest(revision=20))
    before = values(s)
    rev, ident = s.mvcc.current_rev, s.identity
    await s.close()

    s2 = await open_lmdb(tmp_path / "d")
    try:
        assert values(s2) == before
        assert s2.mvcc.current_rev == rev and s2.mvcc.compact_rev == 20
        assert (s2.identity.cluster_id, s2.identity.member_id) == (ident.cluster_id, ident.member_id)
        assert s2.identity.starts == ident.starts + 1
        assert s2.term == s.term + 1  # each start is a term of its own, as an election won
        with pytest.raises(errors.Compacted):
            s2.range(pb.RangeRequest(key=b"k00", revision=19))
    finally:
        await s2.close()


async def test_a_barrier_record_moves_the_applied_index_and_nothing_else(tmp_path):
    """A log's barrier (an empty record: JetStream's read index) is followed like any record
    and applied as nothing, live and when the log is replayed at start. Barriers count toward
    the next snapshot, as etcd's empty entries do: a log of reads alone is trimmed too."""
    from kvstore.log import BARRIER

    s = await open_lmdb(tmp_path / "d", snapshot_count=20)
    try:
        await s.put(pb.PutRequest(key=b"a", value=b"1"))
        rev = s.mvcc.current_rev
        index = await s.log.append(BARRIER, "barrier-1")
        await s._apply_loop.wait_applied(index)
        assert s._apply_loop.applied_index == index and s.mvcc.current_rev == rev
        r = await s.put(pb.PutRequest(key=b"b", value=b"2"))
        assert r.header.revision == rev + 1
        assert s.snapshot_index == 0
        for i in range(30):
            index = await s.log.append(BARRIER, f"barrier-{i}")
        await s._apply_loop.wait_applied(index)
        before = values(s)
    finally:
        await s.close()  # waits for a snapshot being written
    assert s.snapshot_index >= 20
    s2 = await open_lmdb(tmp_path / "d", snapshot_count=20)
    try:
        assert values(s2) == before == {b"a": b"1", b"b": b"2"}
        assert s2.mvcc.current_rev == rev + 1
        assert s2.log.first_index() == s.snapshot_index + 1  # the barriers were trimmed
    finally:
        await s2.close()


async def test_snapshot_then_tail_replay(tmp_path):
    s = await open_lmdb(tmp_path / "d", snapshot_count=25)
    for i in range(60):
        await s.put(pb.PutRequest(key=b"k%02d" % (i % 10), value=b"%d" % i))
    history = {rev: values_at(s, rev) for rev in range(2, s.mvcc.current_rev + 1)}
    await s.close()  # waits for a snapshot still being written
    assert s.snapshot_index >= 50  # snapshots were taken
    assert s.snapshot_index < s.applied_index  # and there is a tail after the last one

    s2 = await open_lmdb(tmp_path / "d", snapshot_count=25)
    try:
        assert s2.snapshot_index == s.snapshot_index
        for rev, vals in history.items():
            assert values_at(s2, rev) == vals
        first_logged = s2.log.first_index()
        assert first_logged == s.snapshot_index + 1  # the snapshot let the log drop its prefix
    finally:
        await s2.close()


def values_at(store, rev):
    return {kv.key: kv.value for kv in
            store.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev)).kvs}


async def test_request_too_large_and_too_many_ops():
    s = await kvstore.Store.open("memory", max_request_bytes=1024, max_txn_ops=4)
    try:
        with pytest.raises(errors.RequestTooLarge):
            await s.put(pb.PutRequest(key=b"a", value=b"x" * 2000))
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"k%d" % i)) for i in range(5)]
        with pytest.raises(errors.TooManyOps):
            await s.txn(pb.TxnRequest(success=ops))
        assert s.mvcc.current_rev == 1  # nothing was written
    finally:
        await s.close()


async def test_apply_error_is_answered_and_logged_deterministically(tmp_path):
    s = await open_lmdb(tmp_path / "d")
    with pytest.raises(errors.KeyNotFound):
        await s.put(pb.PutRequest(key=b"nokey", ignore_value=True))
    await s.put(pb.PutRequest(key=b"a", value=b"1"))
    await s.close()
    s2 = await open_lmdb(tmp_path / "d")
    try:
        assert values(s2) == {b"a": b"1"} and s2.mvcc.current_rev == 2
    finally:
        await s2.close()


async def test_data_dir_is_locked(tmp_path):
    from kvstore.log import DataDirInUse

    s = await open_lmdb(tmp_path / "d")
    try:
        with pytest.raises(DataDirInUse):
            await open_lmdb(tmp_path / "d")
    finally:
        await s.close()


async def test_writes_go_on_while_a_snapshot_is_written(tmp_path, monkeypatch):
    """The proposer does not wait for the snapshot file: puts commit (durably) meanwhile, and
    the covered entries are dropped in slices once the file is in place."""
    import threading

    from kvstore.log import lmdb as lmdb_log, storage

    release = threading.Event()
    real_finish = storage.DirStorage._finish_snapshot_file

    def held_finish(self, *args):
        assert release.wait(10)
        real_finish(self, *args)

    monkeypatch.setattr(storage.DirStorage, "_finish_snapshot_file", held_finish)
    monkeypatch.setattr(lmdb_log, "DROP_SLICE", 7)
    s = await open_lmdb(tmp_path / "d", snapshot_count=20)
    try:
        for i in range(60):  # a snapshot is due after 20 entries; its file is held back
            await s.put(pb.PutRequest(key=b"k%02d" % i, value=b"v"))
        assert s.snapshot_index == 0 and s.applied_index >= 60
        release.set()
        # The snapshot is in place, then the log drops what it covers (several slices of 7).
        for _ in range(1000):
            if s.snapshot_index and s.log.first_index() == s.snapshot_index + 1:
                break
            await asyncio.sleep(0.01)
        assert 20 <= s.snapshot_index < 60
        assert s.log.first_index() == s.snapshot_index + 1
    finally:
        release.set()
        await s.close()
    s2 = await open_lmdb(tmp_path / "d", snapshot_count=20)
    try:
        assert len(s2.range(pb.RangeRequest(key=b"k", range_end=b"l")).kvs) == 60
    finally:
        await s2.close()


async def test_explicit_snapshot_saves_now_and_reports_failure(tmp_path, monkeypatch):
    from kvstore.log import storage

    s = await open_lmdb(tmp_path / "d")
    try:
        for i in range(5):
            await s.put(pb.PutRequest(key=b"e%d" % i, value=b"v"))
        await s.snapshot()
        assert s.snapshot_index == s.applied_index
        await s.put(pb.PutRequest(key=b"e9", value=b"v"))

        def broken(self, *args):
            raise OSError("disk gone")

        monkeypatch.setattr(storage.DirStorage, "_finish_snapshot_file", broken)
        with pytest.raises(OSError, match="disk gone"):  # said, not swallowed (nor retried)
            await s.snapshot()
        assert s.snapshot_index < s.applied_index
    finally:
        await s.close()


@pytest.mark.parametrize("limit", [100, 1024, 1536 * 1024, 10 * 1024 * 1024])
def test_largest_request_is_the_exact_boundary_of_etcds_proposal_size(limit):
    from kvstore.store.store import etcd_proposal_size, largest_request

    n = largest_request(limit)
    assert etcd_proposal_size(n) <= limit < etcd_proposal_size(n + 1)


async def test_put_exactly_at_the_size_limit_passes_and_one_byte_more_does_not():
    from kvstore.store.store import largest_request

    s = await kvstore.Store.open("memory", max_request_bytes=1024)
    try:
        base = len(pb.PutRequest(key=b"a", value=b"x" * 900).SerializeToString())
        fits = b"x" * (900 + largest_request(1024) - base)
        await s.put(pb.PutRequest(key=b"a", value=fits))
        with pytest.raises(errors.RequestTooLarge):
            await s.put(pb.PutRequest(key=b"a", value=fits + b"x"))
    finally:
        await s.close()


async def test_a_snapshot_whose_parts_fail_leaves_no_file_and_the_previous_one(tmp_path):
    """Member storage writes a snapshot as its parts are made: parts that raise half-way (a
    capture overtaken by a compaction) leave neither a file nor a temporary one, and the
    snapshot before stays the one loaded."""
    from kvstore.log.storage import DirStorage

    storage = DirStorage(tmp_path / "d")
    try:
        async def parts(*chunks, fail=False):
            for c in chunks:
                yield c
                await asyncio.sleep(0)
            if fail:
                raise RuntimeError("overtaken")

        await storage.save_snapshot(2, parts(b"state", b"-at-2"))
        with pytest.raises(RuntimeError, match="overtaken"):
            await storage.save_snapshot(3, parts(b"state-at", fail=True))
        assert storage.load_snapshot() == (2, b"state-at-2")
        assert sorted(p.name for p in (tmp_path / "d").iterdir() if "snapshot" in p.name) == \
               ["snapshot-0000000000000002.snap"]
    finally:
        await storage.close()


async def test_lmdb_log_trims_through_an_index_but_keeps_the_newest_record(tmp_path):
    from kvstore.log.lmdb import LmdbLog

    wal = LmdbLog(tmp_path / "d")
    try:
        for i in range(1, 4):
            assert await wal.append(b"r%d" % i) == i
        await wal.trim(2)
        assert wal.first_index() == 3 and wal.read(1, 10) == [(3, b"r3")]
        await wal.trim(3)  # the newest stays: the next index follows it after a restart
        assert wal.read(1, 10) == [(3, b"r3")]
    finally:
        await wal.close()
    wal = LmdbLog(tmp_path / "d")
    try:
        assert await wal.append(b"r4") == 4
    finally:
        await wal.close()


async def test_compaction_runs_in_slices_beside_other_requests(monkeypatch):
    """A compaction answers once applied (reads below it fail at once) and compacts the keys
    a slice per turn of the loop: a put sent after it is applied while keys are still being
    compacted. With ``physical`` it answers only once every key is compacted."""
    from kvstore.store import compactor

    monkeypatch.setattr(compactor, "SLICE_KEYS", 1)
    s = await kvstore.Store.open("memory")
    applied_while_compacting = []
    s.mvcc.observers.append(lambda rev, changes, prevs: applied_while_compacting.append(
        (changes[0].key, s.mvcc.compacting)))
    try:
        for i in range(200):
            await s.put(pb.PutRequest(key=b"c%03d" % i, value=b"a"))
            await s.put(pb.PutRequest(key=b"c%03d" % i, value=b"b"))
        rev = s.mvcc.current_rev
        await s.compact(pb.CompactionRequest(revision=rev))
        assert s.mvcc.compacting  # answered before the 200 keys (200 slices) are done
        with pytest.raises(errors.Compacted):
            s.range(pb.RangeRequest(key=b"c000", revision=rev - 1))
        await s.put(pb.PutRequest(key=b"c999", value=b"meanwhile"))
        assert applied_while_compacting[-1] == (b"c999", True)
        await s.put(pb.PutRequest(key=b"c000", value=b"c"))
        await s.compact(pb.CompactionRequest(revision=s.mvcc.current_rev, physical=True))
        assert not s.mvcc.compacting
        assert all(k.revision_count() == 1 for k in s.mvcc.index.all())
        assert values(s, b"c", b"d")[b"c000"] == b"c" and len(values(s, b"c", b"d")) == 201
    finally:
        await s.close()


async def test_a_snapshot_waits_for_the_keys_of_a_compaction(tmp_path, monkeypatch):
    from kvstore.store import compactor

    monkeypatch.setattr(compactor, "SLICE_KEYS", 1)
    s = await open_lmdb(tmp_path / "d")
    try:
        for i in range(100):
            await s.put(pb.PutRequest(key=b"c%03d" % i, value=b"a"))
            await s.put(pb.PutRequest(key=b"c%03d" % i, value=b"b"))
        await s.compact(pb.CompactionRequest(revision=s.mvcc.current_rev))
        assert s.mvcc.compacting
        await s.snapshot()  # waits for the keys, then captures
        assert not s.mvcc.compacting and s.snapshot_index == s.applied_index
    finally:
        await s.close()
    s2 = await open_lmdb(tmp_path / "d")
    try:
        assert values(s2, b"c", b"d") == {b"c%03d" % i: b"b" for i in range(100)}
        assert all(k.revision_count() == 1 for k in s2.mvcc.index.all())
    finally:
        await s2.close()


async def test_an_entry_apply_cannot_make_sense_of_stops_the_member():
    """A replica that skipped an entry would diverge silently: the apply loop stops instead,
    and the member with it (writes refused, waiters answered, the server exits)."""
    from kvstore.store import entry

    s = await kvstore.Store.open("memory")
    try:
        await s.put(pb.PutRequest(key=b"a", value=b"1"))
        await s.log.append(entry.encode_record(12345, 1, [entry.encode_entry(0x7A, b"")]))
        exc = await asyncio.wait_for(asyncio.shield(s.failed), 5)
        assert isinstance(exc, entry.CorruptRecord) and "0x7a" in str(exc)
        assert not s.healthy()
        with pytest.raises(errors.Stopped):
            await s.put(pb.PutRequest(key=b"b", value=b"2"))
        assert s.applied_index == s.log.first_index() + 1  # the bad record was not applied
    finally:
        await s.close()


async def test_a_record_out_of_order_stops_the_member():
    """The log's contract is no gap and no repeat: a follower that hands over a record twice is
    caught, not applied twice."""
    from kvstore.log.memory import MemoryLog

    class RepeatingLog(MemoryLog):
        def read(self, start, limit):
            batch = super().read(start, limit)
            return batch + batch[-1:] if len(batch) == 1 and start >= 2 else batch

    s = kvstore.Store(RepeatingLog(), kvstore.log.MemoryStorage())
    await s.start()
    try:
        assert (await s.put(pb.PutRequest(key=b"a", value=b"1"))).header.revision == 2
        exc = await asyncio.wait_for(asyncio.shield(s.failed), 5)  # then handed over again
        assert isinstance(exc, errors.Corrupt) and "follows" in str(exc)
        assert s.mvcc.current_rev == 2  # applied once
        with pytest.raises(errors.Stopped):
            await s.put(pb.PutRequest(key=b"b", value=b"2"))
    finally:
        await s.close()


async def test_defragment_while_writes_go_on_loses_no_acknowledged_write(tmp_path):
    """Puts in flight while the log's file is copied and swapped: each is acknowledged after
    the swap or before the copy, and every acknowledged one is there after a restart."""
    s = await open_lmdb(tmp_path / "d", snapshot_count=1_000_000)
    acknowledged: dict[bytes, bytes] = {}

    async def writer(n: int) -> None:
        for i in range(150):
            key, value = b"w%d/%03d" % (n, i), b"v" * (i % 7 + 1) * 500
            await s.put(pb.PutRequest(key=key, value=value))
            acknowledged[key] = value

    try:
        for i in range(400):  # free pages for the copy to leave out
            await s.put(pb.PutRequest(key=b"old/%03d" % i, value=b"x" * 4096))
        rev = (await s.delete_range(pb.DeleteRangeRequest(key=b"old/", range_end=b"old0"))).header.revision
        await s.compact(pb.CompactionRequest(revision=rev, physical=True))
        size_before = s.status().dbSize
        writers = [asyncio.create_task(writer(n)) for n in range(4)]
        await asyncio.sleep(0.01)
        started = len(acknowledged)
        await s.defragment()
        await s.defragment()  # twice, writes still going
        finished = len(acknowledged)
        assert 0 < started < finished < 600  # acknowledged before, during and after
        await asyncio.gather(*writers)
        assert s.status().dbSize < size_before
        assert len(acknowledged) == 600
    finally:
        await s.close()
    s2 = await open_lmdb(tmp_path / "d")
    try:
        got = {kv.key: kv.value for kv in s2.range(pb.RangeRequest(key=b"w", range_end=b"x")).kvs}
        assert got == acknowledged
        assert s2.range(pb.RangeRequest(key=b"old/", range_end=b"old0")).count == 0
    finally:
        await s2.close()
