"""The embedded durable log: records in an LMDB database in the member's data dir, behind two
write-ahead files.

A record is durable once it is appended to the active write-ahead file and synced (one write,
one fdatasync: wal_file.py says why not an LMDB commit per record). Records reach LMDB in
batches, a *checkpoint* about every CHECKPOINT_INTERVAL, as etcd's backend commits behind its
WAL; a restart puts the records the files hold beyond LMDB's newest into LMDB before anything
reads the log (if LMDB cannot take them, a full medium, they stay in the files and memory, and
appends go on after them). Appends run on the write-ahead files' own thread (wal_writer.py),
one at a time; checkpoints, trims and defragment's copy on the writer thread, in order. So the
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
from .wal_file import FILES as WAL_FILES, WalFiles, chain_end, recover

logger = logging.getLogger(__name__)
_INDEX = struct.Struct(">Q")
_CRC = struct.Struct("<I")
# What LMDB raises for a file it cannot trust, not for a medium that takes no more.
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError,
           lmdb.VersionMismatchError, lmdb.InvalidError, lmdb.BadChecksumError)
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
        except lmdb.Error as e:
            raise DataDirCorrupt(f"{self.name}: {e}") from None
        wal_contents = WalFiles.read_all(self.dir)
        recovered = recover(wal_contents, self._durable_last, str(self.dir))
        self._in_lmdb = self._durable_last  # LMDB's newest record
        lacking = False  # recovered records LMDB could not take
        if recovered and not read_only:  # durable, acknowledged perhaps: into LMDB first
            try:
                self._put_records(recovered)
            except _DAMAGE as e:
                raise DataDirCorrupt(f"{self.name}: {e}") from None
            except lmdb.Error as e:  # a full medium: they stay in the files, LMDB takes them later
                logger.warning("%s: records stay in the write-ahead files: %s", self.name, e)
                lacking = True
        if recovered:
            self._durable_last = recovered[-1][0]
            if not lacking and not read_only:
                self._in_lmdb = self._durable_last
        self._next = self._durable_last + 1
        # The newest records (consecutive): all LMDB lacks, and at least RECENT.
        self._in_memory: deque[tuple[int, bytes]] = deque(
            recovered if read_only or lacking else ())
        self._first: int | None = None  # first_index, until a trim changes it
        self._trims = 0  # trims finished: a first_index read across one is not kept
        self._trimming = False
        self._checkpoint_failures = 0  # in a row: the first is logged
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # for the writer thread
        self._loop: asyncio.AbstractEventLoop | None = None  # the appenders'
        # Appends queued, the first one in flight: (index, record, future).
        self._appends: deque[tuple[int, bytes, asyncio.Future[int]]] = deque()
        # The records LMDB lacks are those after _in_lmdb (all in _in_memory). The active
        # write-ahead file holds those from _switched_at on; the ones before it may be in the
        # other file, which is not written over until LMDB holds them.
        self._switched_at = self._durable_last + 1
        self._checkpoint_job: asyncio.Future | None = None
        self._timer = False  # a checkpoint is timed
        self._due = lacking  # a checkpoint is due, once the append in flight is done
        self._writer: threading.Thread | None = None
        if not read_only:
            # Appends go on after the records LMDB lacks, in the file holding the newest.
            self._wal = WalFiles(self.dir, *(chain_end(wal_contents, self._durable_last)
                                             if lacking else (0, 0)))
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
        loop = self._loop or self._bind_loop()
        fut = loop.create_future()
        self._appends.append((index, record, fut))
        if len(self._appends) == 1:
            self._submit()
        return fut

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        """The appenders' loop (one loop appends): it hears of finished appends."""
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self._wal.fileno(), self._on_appended)
        if self._due:  # records recovered at the start are not in LMDB yet
            loop.call_soon(self._checkpoint_due)
        return loop

    def _submit(self) -> None:
        """Starts the first queued append (none is in flight)."""
        index, record, _ = self._appends[0]
        if self._wal.full(len(record)) and self._checkpoint_job is None:
            self._start_checkpoint()
        self._wal.submit(index, record)

    def _on_appended(self) -> None:
        try:
            seconds = self._wal.take()
        except BaseException as e:  # LogFull, or a failed sync: nothing queued is appended
            failed = list(self._appends)
            self._appends.clear()
            self._next = failed[0][0]  # the next append takes the first one's index
            held = self._in_memory
            while held and held[-1][0] >= self._next:
                held.pop()
            for _, _, fut in failed:
                if not fut.cancelled():
                    fut.set_exception(e)
            return
        if seconds is None:
            return
        self.fsync_durations.observe(seconds)
        index, _, fut = self._appends.popleft()
        if not self._timer:
            self._time_checkpoint()
        self._made_durable(index)
        if not fut.cancelled():
            fut.set_result(index)
        if self._due and self._checkpoint_job is None:
            self._start_checkpoint()
        if self._appends:
            self._submit()

    def _time_checkpoint(self) -> None:
        assert self._loop is not None
        self._timer = True
        self._loop.call_later(CHECKPOINT_INTERVAL, self._checkpoint_due)

    def _checkpoint_due(self) -> None:
        self._timer = False
        self._due = True
        if not self._appends and self._checkpoint_job is None:  # else once the append is done
            self._start_checkpoint()

    def _start_checkpoint(self) -> None:
        """Hands the records LMDB lacks to the writer thread (no append is in flight). The other
        file takes the appends from here on if everything it holds is in LMDB."""
        self._due = False
        last = self._durable_last
        if self._in_lmdb >= last:
            return
        if self._in_lmdb >= self._switched_at - 1:  # else a checkpoint failed: the other file
            self._wal.switch()                       # still holds records LMDB lacks
            self._switched_at = last + 1
        job = self._checkpoint_job = self._on_writer(self._checkpoint, self._lacking())
        job.add_done_callback(self._checkpointed)

    def _lacking(self) -> list[tuple[int, bytes]]:
        """The durable records LMDB lacks (not those of appends still queued)."""
        held = self._in_memory
        skip = self._in_lmdb + 1 - held[0][0]
        return list(islice(held, skip, skip + self._durable_last - self._in_lmdb))

    def _checkpoint(self, records: list[tuple[int, bytes]]) -> int:
        """On the writer thread: the newest record put into LMDB, or 0 if LMDB took none (a
        full medium: they stay where they are, durable)."""
        try:
            self._put_records(records)
        except lmdb.Error as e:  # MapFull, or the medium: a later checkpoint retries
            if self._checkpoint_failures == 0:
                logger.warning("%s: records stay in the write-ahead files: %s", self.name, e)
            self._checkpoint_failures += 1
            return 0
        self._checkpoint_failures = 0
        return records[-1][0]

    def _checkpointed(self, job: asyncio.Future) -> None:
        self._checkpoint_job = None
        through = 0 if job.cancelled() or job.exception() is not None else job.result()
        if through:
            self._in_lmdb = through
            held = self._in_memory
            while len(held) > RECENT and held[0][0] <= through:
                held.popleft()
            if self._due and not self._appends:  # came due meanwhile
                self._start_checkpoint()
        elif not self._timer:  # try again later
            self._time_checkpoint()

    def _put_records(self, records: list[tuple[int, bytes]]) -> None:
        """Commits records to LMDB in one transaction (synced: LMDB's two syncs)."""
        began = time.monotonic()
        pack, crc_of, crc32 = _INDEX.pack, _CRC.pack, zlib.crc32
        with self._env.begin(write=True, db=self._records_db) as txn:
            # putmulti: LMDB's loop in C (a quarter less CPU than a put per record)
            _, added = txn.cursor().putmulti(
                [(pack(index), crc_of(crc32(record)) + record) for index, record in records],
                append=True)
            if added != len(records):  # an index at or below LMDB's newest: never appended
                raise lmdb.Error(f"{len(records) - added} of {len(records)} records not appended")
        self.commit_durations.observe(time.monotonic() - began)

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
        await self._checkpoint_through(through)
        while await self._on_writer(self._drop_through, through, DROP_SLICE):
            pass

    async def _checkpoint_through(self, through: int) -> None:
        """Puts the records up to ``through`` into LMDB (a trim deletes from LMDB)."""
        while self._in_lmdb < min(through, self._durable_last):
            if self._checkpoint_job is None:
                self._checkpoint_due()  # now, or once the append in flight is done
            job = self._checkpoint_job
            if job is None:
                await asyncio.wait([self._appends[0][2]])
                continue
            await asyncio.wait([job])
            if job.cancelled() or job.exception() is not None or not job.result():
                return  # LMDB takes no more now: trim what it holds

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
        in its place. Checkpoints wait meanwhile (appends go on into the write-ahead files):
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
    # Checkpoints, trims and defragment's copy run on one thread, in the order asked, so the
    # event loop never waits for LMDB. (Appends run on the write-ahead files' own thread.)

    def _on_writer(self, func, *args) -> asyncio.Future:
        loop = self._loop or self._bind_loop()
        fut = loop.create_future()
        self._jobs.put((loop, fut, func, args))
        return fut

    def _writer_thread(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            loop, fut, func, args = job
            try:
                result = func(*args)
            except BaseException as e:
                loop.call_soon_threadsafe(_settle_future, fut, e)
            else:
                loop.call_soon_threadsafe(_settle_future, fut, None, result)

    async def close(self) -> None:
        """Finishes the appends queued and puts every record into LMDB (what a full medium
        refuses stays in the write-ahead files: the next start takes it from there)."""
        if self._writer is not None:
            while self._appends:
                await asyncio.wait([self._appends[-1][2]])
            if self._checkpoint_job is not None:
                await asyncio.wait([self._checkpoint_job])
            if self._in_lmdb < self._durable_last:
                await self._on_writer(self._checkpoint, self._lacking())
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            if self._loop is not None:
                self._loop.remove_reader(self._wal.fileno())
            self._wal.close()
        self._env.close()


def _settle_future(fut: asyncio.Future, exc: BaseException | None, result=None) -> None:
    if not fut.done():
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
