"""The LMDB log's write-ahead files: a record is durable once appended and synced there, a
restart puts what LMDB lacks into it, a torn last record is a crash's and is dropped, and damage
before an intact record is refused."""
from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from datadir_damage import log_records  # the indexes LMDB holds (the log closed)
from kvstore.log import DataDirCorrupt, lmdb as lmdb_log, wal_file
from kvstore.log.lmdb import LmdbLog
from kvstore.log.wal_file import encode, recover, scan
from kvstore.server import check as check_cmd
from kvstore.store.recovery import Stop

pytestmark = pytest.mark.inprocess


def records(first: int, last: int) -> list[tuple[int, bytes]]:
    return [(i, b"record %d " % i + b"x" * (i % 13)) for i in range(first, last + 1)]


def file_of(recs: list[tuple[int, bytes]], tail: bytes = b"") -> bytes:
    return b"".join(encode(i, r) for i, r in recs) + tail


# The format and recovery, in memory.

def test_records_follow_one_another_from_the_start_of_a_file():
    recs = records(5, 40)
    assert scan(file_of(recs)) == recs
    assert all(len(encode(i, r)) % 8 == 0 for i, r in recs)
    # a reused file: newer records over older ones, which follow but are not taken
    reused = file_of(records(41, 45)) + file_of(recs)[len(file_of(records(41, 45))):]
    assert scan(reused) == records(41, 45)
    assert scan(b"") == [] and scan(bytes(4096)) == []


def test_recovery_takes_what_follows_lmdb_from_either_file():
    active = file_of(records(101, 130))
    left = file_of(records(60, 100))  # the file before the last switch: all in LMDB
    assert recover({"wal.0": left, "wal.1": active}, 100, "d") == records(101, 130)
    assert recover({"wal.0": left, "wal.1": active}, 120, "d") == records(121, 130)
    assert recover({"wal.0": left, "wal.1": active}, 130, "d") == []
    assert recover({}, 7, "d") == []


def test_a_torn_last_record_is_a_crash_and_is_dropped():
    torn = encode(131, b"y" * 300)
    for cut in (1, 16, len(torn) - 9):
        active = file_of(records(101, 130), torn[:cut])
        assert recover({"wal.1": active}, 100, "d") == records(101, 130)
    flipped = bytearray(file_of(records(101, 131)))
    flipped[-5] ^= 1  # the newest record's last byte: as if written in part
    assert recover({"wal.1": bytes(flipped)}, 100, "d") == records(101, 130)


def test_damage_before_an_intact_record_is_refused():
    data = bytearray(file_of(records(101, 130)))
    offset = len(file_of(records(101, 110))) + 20  # inside record 111
    data[offset] ^= 4
    with pytest.raises(DataDirCorrupt, match=r"d/wal.1: record 112 follows a damaged record"):
        recover({"wal.1": bytes(data)}, 100, "d")


def test_a_gap_after_lmdb_is_refused():
    with pytest.raises(DataDirCorrupt, match=r"d: records 105\.\. follow a gap at 101"):
        recover({"wal.1": file_of(records(105, 110))}, 100, "d")


def test_one_record_two_ways_is_refused():
    other = [(101, b"something else")]
    with pytest.raises(DataDirCorrupt, match="record 101 differs between files"):
        recover({"wal.0": file_of(records(101, 102)), "wal.1": file_of(other)}, 100, "d")


# The log on a real directory.

CRASHING_APPENDER = textwrap.dedent("""
    import asyncio, os, sys
    from kvstore.log import lmdb as lmdb_log
    lmdb_log.CHECKPOINT_INTERVAL = 3600  # no checkpoint: the records are in the files alone
    from kvstore.api import rpc_pb2 as pb
    from kvstore.store import entry
    def record(i):
        if sys.argv[3] == "entries":
            put = pb.PutRequest(key=b"k%d" % i, value=b"v").SerializeToString()
            return entry.encode_record(1, i + 1, [entry.encode_entry(entry.PUT, put)])
        if sys.argv[3] == "large":
            return b"acked %d " % i + b"x" * 2000
        return b"acked %d" % i
    async def main():
        log = lmdb_log.LmdbLog(sys.argv[1])
        for i in range(int(sys.argv[2])):
            await log.append(record(i))
        print("acked", flush=True)
        os._exit(0)  # as a crash: no close, no checkpoint
    asyncio.run(main())
""")


