"""The embedded durable log: records in an LMDB database in the member's data dir, behind two
write-ahead files.

A record is durable once it is appended to the active write-ahead file and synced (one write,
one fdatasync: wal_file.py says why not an LMDB commit per record). Records reach LMDB in
batches, a *checkpoint* about every CHECKPOINT_INTERVAL, as etcd's backend commits behind its
WAL; a restart puts the records the files hold beyond LMDB's newest into LMDB before anything
reads the log. Every write (append, checkpoint, trim) runs on a single writer thread, so the
event loop keeps accepting proposals while the disk works (that is what makes group commit
batch). Trimming keeps LMDB's newest record, so the index goes on from it after a restart even
when a snapshot covers everything.

Each append is timed (etcd's disk histograms on /metrics): the append and its sync, as etcd times
its WAL's fsync; each checkpoint's transaction, as etcd times its backend's commit.

Each record is stored behind its CRC-32 and checked whenever it is read back; the file's length
is checked before it is mapped (lmdb_file.py). Damage is a DataDirCorrupt naming the file.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import struct
import threading
import time
import zlib
from collections import deque
from itertools import islice
from pathlib import Path

import lmdb

from .base import DataDirCorrupt
from .durations import DurationHistogram
from .lmdb_file import check_data_file
from .local import LocalLog
from .storage import fsync_dir
from .wal_file import FILES as WAL_FILES, WalFiles, recover

logger = logging.getLogger(__name__)
_INDEX = struct.Struct(">Q")
_CRC = struct.Struct("<I")
# The records' layout, kept in the "meta" database: 2 is each record behind its CRC-32.
FORMAT = b"2"
# Records a snapshot covers are deleted this many per write transaction, so an append never
# waits behind the deletion of a whole snapshot's worth: about 1 ms of the writer a slice.
DROP_SLICE = 1_000
DEFRAG_DIR = "log-defrag"  # beside log/: where defragment writes the compacted copy
# Records appended to the write-ahead file reach LMDB at most this long after the first of them
# (etcd's backend batch interval), or sooner when the file passes wal_file.SWITCH_BYTES.
CHECKPOINT_INTERVAL = 0.1
# Records appended are kept in memory until their checkpoint, and the newest RECENT of them
# after it too: the apply loop, which follows right behind, takes them from memory instead of
# reading them back through a transaction of its own.
RECENT = 256


class LmdbLog(LocalLog):
    def __init__(self, data_dir: str | os.PathLike, map_size: int = 1 << 38,
                 read_only: bool = False):
        """``read_only`` (kvstore check): records the write-ahead files hold beyond LMDB are
        read from memory instead of being put into LMDB, and nothing can be appended."""
        super().__init__()
        self.dir = Path(data_dir) / "log"
        self.name = str(self.dir / "data.mdb")
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        check_data_file(self.dir / "data.mdb")  # before the map: a short file is a SIGBUS
        shutil.rmtree(self.dir.parent / DEFRAG_DIR, ignore_errors=True)  # a defrag cut short
        self._map_size = map_size
        self.fsync_durations = DurationHistogram()  # etcd_disk_wal_fsync_duration_seconds
        self.commit_durations = DurationHistogram()  # etcd_disk_backend_commit_duration_seconds
        try:
            self._open_env()
            with self._env.begin(db=self._records_db) as txn:
                cur = txn.cursor()
                self._durable_last = _INDEX.unpack(cur.key())[0] if cur.last() else 0
            self._check_format()
            recovered = recover(WalFiles.read_all(self.dir), self._durable_last, str(self.dir))
            if recovered and not read_only:  # durable, acknowledged perhaps: into LMDB first
                self._put_records(recovered)
        except lmdb.Error as e:
            raise DataDirCorrupt(f"{self.name}: {e}") from None
        if recovered:
            self._durable_last = recovered[-1][0]
        self._next = self._durable_last + 1
        # The newest records (consecutive): all LMDB lacks, and at least RECENT.
        self._in_memory: deque[tuple[int, bytes]] = deque(recovered if read_only else ())
        self._first: int | None = None  # first_index, until a trim changes it
        self._trims = 0  # trims finished: a first_index read across one is not kept
        self._trimming = False
        self._checkpoint_failures = 0  # in a row: the first is logged
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None  # the appenders', for the writer
        self._writer: threading.Thread | None = None
        if not read_only:
            self._wal = WalFiles(self.dir)
            self._writer = threading.Thread(target=self._writer_thread, name="lmdb-log",
                                            daemon=True)
            self._writer.start()

    def _open_env(self) -> None:
        self._env = lmdb.open(str(self.dir), map_size=self._map_size, max_dbs=4,
                              subdir=True, sync=True, metasync=True, lock=True)
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
        """The future is done once the record is durable (in the write-ahead file, synced)."""
        index = self._next
        self._next += 1
        self._in_memory.append((index, record))
        return self._on_writer(self._write, index, record)

    def _write(self, index: int, record: bytes) -> int:
        began = time.monotonic()
        self._wal.append(index, record)  # LogFull when the medium takes no more
        self.fsync_durations.observe(time.monotonic() - began)
        return index

    def _put_records(self, records: list[tuple[int, bytes]]) -> None:
        """Commits records to LMDB in one transaction (synced: LMDB's two syncs)."""
        began = time.monotonic()
        with self._env.begin(write=True, db=self._records_db) as txn:
            put, pack, crc_of, crc32 = txn.put, _INDEX.pack, _CRC.pack, zlib.crc32
            for index, record in records:
                put(pack(index), crc_of(crc32(record)) + record, append=True)
        self.commit_durations.observe(time.monotonic() - began)

    def _checkpoint(self, pending: list[tuple[int, bytes]]) -> bool:
        """Moves the records only the active write-ahead file holds into LMDB, then switches
        files. False if LMDB took none (a full medium: they stay where they are, durable)."""
        try:
            self._put_records(pending)
        except lmdb.Error as e:  # MapFull, or the medium: the file goes on; a later one retries
            if self._checkpoint_failures == 0:
                logger.warning("%s: records stay in the write-ahead file: %s", self.name, e)
            self._checkpoint_failures += 1
            return False
        self._checkpoint_failures = 0
        self._wal.switch()
        assert self._loop is not None  # set by the appends being checkpointed
        self._loop.call_soon_threadsafe(self._flushed, pending[-1][0])
        return True

    def _flushed(self, through: int) -> None:
        held = self._in_memory
        while len(held) > RECENT and held[0][0] <= through:
            held.popleft()

    def first_index(self) -> int:
        first = self._first
        if first is None:
            trims = self._trims
            with self._env.begin(db=self._records_db) as txn:
                cur = txn.cursor()
                first = _INDEX.unpack(cur.key())[0] if cur.first() else None
            if first is None:  # nothing in LMDB yet: not kept, the first checkpoint changes it
                return self._in_memory[0][0] if self._in_memory else self._durable_last + 1
            if trims == self._trims and not self._trimming:  # no trim ran meanwhile
                self._first = first
        return first

    def read(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Raises DataDirCorrupt for a record that fails its checksum."""
        held = self._in_memory
        start = max(start, self.first_index())  # as the cursor's set_range below would
        if held and held[0][0] <= start <= held[-1][0]:  # no transaction
            last = held[-1][0]
            if last - start < limit:  # up to the newest (a follower's usual read): from the end
                newest = list(islice(reversed(held), last - start + 1))
                newest.reverse()
                return newest
            skip = start - held[0][0]
            return list(islice(held, skip, skip + limit))
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
        """LMDB's files, not the write-ahead files: etcd's dbSize is its backend's file, not
        its WAL (the write-ahead files stay about wal_file.SWITCH_BYTES each)."""
        total = 0
        for p in self.dir.iterdir():
            if p.name in WAL_FILES:
                continue
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
            fsync_dir(self.dir)
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
        wal = self._wal
        pending: list[tuple[int, bytes]] = []  # in the active write-ahead file, not in LMDB
        due = 0.0  # when pending goes to LMDB

        def checkpoint() -> None:
            nonlocal pending, due
            if self._checkpoint(pending):
                pending = []
            else:  # the medium is full: try again in a while, the records are durable
                due = time.monotonic() + CHECKPOINT_INTERVAL

        while True:
            if pending:
                try:
                    job = jobs.get(timeout=max(0.0, due - time.monotonic()))
                except queue.Empty:
                    checkpoint()
                    continue
            else:
                job = jobs.get()
            if job is None:
                if pending:
                    self._checkpoint(pending)
                return
            loop, fut, func, args = job
            if pending and (func != self._write or wal.full(len(args[1]))):
                checkpoint()  # trims and copies see every record in LMDB; a full file switches
            try:
                result = func(*args)
            except BaseException as e:
                loop.call_soon_threadsafe(self._settle, fut, func, args, None, e)
                continue
            if func == self._write:
                if not pending:
                    due = time.monotonic() + CHECKPOINT_INTERVAL
                pending.append(args)
            loop.call_soon_threadsafe(self._settle, fut, func, args, result, None)
            if pending and time.monotonic() >= due:
                checkpoint()  # after the acknowledgement has gone

    def _settle(self, fut: asyncio.Future, func, args, result, exc) -> None:
        if func == self._write:
            if exc is None:
                self._made_durable(result)
            else:
                self._next = args[0]  # not appended: the next append takes its index
                held = self._in_memory
                while held and held[-1][0] >= self._next:
                    held.pop()
        if fut.cancelled():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._wal.close()
        self._env.close()


def _settle_future(fut: asyncio.Future, exc: BaseException | None) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
