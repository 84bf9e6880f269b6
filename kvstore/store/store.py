"""The Store: one keyspace's MVCC state behind its log. This is the embedded library.

Writes: validate -> encode -> propose (group commit into the log) -> apply in log order ->
answer. Reads: straight from MVCC, which already holds every acknowledged write. Recovery:
newest snapshot, then replay of the log after it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time

from .. import errors
from ..limits import DEFAULT_MAX_REQUEST_BYTES
from ..api import rpc_pb2 as pb
from ..log import Log, open_log
from ..mvcc import MVCCStore
from ..mvcc.core import wire
from ..mvcc.wire import varint
from ..mvcc.lease import DEFAULT_MIN_TTL, LeaseTable, live_kvs
from ..mvcc.watch_hub import WatchHub
from . import entry, snapshot, validate
from .apply import Applier
from .identity import Identity, load_identity
from .proposer import Proposer
from .range_stream import range_chunks
from .snapshot import Capture
from .watch_stream import DeliveryCache, WatchStream

log = logging.getLogger(__name__)

DEFAULT_ETCD_VERSION = "3.5.21"
DEFAULT_MAX_TXN_OPS = 128
DEFAULT_SNAPSHOT_COUNT = 100_000  # etcd's default --snapshot-count
# Key indexes compacted per turn of the loop (~2-5 ms): a compaction's cost comes in slices.
COMPACT_SLICE_KEYS = 10_000
DEFAULT_PROGRESS_NOTIFY_INTERVAL = 600.0  # etcd's 10 minutes
LEASE_CHECK_INTERVAL = 0.5  # etcd checks for expired leases every 500 ms
# What a member that becomes leader adds to every lease's TTL (etcd: lessor.Promote(election
# timeout), 1 s by default): recovered leases get their TTL plus this.
LEASE_PROMOTE_EXTENSION = 1.0


def etcd_proposal_size(request_size: int) -> int:
    """What etcd compares with --max-request-bytes for a request of this encoded size.

    etcd measures the InternalRaftRequest it proposes: the request as a length-delimited
    field, plus a RequestHeader holding a 64-bit request id (up to a 10-byte varint, its size
    depending on the member id; the largest is taken so the limit never depends on ids).
    """
    header = 2 + 1 + 1 + 10  # field 100 tag, length, id tag, id
    return header + 1 + len(varint(request_size)) + request_size


def largest_request(max_request_bytes: int) -> int:
    """The largest encoded request whose etcd_proposal_size is within ``max_request_bytes``
    (the size grows with the request, so one comparison per write replaces the computation)."""
    n = max_request_bytes
    while n > 0 and etcd_proposal_size(n) > max_request_bytes:
        n -= 1
    return n


class Store:
    def __init__(self, wal: Log, *, name: str = "default", max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_txn_ops: int = DEFAULT_MAX_TXN_OPS, snapshot_count: int = DEFAULT_SNAPSHOT_COUNT,
                 etcd_version: str = DEFAULT_ETCD_VERSION, client_urls: list[str] | None = None,
                 progress_notify_interval: float = DEFAULT_PROGRESS_NOTIFY_INTERVAL,
                 min_lease_ttl: int = DEFAULT_MIN_TTL):
        self.log = wal
        self.name = name
        self.max_request_bytes = max_request_bytes
        self._max_request_size = largest_request(max_request_bytes)
        self.max_txn_ops = max_txn_ops
        self.snapshot_count = snapshot_count
        self.etcd_version = etcd_version
        self.client_urls = list(client_urls or [])
        self.progress_notify_interval = progress_notify_interval
        self.leases = LeaseTable(min_lease_ttl)
        self._set_mvcc(MVCCStore())
        self.watch_streams: set[WatchStream] = set()
        self.applied_index = 0
        self.snapshot_index = 0
        self.identity: Identity | None = None
        self._proposer: Proposer | None = None
        self._timers: list[asyncio.Task] = []
        self._revoking: set[int] = set()
        self._snapshot_task: asyncio.Task | None = None
        self._compactor: asyncio.Task | None = None
        self.watch_delivery = DeliveryCache(self.header_bytes)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._header_cache: tuple[int, bytes] = (-1, b"")

    def _set_mvcc(self, mvcc: MVCCStore) -> None:
        self.mvcc = mvcc
        mvcc.observers.append(self.leases.on_commit)
        self.watch_hub = WatchHub(mvcc)
        self.applier = Applier(mvcc, self.leases)

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    async def open(cls, backend: str = "memory", data_dir: str | os.PathLike | None = None,
                   **options) -> "Store":
        """Opens (recovering if there is state) and starts a store on a log backend."""
        store = cls(open_log(backend, data_dir), **options)
        await store.start()
        return store

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.identity = load_identity(self.log, self.name)
        self._recover()
        now = time.monotonic()
        for lease in self.leases.leases.values():  # as after an etcd leader change: full TTLs
            lease.expiry = now + lease.ttl + LEASE_PROMOTE_EXTENSION
        self._proposer = Proposer(self.log, self._apply_and_fill, after_batch=self._maybe_snapshot)
        self._proposer.start()
        self._timers = [asyncio.create_task(self._expire_leases(), name="lease-expiry"),
                        asyncio.create_task(self._progress_notify(), name="watch-progress")]

    def _recover(self) -> None:
        snap = self.log.load_snapshot()
        if snap is not None:
            index, data = snap
            mvcc, leases = snapshot.parse(data)
            self.leases.load(leases, live_kvs(mvcc.index))
            self._set_mvcc(mvcc)
            self.applied_index = self.snapshot_index = index
        replayed = 0
        for index, data in self.log.replay(self.applied_index):
            kind, request = entry.decode(data)
            try:
                self._apply_entry(index, kind, request)
            except errors.EtcdError:
                pass  # the same error was answered when the entry was first applied
            replayed += 1
        log.info("recovered: snapshot at %d, %d entries replayed, revision %d",
                 self.snapshot_index, replayed, self.mvcc.current_rev)

    async def close(self) -> None:
        for task in self._timers:
            task.cancel()
        if self._compactor is not None:
            self._compactor.cancel()  # the log replays the compaction at the next start
        for stream in list(self.watch_streams):
            stream.close()
        if self._proposer is not None:
            await self._proposer.close()
            self._proposer = None
        if self._snapshot_task is not None:
            await self._snapshot_task
        await self.log.close()

    # -- apply ---------------------------------------------------------------------------------

    def _apply_entry(self, index: int, kind: int, request):
        self.applied_index = index
        a = self.applier
        if kind == entry.PUT:
            return a.put(request, header=self.header_bytes)
        if kind == entry.DELETE_RANGE:
            return a.delete_range(request, header=self.header_bytes)
        if kind == entry.TXN:
            return a.txn(request, header=self.header_bytes)
        if kind == entry.COMPACT:
            resp = a.compact(request)
            self._schedule_compaction()
            return resp
        if kind == entry.LEASE_GRANT:
            return a.lease_grant(request)
        if kind == entry.LEASE_REVOKE:
            return a.lease_revoke(request)
        raise errors.Corrupt(f"etcdserver: unknown log entry kind {kind}")

    async def _maybe_snapshot(self) -> None:
        """After each batch: starts a snapshot when one is due. Its cheap part is taken here, at
        a batch boundary; the rest runs beside the proposer, which keeps committing."""
        if (self.log.durable and self._snapshot_task is None and not self.mvcc.compacting
                and self.applied_index - self.snapshot_index >= self.snapshot_count):
            capture = Capture(self.mvcc, self.leases.dump(), self.applied_index)
            self._snapshot_task = self.loop.create_task(self._save_snapshot(capture), name="snapshot")

    async def _save_snapshot(self, capture: Capture, background: bool = True) -> None:
        index = capture.index
        try:
            while True:
                try:
                    await self.log.save_snapshot(index, capture.parts(lambda: self.mvcc))
                    break
                except snapshot.Overtaken:
                    if background:
                        return  # the next batch tries again
                # Any other task runs between batches, so a capture taken here is consistent.
                capture = Capture(self.mvcc, self.leases.dump(), self.applied_index)
                index = capture.index
            self.snapshot_index = index
        except Exception:
            if not background:
                raise
            log.exception("snapshot at %d failed; the log keeps its entries", index)
        finally:
            self._snapshot_task = None

    async def snapshot(self) -> None:
        """Saves the applied state now, so replay starts here (the log drops what it covers)."""
        while self._snapshot_task is not None:
            await asyncio.shield(self._snapshot_task)
        await self._compaction_done()  # a capture refuses key indexes still being compacted
        capture = Capture(self.mvcc, self.leases.dump(), self.applied_index)
        self._snapshot_task = self.loop.create_task(self._save_snapshot(capture, background=False),
                                                    name="snapshot")
        await self._snapshot_task

    def _propose(self, kind: int, request) -> asyncio.Future:
        """Queues a write; the future gets its response, header filled, once it is durable and
        applied. A plain future rather than a coroutine: one frame less to resume per write."""
        data = entry.encode(kind, request)
        if len(data) - 1 > self._max_request_size:
            raise errors.RequestTooLarge()
        if self._proposer is None:
            raise errors.Stopped()
        return self._proposer.propose(data, kind, request)

    def _apply_and_fill(self, index: int, kind: int, request):
        """The response of an entry: KV writes come serialized, header and all; the rest are
        messages whose header is filled here."""
        resp = self._apply_entry(index, kind, request)
        return resp if type(resp) is bytes else self._fill(resp)

    def _fill(self, resp):
        h = resp.header
        ident = self.identity
        h.cluster_id = ident.cluster_id
        h.member_id = ident.member_id
        h.raft_term = ident.term
        if not h.revision:
            h.revision = self.mvcc.current_rev
        return resp

    def header_bytes(self, revision: int) -> bytes:
        """The serialized header of a response at ``revision`` (the last one is kept: reads
        between two writes share it)."""
        cached = self._header_cache
        if cached[0] != revision:
            ident = self.identity
            cached = self._header_cache = (revision, wire.encode_header(
                ident.cluster_id, ident.member_id, revision, ident.term))
        return cached[1]

    # -- KV ------------------------------------------------------------------------------------

    def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        return pb.RangeResponse.FromString(self.range_encoded(r))

    def range_encoded(self, r: pb.RangeRequest) -> bytes:
        """Range's response already serialized: the fast path (no protobuf object per key)."""
        validate.check_range(r)
        return self.applier.range(r, header=self.header_bytes)

    def range_stream(self, r: pb.RangeRequest):
        """RangeStream's responses, serialized (range_stream.py): request errors are raised
        here, read errors (a future or compacted revision) by the first ``next()``."""
        validate.check_range_stream(r)
        return range_chunks(self.mvcc, r, self.max_request_bytes, self.header_bytes)

    # Writes: ``*_encoded`` answer with the response serialized (the fast path the services
    # take: a future, no coroutine in between); the plain ones parse it for library callers.

    def put_encoded(self, r: pb.PutRequest) -> "asyncio.Future[bytes]":
        validate.check_put(r)
        return self._propose(entry.PUT, r)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return pb.PutResponse.FromString(await self.put_encoded(r))

    def delete_range_encoded(self, r: pb.DeleteRangeRequest) -> "asyncio.Future[bytes]":
        validate.check_delete(r)
        return self._propose(entry.DELETE_RANGE, r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return pb.DeleteRangeResponse.FromString(await self.delete_range_encoded(r))

    def txn_encoded(self, r: pb.TxnRequest):
        """The serialized TxnResponse: at once for a read-only txn, else a future."""
        validate.check_txn(r, self.max_txn_ops)
        if validate.is_txn_readonly(r):
            return self.applier.txn(r, header=self.header_bytes)
        return self._propose(entry.TXN, r)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        resp = self.txn_encoded(r)
        return pb.TxnResponse.FromString(resp if type(resp) is bytes else await resp)

    def compact(self, r: pb.CompactionRequest):
        """The response once the compaction is applied: reads below its revision fail from
        then on. With ``physical``, as in etcd, only once the keys are compacted too."""
        applied = self._propose(entry.COMPACT, r)
        return self._compacted(applied) if r.physical else applied

    async def _compacted(self, applied: asyncio.Future) -> pb.CompactionResponse:
        resp = await applied
        await self._compaction_done()
        return resp

    async def _compaction_done(self) -> None:
        while self._compactor is not None:
            await asyncio.shield(self._compactor)

    def _schedule_compaction(self) -> None:
        """Compacts the key indexes in slices between other work, so a compaction of many
        keys never stalls requests for long (etcd compacts in batches with pauses too)."""
        if self._compactor is None:
            if self.loop is None:  # not started: no loop to share
                self.mvcc.finish_compaction()
                return
            self._compactor = self.loop.create_task(self._compact_in_slices(), name="compaction")

    async def _compact_in_slices(self) -> None:
        try:
            while self.mvcc.compact_step(COMPACT_SLICE_KEYS):
                await asyncio.sleep(0)
        finally:
            self._compactor = None

    # -- watch ---------------------------------------------------------------------------------

    def watch_stream(self) -> WatchStream:
        """A new stream of watches; the caller feeds it requests and drains its responses."""
        return WatchStream(self)

    async def _progress_notify(self) -> None:
        while True:
            await asyncio.sleep(self.progress_notify_interval)
            for stream in list(self.watch_streams):
                stream.progress_tick()

    # -- leases --------------------------------------------------------------------------------

    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        if r.ID == 0:  # the server picks: a positive id not in use, fixed before proposing
            r = pb.LeaseGrantRequest(TTL=r.TTL, ID=self._new_lease_id())
        resp = await self._propose(entry.LEASE_GRANT, r)
        lease = self.leases.get(resp.ID)
        if lease is not None:
            lease.expiry = time.monotonic() + lease.ttl
        return resp

    def _new_lease_id(self) -> int:
        while True:
            lease_id = random.getrandbits(63)
            if lease_id and lease_id not in self.leases:
                return lease_id

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        return await self._propose(entry.LEASE_REVOKE, r)

    def lease_keepalive(self, lease_id: int) -> pb.LeaseKeepAliveResponse:
        """Renews a lease to its full TTL; TTL 0 when it is unknown or already expired."""
        lease = self.leases.get(lease_id)
        now = time.monotonic()
        ttl = 0
        if lease is not None and (lease.expiry is None or lease.expiry > now):
            lease.expiry = now + lease.ttl
            ttl = lease.ttl
        return self._fill(pb.LeaseKeepAliveResponse(ID=lease_id, TTL=ttl))

    def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        lease = self.leases.get(r.ID)
        if lease is None:
            return self._fill(pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1))
        resp = pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=lease.remaining(time.monotonic()),
                                          grantedTTL=lease.ttl)
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return self._fill(resp)

    def lease_leases(self) -> pb.LeaseLeasesResponse:
        by_expiry = sorted(self.leases.leases.values(), key=lambda l: (l.expiry or 0, l.id))
        return self._fill(pb.LeaseLeasesResponse(leases=[pb.LeaseStatus(ID=l.id) for l in by_expiry]))

    async def _expire_leases(self) -> None:
        """Proposes a revoke for every lease past its deadline (the decision is made here, on
        the clock; the revoke itself is an ordinary log entry)."""
        while True:
            await asyncio.sleep(LEASE_CHECK_INTERVAL)
            now = time.monotonic()
            for lease in list(self.leases.leases.values()):
                if lease.expiry is not None and lease.expiry <= now and lease.id not in self._revoking:
                    self._revoking.add(lease.id)
                    asyncio.create_task(self._revoke_expired(lease.id))

    async def _revoke_expired(self, lease_id: int) -> None:
        try:
            await self.lease_revoke(pb.LeaseRevokeRequest(ID=lease_id))
        except errors.EtcdError:
            pass  # revoked meanwhile by a client, or the store is stopping
        finally:
            self._revoking.discard(lease_id)

    # -- member --------------------------------------------------------------------------------

    def db_size(self) -> int:
        return self.log.size_bytes()

    def healthy(self) -> bool:
        return self._proposer is not None and self._proposer.healthy

    def log_appends(self) -> int:
        return self._proposer.batches if self._proposer is not None else 0

    def log_entries(self) -> int:
        return self._proposer.entries if self._proposer is not None else 0

    def status(self) -> pb.StatusResponse:
        ident = self.identity
        size = self.db_size()
        return self._fill(pb.StatusResponse(
            version=self.etcd_version, dbSize=size, dbSizeInUse=size, leader=ident.member_id,
            raftIndex=self.applied_index, raftTerm=ident.term, raftAppliedIndex=self.applied_index,
            isLearner=False))

    def member_list(self) -> pb.MemberListResponse:
        ident = self.identity
        member = pb.Member(ID=ident.member_id, name=self.name, clientURLs=self.client_urls)
        return self._fill(pb.MemberListResponse(members=[member]))
