"""The embedded durable log: entries in an LMDB database, snapshots beside it as files.

Every append is one LMDB write transaction, committed with fsync, on a single writer thread so
the event loop keeps accepting proposals while the disk works (that is what makes group commit
batch). Snapshots are written to a temporary file, fsynced, then renamed into place.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import struct
import threading
from pathlib import Path
from typing import AsyncIterator, Iterator

import lmdb

from .base import Log

_INDEX = struct.Struct(">Q")
_SNAPSHOT_PREFIX = "snapshot-"
_SNAPSHOT_SUFFIX = ".snap"
# Entries a snapshot covers are deleted this many per write transaction, so an append never
# waits behind the deletion of a whole snapshot's worth (100,000 by default).
DROP_SLICE = 5_000


class DataDirInUse(RuntimeError):
    pass


class LmdbLog(Log):
    def __init__(self, data_dir: str | os.PathLike, map_size: int = 1 << 38):
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.dir / "lock", "wb")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirInUse(f"data dir {self.dir} is in use by another process") from None
        self._env = lmdb.open(str(self.dir / "log"), map_size=map_size, max_dbs=4,
                              subdir=True, sync=True, metasync=True, lock=True)
        self._entries_db = self._env.open_db(b"entries")
        self._meta_db = self._env.open_db(b"meta")
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._writer_thread, name="lmdb-log", daemon=True)
        self._writer.start()
        with self._env.begin(db=self._entries_db) as txn:
            cur = txn.cursor()
            self._last = _INDEX.unpack(cur.key())[0] if cur.last() else 0
        snap = self._newest_snapshot_path()
        if self._last == 0 and snap is not None:
            self._last = int(snap.name[len(_SNAPSHOT_PREFIX):-len(_SNAPSHOT_SUFFIX)], 16)

    @property
    def durable(self) -> bool:
        return True

    @property
    def last_index(self) -> int:
        return self._last

    async def append(self, entries: list[bytes]) -> int:
        first = self._last + 1
        self._last += len(entries)
        await self._on_writer(self._write, first, entries)
        return first + len(entries) - 1

    def _write(self, first: int, entries: list[bytes]) -> None:
        pack = _INDEX.pack
        with self._env.begin(write=True, db=self._entries_db) as txn:
            txn.cursor().putmulti([(pack(i), entry) for i, entry in enumerate(entries, first)],
                                  append=True)

    # -- the writer thread ---------------------------------------------------------------------
    # One thread does every write, in the order asked, so the event loop never waits for the
    # disk. A plain queue and call_soon_threadsafe cost less per batch than an executor.

    def _on_writer(self, func, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, func, args))
        return fut

    def _writer_thread(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, fut, func, args = job
            try:
                result = func(*args)
            except BaseException as e:
                loop.call_soon_threadsafe(_settle, fut, None, e)
            else:
                loop.call_soon_threadsafe(_settle, fut, result, None)

    def replay(self, after: int) -> Iterator[tuple[int, bytes]]:
        with self._env.begin(db=self._entries_db, buffers=False) as txn:
            cur = txn.cursor()
            if not cur.set_range(_INDEX.pack(after + 1)):
                return
            for k, v in cur:
                yield _INDEX.unpack(k)[0], v

    # -- snapshots -----------------------------------------------------------------------------

    def _snapshot_paths(self) -> list[Path]:
        return sorted(p for p in self.dir.iterdir()
                      if p.name.startswith(_SNAPSHOT_PREFIX) and p.name.endswith(_SNAPSHOT_SUFFIX))

    def _newest_snapshot_path(self) -> Path | None:
        paths = self._snapshot_paths()
        return paths[-1] if paths else None

    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        """Writes the snapshot file part by part as the parts are made, on executor threads
        (appends go on meanwhile), then drops the entries it covers in slices, each one write
        job between appends."""
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
        while await self._on_writer(self._drop_through, index, DROP_SLICE):
            pass

    def _finish_snapshot_file(self, f, tmp: Path, final: Path) -> None:
        """Makes the written file durable and the newest snapshot; removes older ones."""
        with f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        for old in self._snapshot_paths()[:-1]:
            old.unlink(missing_ok=True)

    def _drop_through(self, index: int, limit: int) -> bool:
        """Deletes up to ``limit`` entries <= index (a snapshot covers them); True if more remain."""
        with self._env.begin(write=True, db=self._entries_db) as txn:
            cur = txn.cursor()
            cur.first()
            for _ in range(limit):
                if not cur.key() or _INDEX.unpack(cur.key())[0] > index:
                    return False
                cur.delete()  # moves to the next entry
            return bool(cur.key()) and _INDEX.unpack(cur.key())[0] <= index

    def load_snapshot(self) -> tuple[int, bytes] | None:
        path = self._newest_snapshot_path()
        if path is None:
            return None
        index = int(path.name[len(_SNAPSHOT_PREFIX):-len(_SNAPSHOT_SUFFIX)], 16)
        return index, path.read_bytes()

    # -- member metadata -----------------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        with self._env.begin(db=self._meta_db) as txn:
            return txn.get(key.encode())

    def put_meta(self, key: str, value: bytes) -> None:
        with self._env.begin(write=True, db=self._meta_db) as txn:
            txn.put(key.encode(), value)

    def size_bytes(self) -> int:
        total = 0
        for p in [*(self.dir / "log").iterdir(), *self._snapshot_paths()]:
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._env.close()
        self._lock_file.close()


def _settle(fut: asyncio.Future, result, exc) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
