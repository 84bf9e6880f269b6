"""The embedded durable log: records in an LMDB database in the member's data dir.

Every append is one LMDB write transaction on a single writer thread, so the event loop keeps
accepting proposals while the disk works (that is what makes group commit batch). Trimming keeps
the newest record, so the index goes on from it after a restart even when a snapshot covers
everything.

One sync per append, not two. A commit writes its pages, fdatasyncs them, then writes its meta
page (the page that makes the transaction the current one). LMDB's default syncs that meta page
too (a second sync); here it is left to the next commit's fdatasync, which covers it
(MDB_NOMETASYNC), and when no append follows within SYNC_IDLE the writer syncs it alone. So a
record is durable (its pages and the meta page naming them on stable storage) only after the
*next* sync: ``append``'s future says the record is written, and followers, hence the apply
loop and every acknowledgement, see it only once it is durable. A crash before that sync loses
at most unacknowledged records: LMDB falls back to the previous meta page, intact.

Each append is timed (etcd's disk histograms on /metrics): the commit, which writes the pages
and fsyncs, as etcd times its WAL's fsync; the whole write transaction as etcd times its
backend's commit. Three clock reads a record, whatever the entries in it.

Each record is stored behind its CRC-32 and checked whenever it is read back; the file's length
is checked before it is mapped (lmdb_file.py). Damage is a DataDirCorrupt naming the file.
"""
from __future__ import annotations

import asyncio
import os
import queue
import resource
import shutil
import struct
import threading
import time
import zlib
from collections import deque
from itertools import islice
from pathlib import Path

import lmdb

from .base import DataDirCorrupt, LogFull
from .durations import DurationHistogram
from .lmdb_file import check_data_file
from .local import LocalLog

_INDEX = struct.Struct(">Q")
_CRC = struct.Struct("<I")
# The records' layout, kept in the "meta" database: 2 is each record behind its CRC-32.
FORMAT = b"2"
# What LMDB says when the medium takes no more (py-lmdb gives the strerror, not the errno).
_FULL = ("No space left on device", "Disk quota exceeded", "File too large")
# A page write cut short by a full disk comes back as EIO; it is taken for a full medium when
# less than this much (beyond the record) is free.
_FULL_MARGIN = 1 << 20
# Records a snapshot covers are deleted this many per write transaction, so an append never
# waits behind the deletion of a whole snapshot's worth: about 1 ms of the writer a slice.
DROP_SLICE = 1_000
DEFRAG_DIR = "log-defrag"  # beside log/: where defragment writes the compacted copy
# How long the writer waits for the next append before it syncs the last commit's meta page
# alone (under load the next commit's sync covers it; idle, this bounds the wait for an ack).
SYNC_IDLE = 0.001
# The newest records appended are kept in memory too: the apply loop, which follows right
# behind, takes them from here instead of reading them back through a transaction of its own.
RECENT = 256


