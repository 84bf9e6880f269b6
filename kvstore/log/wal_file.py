"""The LMDB log's write-ahead files: where a record is made durable before LMDB holds it.

An LMDB commit writes about six scattered pages (the record's leaf, the branches above it, the
catalog's root, the free list, the meta page) and a sync covers them all; on this project's
machine that costs about twice the CPU of a sync after one appended write (bench/fsync_pages.py:
139-144 µs against 64 µs). So a record is first appended to a write-ahead file and synced (one
write, one fdatasync: durable, acknowledged), as etcd's WAL does, and records reach LMDB in
batches (a *checkpoint*, etcd's backend commit), about every 100 ms.

Two files, ``wal.0`` and ``wal.1``. Appends go to the active one. A checkpoint starts by
making the other file active from offset 0, then commits the records the file it left holds to
LMDB and syncs it; the next switch waits for that commit, so a file is written over only once
everything it held is in LMDB. So the records LMDB lacks are in at most both files, each run in
order from its file's start. A file is reused, not emptied, so past its newest record it may
hold older ones: recovery follows records from offset 0 while each is intact and its index is
one more than the last, stops at the first that is not, and joins the two files' runs.

A record: u32 CRC-32 (of the rest of the header and the record), u32 length, u64 index, the
record, zero bytes up to a multiple of 8.

What recovery takes for a crash and what for damage: only one record is ever written and not
yet synced (the log takes one append at a time), so a torn record can only be the newest. A
damaged record followed by an intact one with a later index is damage (an acknowledged record
would be lost): DataDirCorrupt.
"""
from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

from .base import DataDirCorrupt, LogFull
from .storage import fsync_dir
from .wal_writer_select import OK, WRITE_FAILED, WRITE_SHORT, WalWriter

HEADER = struct.Struct("<IIQ")  # crc, length, index
_INDEX = struct.Struct("<Q")
FILES = ("wal.0", "wal.1")
# Past this many bytes the active file is switched and checkpointed before the next append, so
# the files stay about this size (a record larger than that alone goes in whole; a file grows
# past it while LMDB cannot take the other file's records). It bounds what LMDB must take after
# a full medium is freed, before writes go on (tests/test_disk_full.py).
SWITCH_BYTES = 1 << 20
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def encode(index: int, record: bytes) -> bytes:
    body = HEADER.pack(0, len(record), index)[4:] + record
    pad = -(len(body) + 4) % 8
    return struct.pack("<I", zlib.crc32(body)) + body + b"\0" * pad


def _record_at(buf: bytes | memoryview, pos: int) -> tuple[int, bytes, int] | None:
    """(index, record, next position) of an intact record at ``pos``, else None."""
    if pos + HEADER.size > len(buf):
        return None
    crc, length, index = HEADER.unpack_from(buf, pos)
    end = pos + HEADER.size + length
    if (crc == 0 and length == 0) or end > len(buf) or zlib.crc32(buf[pos + 4:end]) != crc:
        return None
    return index, bytes(buf[pos + HEADER.size:end]), end + (-end % 8)


def scan(buf: bytes | memoryview) -> list[tuple[int, bytes]]:
    """The records from offset 0 on, while each is intact and follows the one before."""
    return _run_from_start(buf)[0]


def _run_from_start(buf: bytes | memoryview) -> tuple[list[tuple[int, bytes]], int]:
    """``scan``'s records, and the offset past the last of them."""
    out: list[tuple[int, bytes]] = []
    end = 0
    while (found := _record_at(buf, end)) is not None:
        index, record, after = found
        if out and index != out[-1][0] + 1:
            break
        out.append((index, record))
        end = after
    return out, end


def _holds_intact(buf: bytes | memoryview, index: int) -> bool:
    """Whether an intact record numbered ``index`` is anywhere in ``buf`` (at an 8-byte
    boundary: every record starts at one)."""
    data = bytes(buf)
    key = _INDEX.pack(index)
    at = data.find(key)
    while at != -1:
        pos = at - 8
        if pos >= 0 and pos % 8 == 0 and (found := _record_at(data, pos)) and found[0] == index:
            return True
        at = data.find(key, at + 1)
    return False


