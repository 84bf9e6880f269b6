"""Member storage: a member's own durable facts and its snapshots, in its data dir or in memory.

In a data dir: ``lock`` (held while a process uses the dir), ``meta`` (a msgpack map, replaced
atomically), and ``snapshot-<index>.snap`` files. A file is written to a temporary name,
fsynced, renamed into place, then the directory is fsynced: a crash leaves the previous
snapshot or the new one, never half of one.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack

_SNAPSHOT_PREFIX = "snapshot-"
_SNAPSHOT_SUFFIX = ".snap"


class DataDirInUse(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
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
    _fsync_dir(path.parent)


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
        meta_path = self.dir / "meta"
        self._meta: dict[str, bytes] = (msgpack.unpackb(meta_path.read_bytes())
                                        if meta_path.exists() else {})

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def put_meta(self, key: str, value: bytes) -> None:
        self._meta[key] = value
        _write_durably(self.dir / "meta", msgpack.packb(self._meta))

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshot_paths(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir()
                      if p.name.startswith(_SNAPSHOT_PREFIX) and p.name.endswith(_SNAPSHOT_SUFFIX))

    def newest_snapshot_index(self) -> int:
        paths = self._snapshot_paths()
        return _index_of(paths[-1]) if paths else 0

    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        """Writes the file part by part as the parts are made, on executor threads (the event
        loop goes on meanwhile)."""
        loop = asyncio.get_running_loop()
        final = self.dir / f"{_SNAPSHOT_PREFIX}{index:016x}{_SNAPSHOT_SUFFIX}"
        tmp = final.with_suffix(".tmp")
        f = await loop.run_in_executor(None, open, tmp, "wb")
        try:
            async for part in parts:
                await loop.run_in_executor(None, f.write, part)
            await loop.run_in_executor(None, self._finish_snapshot_file, f, tmp, final)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise

    def _finish_snapshot_file(self, f, tmp: Path, final: Path) -> None:
        """Makes the written file durable and the newest snapshot; removes older ones."""
        with f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        for old in self._snapshot_paths()[:-1]:
            old.unlink(missing_ok=True)

    def load_snapshot(self) -> tuple[int, bytes] | None:
        paths = self._snapshot_paths()
        if not paths:
            return None
        return _index_of(paths[-1]), paths[-1].read_bytes()

    def size_bytes(self) -> int:
        total = 0
        for p in self._snapshot_paths():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    async def close(self) -> None:
        self._lock_file.close()


def _index_of(path: Path) -> int:
    return int(path.name[len(_SNAPSHOT_PREFIX):-len(_SNAPSHOT_SUFFIX)], 16)


class MemoryStorage:
    durable = False

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

    def size_bytes(self) -> int:
        return 0

    async def close(self) -> None:
        pass
