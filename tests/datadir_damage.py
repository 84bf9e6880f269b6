"""Data dirs made by a real store, and the damage an operator (or a disk) can do to them: each
damage with what a refusal to start must say about it."""
from __future__ import annotations

import asyncio
import shutil
import struct
from pathlib import Path

import lmdb

import kvstore
from kvstore.api import rpc_pb2 as pb
from kvstore.log.wal_file import FILES as WAL_FILES

PUTS = 350
SNAPSHOT_COUNT = 100  # snapshots at 100, 200, 300 entries: the log keeps what follows the last
VALUE = b"v" * 1000  # enough for data.mdb to be well over 64 KiB


async def _fill(path: Path) -> None:
    store = await kvstore.Store.open("lmdb", path, snapshot_count=SNAPSHOT_COUNT)
    try:
        for i in range(PUTS):
            await store.put(pb.PutRequest(key=b"k%04d" % i, value=VALUE))
        await store.snapshotter.wait()
    finally:
        await store.close()


def build(path: Path) -> Path:
    """A data dir after a clean stop: a snapshot, and log records after it."""
    asyncio.run(_fill(path))
    return path


def copy(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    (dest / "lock").unlink(missing_ok=True)
    return dest


def snapshot_file(d: Path) -> Path:
    (path,) = d.glob("snapshot-*.snap")
    return path


def snapshot_file_index(d: Path) -> int:
    return int(snapshot_file(d).name[len("snapshot-"):-len(".snap")], 16)


def log_records(d: Path) -> list[int]:
    env = lmdb.open(str(d / "log"), max_dbs=4)
    try:
        with env.begin(db=env.open_db(b"entries")) as txn:
            return [struct.unpack(">Q", k)[0] for k, _ in txn.cursor()]
    finally:
        env.close()


def _delete_records(d: Path, which) -> None:
    env = lmdb.open(str(d / "log"), max_dbs=4)
    try:
        db = env.open_db(b"entries")
        with env.begin(write=True, db=db) as txn:
            for index in which:
                assert txn.delete(struct.pack(">Q", index), db=db)
    finally:
        env.close()


def _flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def delete_snapshot(d: Path) -> None:
    snapshot_file(d).unlink()


def flip_snapshot_key_bit(d: Path) -> None:
    _flip(snapshot_file(d), 40, 3)  # inside the first key's record


def truncate_snapshot(d: Path) -> None:
    path = snapshot_file(d)
    _truncate(path, path.stat().st_size // 2)


def empty_snapshot(d: Path) -> None:
    _truncate(snapshot_file(d), 0)


def truncate_log_file(d: Path) -> None:
    path = d / "log" / "data.mdb"
    _truncate(path, path.stat().st_size - 65536)


def flip_log_record_bit(d: Path) -> None:
    """A bit of the newest record's value: in every copy of it in the file (LMDB copies pages
    on write, and the live one is not always the last)."""
    path = d / "log" / "data.mdb"
    data = bytearray(path.read_bytes())
    key = b"k%04d" % (PUTS - 1)
    at = data.find(key)
    assert at >= 0
    while at >= 0:
        data[at + 100] ^= 1
        at = data.find(key, at + 1)
    path.write_bytes(bytes(data))


def delete_log_head(d: Path) -> None:
    """The newest records, gone (after a clean stop that had applied them): from LMDB and from
    the write-ahead files, which still hold the last ones appended."""
    _delete_records(d, log_records(d)[-5:])
    for name in WAL_FILES:
        (d / "log" / name).unlink()


def delete_log_tail(d: Path) -> None:
    """The oldest records the snapshot does not cover, gone."""
    _delete_records(d, log_records(d)[:3])


def delete_log(d: Path) -> None:
    shutil.rmtree(d / "log")


def garble_meta(d: Path) -> None:
    (d / "meta").write_bytes(b"garbage")


def flip_meta_bit(d: Path) -> None:
    _flip(d / "meta", 3, 0)


# name -> (damage, what the refusal says)
DAMAGES = {
    "snapshot deleted": (delete_snapshot, r"snapshot-[0-9a-f]{16}\.snap: missing"),
    "snapshot bit flipped": (flip_snapshot_key_bit, r"\.snap: the key section fails its checksum"),
    "snapshot truncated": (truncate_snapshot, r"\.snap: no snapshot trailer"),
    "snapshot emptied": (empty_snapshot, r"\.snap: truncated: 0 bytes"),
    "data.mdb truncated by 64 KiB": (truncate_log_file, r"data\.mdb: truncated: \d+ bytes, but"),
    "log record bit flipped": (flip_log_record_bit, r"data\.mdb: record \d+ fails its checksum"),
    "log head missing": (delete_log_head, r"data\.mdb: ends at record \d+, but this member had "
                                          r"applied through \d+ at its last clean stop"),
    "log records after the snapshot missing": (delete_log_tail, r"data\.mdb: starts at record \d+, "
                                                                r"but the newest snapshot covers"),
    "log deleted": (delete_log, r"data\.mdb: holds no records, but this member applied"),
    "meta garbled": (garble_meta, r"meta: unreadable"),
    "meta bit flipped": (flip_meta_bit, r"meta: fails its checksum"),
}