def recover(contents: dict[str, bytes], durable_last: int, where: str) -> list[tuple[int, bytes]]:
    """The records after ``durable_last`` (what LMDB holds) that the files hold, in order.
    Raises DataDirCorrupt for a gap after ``durable_last`` or an intact record beyond a damaged
    one."""
    found: dict[int, bytes] = {}
    for name, buf in contents.items():
        for index, record in scan(buf):
            if index > durable_last:
                if found.setdefault(index, record) != record:
                    raise DataDirCorrupt(f"{where}/{name}: record {index} differs between files")
    out = []
    next_index = durable_last + 1
    while next_index in found:
        out.append((next_index, found.pop(next_index)))
        next_index += 1
    if found:
        raise DataDirCorrupt(f"{where}: records {min(found)}.. follow a gap at {next_index}")
    for name, buf in contents.items():
        for later in (next_index, next_index + 1):  # the next record, or the one after a torn one
            if _holds_intact(buf, later):
                raise DataDirCorrupt(f"{where}/{name}: record {later} follows a damaged record")
    return out


def chain_end(contents: dict[str, bytes], index: int) -> tuple[int, int]:
    """(file number, offset past it) of the file whose records from offset 0 end at record
    ``index``: where appends go on after a recovery that left records in the files."""
    for number, name in enumerate(FILES):
        records, end = _run_from_start(contents.get(name, b""))
        if records and records[-1][0] == index:
            return number, end
    raise ValueError(f"no write-ahead file ends at record {index}")


class WalFiles:
    """The two files, open for appends, and the thread that writes them (wal_writer.py): an
    append is submitted from the event loop, runs on that thread, and is taken back when the
    writer's fileno() is readable. One append in flight at a time."""

    def __init__(self, directory: Path, active: int = 0, pos: int = 0):
        """Appends go to file ``active`` from ``pos`` on."""
        self.dir = directory
        new = not all((directory / name).exists() for name in FILES)
        self._fds = [os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o600) for name in FILES]
        if new:  # the files' names must survive a crash too
            fsync_dir(directory)
        self._active = active
        self._pos = pos
        self._writing = 0  # bytes of the append in flight
        self._writer = WalWriter()

    @staticmethod
    def read_all(directory: Path) -> dict[str, bytes]:
        out = {}
        for name in FILES:
            try:
                out[name] = (directory / name).read_bytes()
            except FileNotFoundError:
                pass
        return out

    def fileno(self) -> int:
        """Readable when the append in flight is finished."""
        return self._writer.fileno()

    def full(self, record_bytes: int) -> bool:
        """Whether the active file should be switched before a record of this size."""
        return self._pos > 0 and self._pos + HEADER.size + record_bytes > SWITCH_BYTES

    def submit(self, index: int, record: bytes) -> None:
        """Starts appending the record to the active file (write and sync); ``take`` says when
        it is durable."""
        data = encode(index, record)
        self._writer.submit(self._fds[self._active], data, self._pos)
        self._writing = len(data)

    def take(self) -> float | None:
        """Seconds the finished append took (its write and sync): the record is durable. None
        while it is in flight. Raises LogFull when the medium took none of it (the next append
        writes at the same place), OSError when its sync failed (the record may or may not be
        durable: the member stops)."""
        result = self._writer.take()
        if result is None:
            return None
        outcome, err, seconds = result
        if outcome == OK:
            self._pos += self._writing
            return seconds
        where = self.dir / FILES[self._active]
        if outcome == WRITE_SHORT or (outcome == WRITE_FAILED and err in _FULL_ERRNOS):
            # a write cut short was unmade (its header zeroed): its index goes to the next record
            raise LogFull(f"{where}: {os.strerror(err or errno.ENOSPC)}")
        raise OSError(err, os.strerror(err), str(where))

    def switch(self) -> None:
        """Every record in the other file is in LMDB: it takes appends from its start (not
        while an append is in flight)."""
        self._active ^= 1
        self._pos = 0

    def close(self) -> None:
        self._writer.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = []
