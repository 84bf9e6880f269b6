"""Snapshot capture beside a running store: what is captured is the state at the capture's
revision, whatever writes land while the keys are being encoded."""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from kvstore.mvcc import MVCCStore
from kvstore.store import snapshot, snapshot_file

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess


def random_write(mvcc: MVCCStore, rng: random.Random) -> None:
    txn = mvcc.write()
    # distinct keys in one txn: etcd refuses a txn that writes a key twice
    for key in rng.sample([b"k%02d" % i for i in range(30)], rng.choice([1, 1, 1, 2, 3])):
        if rng.random() < 0.25:
            txn.delete_range(key, None)
        else:
            txn.put(key, b"v%d" % rng.randrange(1000), rng.choice([0, 0, 5]))
    txn.end()


def state(mvcc: MVCCStore):
    return ([(ki.key, [[kv.as_tuple() for kv in g] for g in ki.generations]) for ki in mvcc.index.all()],
            [(rev, [kv.as_tuple() for kv in ch]) for rev, ch in mvcc.history],
            mvcc.current_rev, mvcc.compact_rev)


async def collect(capture, mvcc) -> list[bytes]:
    """The capture's parts, as a log would take them."""
    return [part async for part in capture.parts(lambda: mvcc)]


@pytest.mark.parametrize("seed", range(12))
async def test_capture_is_the_state_at_its_revision(seed, monkeypatch):
    monkeypatch.setattr(snapshot, "SLICE_KEYS", 3)  # many turns of the loop for writes to land in
    monkeypatch.setattr(snapshot, "SLICE_REVISIONS", 4)
    rng = random.Random(seed)
    mvcc = MVCCStore()
    for _ in range(rng.randrange(20, 120)):
        random_write(mvcc, rng)
    if seed % 3 == 0:
        mvcc.compact(mvcc.current_rev - 5)
    expected = state(MVCCStore.load(mvcc.dump()))
    expected_size, expected_subs = mvcc.size, dict(mvcc.kept_subs)
    capture = snapshot.Capture(mvcc, [[7, 60]], index=123, alarms=[[5, 1]])
    task = asyncio.create_task(collect(capture, mvcc))
    while not task.done():  # writes (puts, deletes, re-creations) between the slices
        random_write(mvcc, rng)
        await asyncio.sleep(0)
    parts = task.result()
    assert parts is not None
    snap = snapshot.parse(b"".join(parts))
    restored, leases, alarms = snap.mvcc, snap.leases, snap.alarms
    assert state(restored) == expected
    assert leases == [[7, 60]]
    assert alarms == [[5, 1]]
    # The state's size and the sub-revisions compaction kept, as they were at the capture.
    assert restored.size == expected_size == restored.measure_size()
    assert restored.kept_subs == expected_subs


@pytest.mark.parametrize("slices", [(3, 1000), (1000, 3)], ids=["keys", "history"])
async def test_a_compaction_during_capture_abandons_it(slices, monkeypatch):
    """Whether it lands while the keys are encoded or while the history is."""
    monkeypatch.setattr(snapshot, "SLICE_KEYS", slices[0])
    monkeypatch.setattr(snapshot, "SLICE_REVISIONS", slices[1])
    mvcc = MVCCStore()
    rng = random.Random(1)
    for _ in range(60):
        random_write(mvcc, rng)
    task = asyncio.create_task(collect(snapshot.Capture(mvcc, [], index=1), mvcc))
    await asyncio.sleep(0)
    mvcc.compact(mvcc.current_rev - 1)
    with pytest.raises(snapshot.Overtaken):
        await task


def small_snapshot() -> bytes:
    mvcc = MVCCStore()
    for i in range(3):
        txn = mvcc.write()
        txn.put(b"k%d" % i, b"v%d" % i, 7 if i == 1 else 0)
        txn.end()
    return b"".join(asyncio.run(collect(snapshot.Capture(mvcc, [[7, 60]], index=9), mvcc)))


