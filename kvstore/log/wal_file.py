"""The LMDB log's write-ahead files: where a record is made durable before LMDB holds it.

An LMDB commit writes about six scattered pages (the record's leaf, the branches above it, the
catalog's root, the free list, the meta page) and a sync covers them all; on this project's
machine that costs about twice the CPU of a sync after one appended write (bench/fsync_pages.py:
139-144 µs against 64 µs). So a record is first appended to a write-ahead file and synced (one
write, one fdatasync: durable, acknowledged), as etcd's WAL does, and records reach LMDB in
batches (a *checkpoint*, etcd's backend commit), about every 100 ms.

Two files, ``wal.0`` and ``wal.1``. Appends go to the active one; a checkpoint commits every
record written since the last one to LMDB, syncs it, and then makes the other file active from
offset 0: everything that file held is in LMDB by then. So the records LMDB lacks are all in the
active file, in order from its start. A file is reused, not emptied, so past its newest record
it may hold older ones: recovery follows records from offset 0 while each is intact and its
index is one more than the last, and stops at the first that is not.

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

HEADER = struct.Struct("<IIQ")  # crc, length, index
_INDEX = struct.Struct("<Q")
FILES = ("wal.0", "wal.1")
# Past this many bytes the active file is checkpointed and switched before the next append, so
# the files stay about this size (a record larger than that alone goes in whole).
SWITCH_BYTES = 4 << 20
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
    out: list[tuple[int, bytes]] = []
    pos = 0
    while (found := _record_at(buf, pos)) is not None:
        index, record, pos = found
        if out and index != out[-1][0] + 1:
            break
        out.append((index, record))
    return out


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


class WalFiles:
    """The two files, open for appends: used by the log's writer thread alone."""

    def __init__(self, directory: Path):
        self.dir = directory
        new = not all((directory / name).exists() for name in FILES)
        self._fds = [os.open(directory / name, os.O_RDWR | os.O_CREAT, 0o600) for name in FILES]
        if new:  # the files' names must survive a crash too
            fsync_dir(directory)
        self._active = 0
        self._pos = 0

    @staticmethod
    def read_all(directory: Path) -> dict[str, bytes]:
        out = {}
        for name in FILES:
            try:
                out[name] = (directory / name).read_bytes()
            except FileNotFoundError:
                pass
        return out

    def full(self, record_bytes: int) -> bool:
        """Whether the active file should be switched before a record of this size."""
        return self._pos > 0 and self._pos + HEADER.size + record_bytes > SWITCH_BYTES

    def append(self, index: int, record: bytes) -> None:
        """Writes the record and syncs it: durable on return. Raises LogFull when the medium
        takes no more (nothing is durable then; the next append writes at the same place)."""
        data = encode(index, record)
        fd = self._fds[self._active]
        try:
            written = os.pwrite(fd, data, self._pos)
        except OSError as e:
            if e.errno in _FULL_ERRNOS:  # nothing written
                raise LogFull(f"{self.dir / FILES[self._active]}: {e.strerror}") from None
            raise
        if written != len(data):  # cut short by a full medium: unmake what was written, since
            # the index goes to the next record (an OSError here stops the member)
            os.pwrite(fd, bytes(min(written, HEADER.size)), self._pos)
            raise LogFull(f"{self.dir / FILES[self._active]}: {os.strerror(errno.ENOSPC)}")
        os.fdatasync(fd)  # a failure here stops the member: the record may or may not be durable
        self._pos += len(data)

    def switch(self) -> None:
        """Every record in the active file is in LMDB: the other file takes appends from its
        start (the file just left holds nothing LMDB lacks)."""
        self._active ^= 1
        self._pos = 0

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []
