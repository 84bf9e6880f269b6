"""A data dir that never lies: each damage makes the store refuse to start, with the file and
what is wrong with it, and ``kvstore check`` reports the same; an intact dir starts and checks
clean."""
from __future__ import annotations

import io
import shutil
import struct

import lmdb
import msgpack
import pytest

import datadir_damage as damage
import kvstore
from kvstore.api import rpc_pb2 as pb
from kvstore.log import DataDirCorrupt, DataDirInUse
from kvstore.server import check as check_cmd

# In process, no server: also run on the pure-Python twins (KVSTORE_NO_EXT=1).
pytestmark = pytest.mark.inprocess


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return damage.build(tmp_path_factory.mktemp("pristine") / "d")


async def run_check(d) -> tuple[int, str]:
    out = io.StringIO()
    report = check_cmd.Report(out)
    await check_cmd.check(d, report)
    return report.problems, out.getvalue()


async def test_an_intact_data_dir_starts_with_everything(pristine, tmp_path):
    d = damage.copy(pristine, tmp_path / "d")
    problems, out = await run_check(d)
    assert problems == 0, out
    assert "FAIL" not in out and "checksums intact" in out
    s = await kvstore.Store.open("lmdb", d)
    try:
        got = s.range(pb.RangeRequest(key=b"k", range_end=b"l", count_only=True))
        assert got.count == damage.PUTS
        assert s.mvcc.current_rev == damage.PUTS + 1
        assert 0 < s.snapshot_index < s.applied_index  # a snapshot, and records after it
        with pytest.raises(DataDirInUse):  # a running member's dir is not checked
            await run_check(d)
    finally:
        await s.close()


@pytest.mark.parametrize("name", list(damage.DAMAGES))
async def test_a_damaged_data_dir_is_refused_and_checked(name, pristine, tmp_path):
    hurt, says = damage.DAMAGES[name]
    d = damage.copy(pristine, tmp_path / "d")
    hurt(d)
    problems, out = await run_check(d)
    assert problems >= 1
    (fail,) = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert str(d) in fail
    with pytest.raises(DataDirCorrupt, match=says) as refused:
        await kvstore.Store.open("lmdb", d)
    assert str(d) in str(refused.value)
    assert fail == f"FAIL  {refused.value}"  # check and start say the same thing
    # and refuse again: the failed start changed nothing that would let the next one pass
    with pytest.raises(DataDirCorrupt, match=says):
        await kvstore.Store.open("lmdb", d)


async def test_a_backup_of_older_files_is_refused_revisions_never_go_backwards(pristine, tmp_path):
    """Snapshot and log copied back from an earlier moment of the same member: serving them
    would move the revision back. The meta remembers further."""
    d = damage.copy(pristine, tmp_path / "d")
    older = damage.copy(pristine, tmp_path / "older")
    s = await kvstore.Store.open("lmdb", d, snapshot_count=damage.SNAPSHOT_COUNT)
    try:
        for i in range(150):  # another snapshot, and more records
            await s.put(pb.PutRequest(key=b"later%d" % i, value=b"x"))
        await s.snapshotter.wait()
        assert s.snapshot_index > damage.snapshot_file_index(older)
    finally:
        await s.close()
    for p in d.glob("snapshot-*.snap"):
        p.unlink()
    shutil.rmtree(d / "log")
    shutil.copy(damage.snapshot_file(older), d)
    shutil.copytree(older / "log", d / "log")
    with pytest.raises(DataDirCorrupt, match=r"\.snap: missing"):
        await kvstore.Store.open("lmdb", d)


async def test_a_log_of_records_without_checksums_is_refused(pristine, tmp_path):
    d = damage.copy(pristine, tmp_path / "d")
    env = lmdb.open(str(d / "log"), max_dbs=4)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.delete(b"format")
    env.close()
    with pytest.raises(DataDirCorrupt, match="no checksums"):
        await kvstore.Store.open("lmdb", d)


async def test_a_meta_without_checksum_is_read_and_rewritten_with_one(pristine, tmp_path):
    """What a data dir of an older kvstore has: its meta is a bare msgpack map."""
    d = damage.copy(pristine, tmp_path / "d")
    data = (d / "meta").read_bytes()
    meta = msgpack.unpackb(data[:-12])
    (d / "meta").write_bytes(msgpack.packb(meta))
    s = await kvstore.Store.open("lmdb", d)
    await s.close()
    assert (d / "meta").read_bytes().endswith(b"KVMETA01")
    starts = struct.unpack(">Q", msgpack.unpackb((d / "meta").read_bytes()[:-12])["starts"])[0]
    assert starts == struct.unpack(">Q", meta["starts"])[0] + 1
