"""Member storage: a member's own durable facts and its snapshots, in its data dir or in memory.

In a data dir: ``lock`` (held while a process uses the dir), ``meta`` (a msgpack map and its
CRC-32, replaced atomically), and ``snapshot-<index>.snap`` files. A file is written to a
temporary name, fsynced, renamed into place, then the directory is fsynced: a crash leaves the
previous snapshot or the new one, never half of one.

The meta records the newest snapshot's index once its file is in place, before older ones are
removed: a data dir whose recorded snapshot is gone refuses to start (DataDirCorrupt) instead
of starting from whatever the log still holds.
"""
from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack

from .base import DataDirCorrupt

_SNAPSHOT_PREFIX = "snapshot-"
_SNAPSHOT_SUFFIX = ".snap"
_META_MAGIC = b"KVMETA01"
_META_TRAILER = struct.Struct("<I8s")  # CRC-32 of the msgpack map, magic
_U64 = struct.Struct(">Q")
# Maps a snapshot's pages at once (Linux): one call instead of a fault per few pages.
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
# Meta keys the storage itself keeps.
SNAPSHOT_KEY = "snapshot"  # u64: the log index of the newest snapshot in place


class DataDirInUse(RuntimeError):
    pass


def fsync_dir(path: Path) -> None:
    """Makes the names in ``path`` (created, renamed) survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class DirStorage:
    durable = True

    def __init__(self, data_dir: str | os.PathLike):
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.dir / "lock", "wb")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirInUse(f"data dir {self.dir} is in use by another process") from None
        try:
            self._meta = _read_meta(self.dir / "meta")
        except BaseException:
            self.unlock()
            raise
        self._meta_lock = threading.Lock()  # snapshots record theirs from an executor thread
        for stale in self.dir.glob("*.tmp"):  # what a crash left half written
            stale.unlink(missing_ok=True)

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def put_meta(self, key: str, value: bytes) -> None:
        with self._meta_lock:
            self._meta[key] = value
            packed = msgpack.packb(self._meta)
            _write_durably(self.dir / "meta",
                           packed + _META_TRAILER.pack(zlib.crc32(packed), _META_MAGIC))

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshot_paths(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir()
                      if p.name.startswith(_SNAPSHOT_PREFIX) and p.name.endswith(_SNAPSHOT_SUFFIX))

    def snapshot_name(self, index: int) -> str:
        return str(self.dir / f"{_SNAPSHOT_PREFIX}{index:016x}{_SNAPSHOT_SUFFIX}")

    def recorded_snapshot(self) -> int:
        """The index of the newest snapshot the meta says is in place (0: none yet)."""
        raw = self._meta.get(SNAPSHOT_KEY)
        return _U64.unpack(raw)[0] if raw else 0

    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        """Writes the file part by part as the parts are made, on executor threads (the event
        loop goes on meanwhile)."""
        loop = asyncio.get_running_loop()
        final = Path(self.snapshot_name(index))
        tmp = final.with_suffix(".tmp")
        f = await loop.run_in_executor(None, open, tmp, "wb")
        try:
            async for part in parts:
                await loop.run_in_executor(None, f.write, part)
            await loop.run_in_executor(None, self._finish_snapshot_file, f, tmp, final, index)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise

    def _finish_snapshot_file(self, f, tmp: Path, final: Path, index: int) -> None:
        """Makes the written file durable and the newest snapshot, records it; removes older
        ones."""
        with f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.dir)
        self.put_meta(SNAPSHOT_KEY, _U64.pack(index))
        for old in self._snapshot_paths()[:-1]:
            old.unlink(missing_ok=True)

    def _newest_snapshot(self) -> tuple[int, Path] | None:
        """The newest snapshot file and its index; DataDirCorrupt when the snapshot the meta
        records is gone (a newer one counts: a crash may land between its rename and the
        meta's update)."""
        paths = self._snapshot_paths()
        index = _index_of(paths[-1]) if paths else 0
        recorded = self.recorded_snapshot()
        if index < recorded:
            raise DataDirCorrupt(f"{self.snapshot_name(recorded)}: missing (the data dir "
                                 f"records a snapshot at log index {recorded})")
        return (index, paths[-1]) if paths else None

    def load_snapshot(self) -> tuple[int, bytes] | None:
        """The newest snapshot file's index and bytes (see _newest_snapshot)."""
        newest = self._newest_snapshot()
        return None if newest is None else (newest[0], newest[1].read_bytes())

    @contextmanager
    def open_snapshot(self) -> Iterator[tuple[int, bytes | mmap.mmap] | None]:
        """As load_snapshot, the file mapped rather than read: nothing is copied (recovery
        decodes views of the map) and the bytes stay the page cache's, not this process's.
        Snapshot files are never written in place (a new one is renamed over), so the map
        cannot change under the reader. Unmapped on exit, or, if views of it are still held
        (a traceback's), once they go."""
        newest = self._newest_snapshot()
        if newest is None:
            yield None
            return
        index, path = newest
        mapped: mmap.mmap | None = None
        with open(path, "rb") as f:
            try:
                mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE | _MAP_POPULATE,
                                   prot=mmap.PROT_READ)
            except (ValueError, OSError):  # an empty file, or a file system that cannot map
                data = f.read()
        if mapped is None:
            yield index, data
            return
        try:
            yield index, mapped
        finally:
            try:
                mapped.close()
            except BufferError:
                pass

    def size_bytes(self) -> int:
        total = 0
        for p in self._snapshot_paths():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def unlock(self) -> None:
        """Lets another process use the data dir."""
        self._lock_file.close()

    async def close(self) -> None:
        self.unlock()


def _read_meta(path: Path) -> dict[str, bytes]:
    if not path.exists():
        return {}
    data = path.read_bytes()
    payload = data
    if data.endswith(_META_MAGIC):
        payload = data[:-_META_TRAILER.size]
        crc, _ = _META_TRAILER.unpack_from(data, len(payload))
        if zlib.crc32(payload) != crc:
            raise DataDirCorrupt(f"{path}: fails its checksum")
    # else: written before the meta had a checksum; the next put_meta (every start) adds one
    try:
        meta = msgpack.unpackb(payload)
    except (ValueError, msgpack.UnpackException):
        meta = None
    if not isinstance(meta, dict):
        raise DataDirCorrupt(f"{path}: unreadable")
    return meta


def _index_of(path: Path) -> int:
    return int(path.name[len(_SNAPSHOT_PREFIX):-len(_SNAPSHOT_SUFFIX)], 16)


class MemoryStorage:
    durable = False

    def snapshot_name(self, index: int) -> str:
        return f"the in-memory snapshot at {index}"

    def __init__(self) -> None:
        self._meta: dict[str, bytes] = {}
        self._snapshot: tuple[int, bytes] | None = None

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def put_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = value

    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        self._snapshot = (index, b"".join([part async for part in parts]))

    def load_snapshot(self) -> tuple[int, bytes] | None:
        return self._snapshot

    @contextmanager
    def open_snapshot(self) -> Iterator[tuple[int, bytes] | None]:
        yield self._snapshot

    def size_bytes(self) -> int:
        return 0

    async def close(self) -> None:
        pass