def crash_after_appending(d: Path, n: int, as_entries: bool = False, large: bool = False) -> None:
    kind = "entries" if as_entries else "large" if large else "bytes"
    out = subprocess.run([sys.executable, "-c", CRASHING_APPENDER, str(d), str(n), kind],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == "acked\n", out.stderr


def file_sizes(directory: Path, names) -> list[int]:
    return [os.stat(directory / name).st_size for name in names]


def read_all(log: LmdbLog) -> list[tuple[int, bytes]]:
    return log.read(log.first_index(), 1 << 20)


async def test_records_acknowledged_before_a_crash_are_recovered_into_lmdb(tmp_path):
    d = tmp_path / "d"
    crash_after_appending(d, 50)
    assert log_records(d) == []  # only the write-ahead file has them
    log = LmdbLog(d)
    try:
        assert read_all(log) == [(i + 1, b"acked %d" % i) for i in range(50)]
        assert log.held() == (1, 50)
        assert await log.append(b"after") == 51
    finally:
        await log.close()
    assert log_records(d) == list(range(1, 52))


async def test_records_lmdb_cannot_take_at_a_restart_stay_in_the_files(tmp_path):
    """A full medium at the restart: LMDB (here a 64 KiB map) cannot take the 100 KiB of
    records only the files hold. The log starts anyway, reads them from memory, and appends
    after them in the same file; a later start with room puts them all into LMDB."""
    d = tmp_path / "d"
    crash_after_appending(d, 50, large=True)
    acked = [(i + 1, b"acked %d " % i + b"x" * 2000) for i in range(50)]
    log = LmdbLog(d, map_size=64 << 10)
    try:
        assert read_all(log) == acked
        assert await log.append(b"after") == 51
        await asyncio.sleep(0.05)  # its checkpoint fails too: no switch to the other file
    finally:
        await log.close()  # and so does the last one
    assert log_records(d) == []
    assert wal_file.scan((d / "log" / "wal.0").read_bytes()) == acked + [(51, b"after")]
    log = LmdbLog(d)
    try:
        assert read_all(log) == acked + [(51, b"after")]
    finally:
        await log.close()
    assert log_records(d) == list(range(1, 52))


async def test_a_torn_append_at_the_crash_is_dropped_and_damage_refused(tmp_path):
    d = tmp_path / "d"
    crash_after_appending(d, 20)
    active = d / "log" / "wal.0"
    data = active.read_bytes()
    end = len(b"".join(encode(i + 1, b"acked %d" % i) for i in range(20)))
    torn = encode(21, b"never acked " * 30)
    active.write_bytes(data[:end] + torn[:len(torn) // 2])
    log = LmdbLog(d)
    try:
        assert [i for i, _ in read_all(log)] == list(range(1, 21))
    finally:
        await log.close()

    d2 = tmp_path / "d2"
    crash_after_appending(d2, 20)
    data = bytearray((d2 / "log" / "wal.0").read_bytes())
    data[len(encode(1, b"acked 0")) + 18] ^= 1  # record 2's bytes
    (d2 / "log" / "wal.0").write_bytes(bytes(data))
    with pytest.raises(DataDirCorrupt, match=r"wal.0: record 3 follows a damaged record"):
        LmdbLog(d2)


async def test_a_full_file_is_checkpointed_and_the_other_one_takes_appends(tmp_path, monkeypatch):
    monkeypatch.setattr(wal_file, "SWITCH_BYTES", 4096)
    monkeypatch.setattr(lmdb_log, "CHECKPOINT_INTERVAL", 3600)  # only a full file checkpoints
    d = tmp_path / "d"
    log = LmdbLog(d)
    try:
        for i in range(400):
            assert await log.append(b"r%03d" % i + b"." * 100) == i + 1
        assert sum(log.commit_durations.counts) >= 10  # 400 records of 120 bytes in 4 KiB
        assert sum(log.fsync_durations.counts) == 400  # one sync an append
        await asyncio.sleep(0.05)
        assert read_all(log)[:3] == [(1, b"r000" + b"." * 100), (2, b"r001" + b"." * 100),
                                     (3, b"r002" + b"." * 100)]
    finally:
        await log.close()
    assert all(size <= 4096 + 128 for size in file_sizes(d / "log", wal_file.FILES))
    assert log_records(d) == list(range(1, 401))  # close checkpoints the rest
    log = LmdbLog(d)
    try:
        assert len(read_all(log)) == 400 and log.held() == (1, 400)
    finally:
        await log.close()


async def test_check_reads_records_from_the_files_and_changes_nothing(tmp_path):
    """kvstore check's log check after a crash: it reads the records only the files hold, and
    changes no byte of LMDB's file or the files (a start would put them into LMDB)."""
    d = tmp_path / "d"
    crash_after_appending(d, 30, as_entries=True)
    kept = ("data.mdb", *wal_file.FILES)  # lock.mdb is LMDB's reader table, any open changes it
    files = {name: (d / "log" / name).read_bytes() for name in kept}
    out = io.StringIO()
    report = check_cmd.Report(out)
    await check_cmd.check_log(d, 0, Stop(0, 0), report)
    assert report.problems == 0, out.getvalue()
    assert "records 1 to 30, each checksum intact, each entry decoded" in out.getvalue()
    assert {name: (d / "log" / name).read_bytes() for name in kept} == files


async def test_reads_find_records_before_and_after_their_checkpoint(tmp_path, monkeypatch):
    """A record is read from memory until its checkpoint and from LMDB after it (the newest
    RECENT stay in memory too): a read gives the records from its start on, at least one and
    at most its limit (LMDB's and memory's part come in separate reads), the same bytes
    whichever holds them."""
    monkeypatch.setattr(wal_file, "SWITCH_BYTES", 4096)  # a checkpoint every ~30 records
    monkeypatch.setattr(lmdb_log, "CHECKPOINT_INTERVAL", 3600)
    monkeypatch.setattr(lmdb_log, "RECENT", 8)
    log = LmdbLog(tmp_path / "d")
    expected = [(i + 1, b"r%03d" % i + b"." * 100) for i in range(300)]

    def check_reads(last: int) -> None:
        for start, limit in ((1, 1000), (1, 10), (150, 5), (295, 100), (300, 1), (290, 3)):
            if start > last:
                assert log.read(start, limit) == []
                continue
            got = log.read(start, limit)
            assert 1 <= len(got) <= limit and got == expected[start - 1:start - 1 + len(got)]
        got, start = [], 1
        while start <= last:  # as a follower reads
            got += log.read(start, 1000)
            start = got[-1][0] + 1
        assert got == expected[:last]

    try:
        for i in range(300):
            await log.append(expected[i][1])
            if i % 37 == 0:  # mid-way through the appends, as the apply loop reads
                check_reads(i + 1)
        await asyncio.sleep(0.05)  # the last checkpoint's callback
        check_reads(300)
        assert sum(log.commit_durations.counts) >= 8
    finally:
        await log.close()
