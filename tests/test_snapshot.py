"""Snapshot capture beside a running store: what is captured is the state at the capture's
revision, whatever writes land while the keys are being encoded."""
from __future__ import annotations

import asyncio
import random

import pytest

from kvstore.mvcc import MVCCStore
from kvstore.store import snapshot

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
    rng = random.Random(seed)
    mvcc = MVCCStore()
    for _ in range(rng.randrange(20, 120)):
        random_write(mvcc, rng)
    if seed % 3 == 0:
        mvcc.compact(mvcc.current_rev - 5)
    expected = state(MVCCStore.load(mvcc.dump()))
    capture = snapshot.Capture(mvcc, [[7, 60]], index=123)
    task = asyncio.create_task(collect(capture, mvcc))
    while not task.done():  # writes (puts, deletes, re-creations) between the slices
        random_write(mvcc, rng)
        await asyncio.sleep(0)
    parts = task.result()
    assert parts is not None
    restored, leases, _ = snapshot.parse(b"".join(parts))
    assert state(restored) == expected
    assert leases == [[7, 60]]


async def test_a_compaction_during_capture_abandons_it(monkeypatch):
    monkeypatch.setattr(snapshot, "SLICE_KEYS", 3)
    mvcc = MVCCStore()
    rng = random.Random(1)
    for _ in range(60):
        random_write(mvcc, rng)
    task = asyncio.create_task(collect(snapshot.Capture(mvcc, [], index=1), mvcc))
    await asyncio.sleep(0)
    mvcc.compact(mvcc.current_rev - 1)
    with pytest.raises(snapshot.Overtaken):
        await task


def test_parse_refuses_a_file_whose_sections_do_not_add_up():
    mvcc = MVCCStore()
    txn = mvcc.write()
    txn.put(b"a", b"1")
    txn.end()
    parts = asyncio.run(collect(snapshot.Capture(mvcc, [], index=1), mvcc))
    with pytest.raises(ValueError, match="corrupt snapshot"):
        snapshot.parse(b"".join(parts)[:-1])