class LmdbLog(LocalLog):
    def __init__(self, data_dir: str | os.PathLike, map_size: int = 1 << 38):
        super().__init__()
        self.dir = Path(data_dir) / "log"
        self.name = str(self.dir / "data.mdb")
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        check_data_file(self.dir / "data.mdb")  # before the map: a short file is a SIGBUS
        shutil.rmtree(self.dir.parent / DEFRAG_DIR, ignore_errors=True)  # a defrag cut short
        self._map_size = map_size
        try:
            self._open_env()
            with self._env.begin(db=self._records_db) as txn:
                cur = txn.cursor()
                self._durable_last = _INDEX.unpack(cur.key())[0] if cur.last() else 0
            self._check_format()
        except lmdb.Error as e:
            raise DataDirCorrupt(f"{self.name}: {e}") from None
        self._next = self._durable_last + 1
        self._recent: deque[tuple[int, bytes]] = deque(maxlen=RECENT)  # consecutive indexes
        self._first: int | None = None  # first_index, until a trim changes it
        self._trims = 0  # trims finished: a first_index read across one is not kept
        self._trimming = False
        self.fsync_durations = DurationHistogram()  # etcd_disk_wal_fsync_duration_seconds
        self.commit_durations = DurationHistogram()  # etcd_disk_backend_commit_duration_seconds
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None  # the appenders', for the writer
        self._writer = threading.Thread(target=self._writer_thread, name="lmdb-log", daemon=True)
        self._writer.start()

    def _open_env(self) -> None:
        self._env = lmdb.open(str(self.dir), map_size=self._map_size, max_dbs=4,
                              subdir=True, sync=True, metasync=False, lock=True)
        self._records_db = self._env.open_db(b"entries")
        self._meta_db = self._env.open_db(b"meta")

    def _check_format(self) -> None:
        with self._env.begin(write=True, db=self._meta_db) as txn:
            found = txn.get(b"format")
            if found is None and self._durable_last:
                raise DataDirCorrupt(f"{self.name}: its records have no checksums (written by "
                                     f"an older kvstore)")
            if found is None:
                txn.put(b"format", FORMAT)
            elif found != FORMAT:
                raise DataDirCorrupt(f"{self.name}: record format {found!r} is not {FORMAT!r}")

    def append(self, record: bytes, record_id: str = "") -> asyncio.Future[int]:
        """The future is done once the record is written (committed); followers see it once it
        is durable, after the sync that covers its meta page."""
        index = self._next
        self._next += 1
        self._recent.append((index, record))
        return self._on_writer(self._write, index, record)

    def _write(self, index: int, record: bytes) -> int:
        clock = time.monotonic
        try:
            began = clock()
            with self._env.begin(write=True, db=self._records_db) as txn:
                txn.put(_INDEX.pack(index), _CRC.pack(zlib.crc32(record)) + record, append=True)
                put = clock()
            done = clock()  # committed: the pages written and synced
        except lmdb.MapFullError:
            raise LogFull(f"{self.name}: the map is full") from None
        except lmdb.Error as e:  # the transaction was aborted: nothing of it is in the file
            what = str(e).split(": ", 1)[-1]
            if what in _FULL:
                raise LogFull(f"{self.name}: {what}") from None
            if what == "Input/output error" and self._no_room(len(record)):
                raise LogFull(f"{self.name}: no space left (a page write was cut short)") from None
            raise
        self.fsync_durations.observe(done - put)
        self.commit_durations.observe(done - began)
        return index

    def _no_room(self, record_bytes: int) -> bool:
        """Whether the disk, or this process's file-size limit, leaves no room for a record."""
        need = record_bytes + _FULL_MARGIN
        st = os.statvfs(self.dir)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return (st.f_bavail * st.f_frsize < need or limit != resource.RLIM_INFINITY
                and os.path.getsize(self.name) + need > limit)

    def first_index(self) -> int:
        first = self._first
        if first is None:
            trims = self._trims
            with self._env.begin(db=self._records_db) as txn:
                cur = txn.cursor()
                first = _INDEX.unpack(cur.key())[0] if cur.first() else self._durable_last + 1
            if trims == self._trims and not self._trimming:  # no trim ran meanwhile
                self._first = first
        return first

    def read(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Raises DataDirCorrupt for a record that fails its checksum."""
        recent = self._recent
        start = max(start, self.first_index())  # as the cursor's set_range below would
        if recent and recent[0][0] <= start <= recent[-1][0]:  # just written: no transaction
            skip = start - recent[0][0]
            return list(islice(recent, skip, skip + limit))
        out: list[tuple[int, bytes]] = []
        with self._env.begin(db=self._records_db, buffers=True) as txn:
            cur = txn.cursor()
            if not cur.set_range(_INDEX.pack(start)):
                return out
            unpack, crc_of, crc32 = _INDEX.unpack, _CRC.unpack_from, zlib.crc32
            for k, v in cur:  # views into the map, valid until the cursor moves
                record = bytes(v[4:])
                if len(v) < 4 or crc32(record) != crc_of(v)[0]:
                    raise DataDirCorrupt(f"{self.name}: record {unpack(k)[0]} fails its checksum")
                out.append((unpack(k)[0], record))
                if len(out) == limit:
                    break
        return out

    async def trim(self, through: int) -> None:
        """Deletes the records up to ``through`` (but the newest) in slices, each one write
        job between appends."""
        while await self._on_writer(self._drop_through, through, DROP_SLICE):
            pass

    def _drop_through(self, through: int, limit: int) -> bool:
        """Deletes up to ``limit`` records <= through; True if more remain."""
        self._trimming = True  # first_index is read again once the deletion is committed
        self._first = None
        try:
            return self._drop_slice(through, limit)
        finally:
            self._trims += 1
            self._trimming = False
            self._first = None

    def _drop_slice(self, through: int, limit: int) -> bool:
        with self._env.begin(write=True, db=self._records_db) as txn:
            cur = txn.cursor()
            cur.last()
            through = min(through, _INDEX.unpack(cur.key())[0] - 1) if cur.key() else 0
            cur.first()
            for _ in range(limit):
                if not cur.key() or _INDEX.unpack(cur.key())[0] > through:
                    return False
                cur.delete()  # moves to the next record
            return bool(cur.key()) and _INDEX.unpack(cur.key())[0] <= through

    def size_bytes(self) -> int:
        total = 0
        for p in self.dir.iterdir():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def size_in_use(self) -> int:
        """The pages holding records and the databases' trees (the rest of the file is free
        pages LMDB reuses, which only defragment returns to the medium)."""
        env = self._env
        pages = 2  # the two meta pages
        with env.begin() as txn:
            for stat in (env.stat(), txn.stat(self._records_db), txn.stat(self._meta_db)):
                pages += stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        return pages * env.stat()["psize"]

    async def defragment(self) -> None:
        """Rewrites data.mdb without its free pages (LMDB's compacting copy) and puts the copy
        in its place. Appends wait meanwhile, as etcd's writes wait for its defragmentation:
        the writer thread makes the copy, then waits while the event loop swaps the files."""
        loop = asyncio.get_running_loop()
        copied = loop.create_future()
        swapped = threading.Event()
        tmp = self.dir.parent / DEFRAG_DIR
        job = self._on_writer(self._copy_compacted, tmp, loop, copied, swapped)
        try:
            await copied
            self._env.close()
            os.replace(tmp / "data.mdb", self.dir / "data.mdb")
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._open_env()
        finally:
            swapped.set()
            shutil.rmtree(tmp, ignore_errors=True)
        await job

    def _copy_compacted(self, tmp: Path, loop, copied: asyncio.Future, swapped: threading.Event) -> None:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            self._env.copy(str(tmp), compact=True)
            with open(tmp / "data.mdb", "rb") as f:
                os.fsync(f.fileno())
        except BaseException as e:
            loop.call_soon_threadsafe(_settle_future, copied, e)
            return
        loop.call_soon_threadsafe(_settle_future, copied, None)
        swapped.wait()  # no write job runs until the copy is in place

    # -- the writer thread ---------------------------------------------------------------------
    # One thread does every write, in the order asked, so the event loop never waits for the
    # disk. A plain queue and call_soon_threadsafe cost less per batch than an executor.

    def _on_writer(self, func, *args) -> asyncio.Future:
        loop = self._loop = asyncio.get_running_loop()  # only one loop appends
        fut = loop.create_future()
        self._jobs.put((loop, fut, func, args))
        return fut

    def _writer_thread(self) -> None:
        jobs = self._jobs
        unsynced = 0  # the newest record written whose meta page may not be on stable storage
        while True:
            if unsynced:
                try:
                    job = jobs.get(timeout=SYNC_IDLE)
                except queue.Empty:  # idle: sync the meta page alone
                    self._sync_meta(unsynced)
                    unsynced = 0
                    continue
            else:
                job = jobs.get()
            if job is None:
                if unsynced:
                    self._sync_meta(unsynced)
                return
            loop, fut, func, args = job
            if unsynced and func != self._write:  # trims and copies come after a durable log
                self._sync_meta(unsynced)
                unsynced = 0
            try:
                result = func(*args)
            except BaseException as e:  # an aborted commit synced nothing: unsynced stays so
                loop.call_soon_threadsafe(self._settle, fut, func, args, None, e, 0)
                continue
            durable = 0
            if func == self._write:
                durable = unsynced  # this commit's fdatasync covered the previous meta page
                unsynced = result
            loop.call_soon_threadsafe(self._settle, fut, func, args, result, None, durable)

    def _sync_meta(self, last: int) -> None:
        """Syncs the data file, the last commit's meta page with it: ``last`` is durable."""
        began = time.monotonic()
        try:
            self._env.sync(True)
        except BaseException as e:  # nothing more can be called durable: the member stops
            assert self._loop is not None  # set by the append being synced
            self._loop.call_soon_threadsafe(self._broken, DataDirCorrupt(
                f"{self.name}: sync failed: {e}"))
            return
        self.fsync_durations.observe(time.monotonic() - began)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._made_durable, last)

    def _settle(self, fut: asyncio.Future, func, args, result, exc, durable: int) -> None:
        if durable:
            self._made_durable(durable)
        if func == self._write and exc is not None:
            self._next = args[0]  # not appended: the next append takes its index
            recent = self._recent
            while recent and recent[-1][0] >= self._next:
                recent.pop()
        if fut.cancelled():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._env.close()


def _settle_future(fut: asyncio.Future, exc: BaseException | None) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