def test_every_truncation_of_a_snapshot_is_refused():
    data = small_snapshot()
    snapshot.parse(data)  # whole, it loads
    for n in range(len(data)):
        with pytest.raises(snapshot.SnapshotCorrupt):
            snapshot.parse(data[:n])
    with pytest.raises(snapshot.SnapshotCorrupt, match="no snapshot trailer"):
        snapshot.parse(data + b"\0")


def test_every_flipped_bit_of_a_snapshot_is_refused():
    """Each of the file's bits, flipped alone: the checksums leave none unnoticed."""
    data = small_snapshot()
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(snapshot.SnapshotCorrupt):
                snapshot.parse(bytes(damaged))


def test_every_flipped_bit_is_refused_without_a_write_outside_memory():
    """The test above again, under Python's debug allocator, which aborts at a write outside an
    allocation. Sections are decoded beside their checksums, so a damaged one is decoded before
    it is refused, and the decoder must stay within its memory whatever it reads. (A history
    revision with its sign bit flipped overflowed the compiled decoder's revision span: it
    wrote before its table, and CI crashed tests later.)"""
    code = ("import test_snapshot as t; t.test_every_flipped_bit_of_a_snapshot_is_refused(); "
            "print('refused')")
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONMALLOC": "debug",
           "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "refused", r.stderr[-3000:]


def test_snapshot_status_reads_the_envelope():
    data = small_snapshot()
    st = snapshot_file.status(data)
    assert (st.revision, st.total_keys, st.total_size, st.log_index) == (4, 3, len(data), 9)
    assert st.hash == zlib.crc32(data)


def test_a_snapshot_file_is_mapped_decoded_in_place_and_unmapped(tmp_path):
    """Recovery maps the snapshot file (DirStorage.open_snapshot) and decodes views of it: the
    state is the one read from its bytes, and the map is gone once the file is read, whether
    it loaded or was refused."""
    import mmap

    from kvstore.log.storage import DirStorage

    data = small_snapshot()

    async def parts(blob):
        yield blob

    storage = DirStorage(tmp_path / "d")
    try:
        with storage.open_snapshot() as found:
            assert found is None
        asyncio.run(storage.save_snapshot(9, parts(data)))
        with storage.open_snapshot() as found:
            assert found is not None
            index, mapped = found
            assert index == 9 and isinstance(mapped, mmap.mmap) and len(mapped) == len(data)
            assert state(snapshot.parse(mapped).mvcc) == state(snapshot.parse(data).mvcc)
            assert snapshot.parse(mapped).leases == [[7, 60]]
        assert mapped.closed
        path = tmp_path / "d" / "snapshot-0000000000000009.snap"
        damaged = bytearray(data)
        damaged[0] ^= 1  # the key section's first byte
        path.write_bytes(bytes(damaged))
        with storage.open_snapshot() as found:
            assert found is not None
            with pytest.raises(snapshot.SnapshotCorrupt, match="the key section fails its checksum"):
                snapshot.parse(found[1])
            mapped = found[1]
        assert mapped.closed
        path.write_bytes(b"")  # empty: nothing to map, refused as truncated
        with storage.open_snapshot() as found:
            assert found == (9, b"")
            with pytest.raises(snapshot.SnapshotCorrupt, match="truncated"):
                snapshot.parse(found[1])
    finally:
        storage.unlock()


def test_a_damaged_section_is_refused_for_its_checksum_even_where_it_does_not_decode():
    """The checksums are computed beside the decoding (snapshot_file.SectionsCheck): a flipped
    bit in a section is named as the section failing its checksum, whatever the decoding made
    of the damaged bytes."""
    data = small_snapshot()
    env, start = snapshot_file.read_envelope(data)
    for i in range(start):
        damaged = bytearray(data)
        damaged[i] ^= 0x80
        which = "key" if i < env["keys_len"] else "history"
        with pytest.raises(snapshot.SnapshotCorrupt, match=f"^the {which} section fails its checksum$"):
            snapshot.parse(bytes(damaged))
