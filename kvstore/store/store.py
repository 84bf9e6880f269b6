"""The Store: one keyspace's state behind a shared log. This is the embedded library.

Writes: validate -> propose (group commit into a log record) -> the apply loop follows the log
and applies every record in order, on every member -> the proposing member answers from its
wait table. Reads: from the applied MVCC state; on a shared log a linearizable read first waits
until the state holds everything the log held when it arrived. Recovery: the newest snapshot,
then the same apply loop from there.

The Store is a facade: the proposer (proposer.py), the apply loop (apply_loop.py), the lessor
(lessor.py), the snapshotter (snapshot.py), the compactor (compactor.py) and read indexes
(read_index.py) do the work.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import Any

from .. import errors
from ..api import rpc_pb2 as pb
from ..log import (
    Cluster,
    DataDirCorrupt,
    LeaderRequests,
    LogUnavailable,
    MemberInfo,
    MemberStorage,
    SharedLog,
    open_backend,
)
from ..mvcc import MVCCStore
from ..mvcc.core import wire
from ..mvcc.hash import hash_kv_steps, state_hash_steps
from ..mvcc.lease import LeaseTable, live_kvs
from ..mvcc.watch_hub import WatchHub
from ..mvcc.wire import varint
from . import entry, quota, recovery, snapshot, validate
from .alarms import AlarmTable
from .apply import Applier
from .apply_loop import ApplyLoop
from .auth.caller import CALLER
from .auth.gate import AuthGate
from .auth.passwords import Passwords
from .auth.tokens import token_provider
from .compactor import Compactor
from .config import StoreConfig
from .etcd_db import Member
from .etcd_snapshot import SnapshotState, stream as etcd_snapshot_stream
from .hashing import run_in_steps
from .identity import Identity, load_identity
from .lessor import Lessor
from .members import Members
from .proposer import Proposer
from .range_stream import range_chunks
from .read_index import ReadIndex
from .snapshot import Capture, SnapshotCorrupt, Snapshotter
from .wait import WaitTable
from .watch_stream import DeliveryCache, WatchStream

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # for what is in flight to come back from the log at close


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


# What Store.mirror proposes, by request type.
_MIRRORED = {pb.TxnRequest: entry.TXN, pb.LeaseGrantRequest: entry.LEASE_GRANT,
             pb.LeaseRevokeRequest: entry.LEASE_REVOKE, pb.CompactionRequest: entry.COMPACT}


class Store:
    def __init__(self, wal: SharedLog, storage: MemberStorage, config: StoreConfig | None = None,
                 cluster: Cluster | None = None, **options):
        self.config = config = config or StoreConfig(**options)
        self.log = wal
        self.storage = storage
        self.cluster = cluster  # None: the only member
        self.name = config.name
        self.max_request_bytes = config.max_request_bytes
        self.max_txn_ops = config.max_txn_ops
        self.etcd_version = config.etcd_version
        self.progress_notify_interval = config.progress_notify_interval
        self.identity: Identity | None = None
        self.leases = LeaseTable(config.min_lease_ttl)
        self.watch_streams: set[WatchStream] = set()
        self.watch_hub: WatchHub | None = None
        self.watch_delivery = DeliveryCache(self.header_bytes)
        self._set_state(MVCCStore(), self.leases)
        # The leader of the current term, as the log says (LEADER entries); and the term this
        # member won itself (0: none), which it leads once its LEADER entry is applied.
        self.leader_id = 0
        self.term = 0
        self._campaign_term = 0
        # leaders elected since this process recovered (etcd_server_leader_changes_seen_total:
        # an etcd member sees one at its start too)
        self.leader_changes = 0
        self._waits = WaitTable()  # this member's proposals, until their record is back
        self.lessor = Lessor(lambda: self.leases, self._propose)
        self.compactor = Compactor(lambda: self.mvcc)
        self.snapshotter = Snapshotter(
            storage, self._capture, self._applied_entries, lambda: self.mvcc,
            self.compactor.done, self._snapshot_saved, config.snapshot_count)
        self._proposer: Proposer | None = None
        self._apply_loop: ApplyLoop | None = None
        self._reads: ReadIndex | None = None
        self._timers: list[asyncio.Task] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._header_cache: tuple[int, int, bytes] = (-1, -1, b"")
        # Done (with the error) once the member has stopped applying the log: it must stop.
        self.failed: asyncio.Future | None = None
        self._recovered = False
        # The alarms raised through the log (replicated state), and this member's own:
        # its log's medium is full (no entry can go through the log to say so).
        self.alarm_table = AlarmTable()
        self._medium_full = False
        self._nospace_proposed = False  # a NOSPACE alarm for the quota is on its way
        self.quota_bytes = quota.quota_bytes(config.quota_backend_bytes)
        self.members = Members(self)
        # Users, roles, permissions (replicated, auth/state.py), tokens (this member's), and
        # the thread that hashes passwords.
        self.auth = AuthGate(token_provider(config.auth_token, config.auth_token_ttl),
                             config.client_cert_auth)
        self.passwords = Passwords(config.bcrypt_cost)
        # Below this state size no single write can reach the quota: the write path compares
        # once, and counts a write's cost only past it (no quota: never).
        self._quota_near = (max(0, self.quota_bytes - config.max_request_bytes
                                - quota.KV_OVERHEAD * config.max_txn_ops - quota.LEASE_OVERHEAD)
                            if self.quota_bytes else 1 << 62)

    def _applied_entries(self) -> int:
        assert self._apply_loop is not None  # the snapshotter runs once the store has started
        return self._apply_loop.applied_entries

    def _set_state(self, mvcc: MVCCStore, leases: LeaseTable) -> None:
        """The deterministic state: MVCC, leases, and what observes their commits. Watchers
        move over to the new state (a snapshot installed while serving)."""
        self.mvcc = mvcc
        self.leases = leases
        mvcc.observers.append(leases.on_commit)
        old_hub = self.watch_hub
        self.watch_hub = WatchHub(mvcc, self.watch_delivery.deliver_change)
        if old_hub is not None:
            old_hub.move_to(self.watch_hub)
        self.applier = Applier(mvcc, leases)

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    async def open(cls, backend: str = "memory", data_dir: str | os.PathLike | None = None,
                   log_options: dict | None = None, **options) -> Store:
        """Opens (recovering if there is state) and starts a store on a log backend: a name
        (``memory``, ``lmdb``) or a log URL (``nats://host:4222``)."""
        wal, storage, cluster = open_backend(backend, data_dir, **(log_options or {}))
        store = cls(wal, storage, cluster=cluster, **options)
        try:
            await store.start()
        except BaseException:
            await store.close()  # what start opened; a refused data dir is free again
            raise
        return store

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.failed = self.loop.create_future()
        self.identity = ident = load_identity(self.storage, self.name, self.config.cluster_name)
        await self.log.open()
        if self.cluster is not None:
            await self.cluster.open()
        self._recover_snapshot()
        stop = recovery.last_stop(self.storage)
        recovery.check_log_covers(self.log, self.snapshotter.index, stop)
        self._apply_loop = ApplyLoop(self.log, ident.member_id, self._waits, self, self._fatal)
        self._apply_loop.start(self.snapshotter.index)
        if not self.log.local:
            self._reads = ReadIndex(self.log, self._apply_loop.wait_applied)
        try:
            await self._apply_loop.wait_applied(await self._log_end())  # caught up
        except errors.Stopped:
            if isinstance(self._apply_loop.failure, DataDirCorrupt):
                raise self._apply_loop.failure from None  # a record failed its checksum
            raise
        recovery.check_revision(self.log, self.mvcc.current_rev, stop)
        self._recovered = True  # what close() records as this stop is then at least as far
        logger.info("recovered: snapshot at %d, log applied through %d, revision %d",
                    self.snapshotter.index, self._apply_loop.applied_index, self.mvcc.current_rev)
        self._proposer = Proposer(self.log, ident.member_id, ident.starts, self._waits,
                                  self._fatal, largest_request(self.max_request_bytes),
                                  on_full=self._log_full)
        self._proposer.start()
        if self.config.lease_expiry:
            self.lessor.start()
        self._timers = [self.loop.create_task(self._progress_notify(), name="watch-progress")]
        if self.cluster is None:  # the only member: it wins every election, its start count the term
            await self.campaign_won(ident.starts)
        else:
            me = MemberInfo(ident.member_id, self.name, self.config.client_urls,
                            self.config.peer_urls or self.cluster.peer_urls)
            await self.cluster.start(me, LeaderRequests(self.lessor.renew, self.lessor.remaining),
                                     self.campaign_won, self.campaign_lost)
            self.lessor.link = self.cluster

    async def _log_end(self) -> int:
        """The log's read index, asked until the log answers (at start, NATS may be electing)."""
        while True:
            try:
                return await self.log.read_index()
            except LogUnavailable as e:
                logger.info("waiting for the log: %s", e)
                await asyncio.sleep(0.5)

    def _recover_snapshot(self) -> None:
        with self.storage.open_snapshot() as snap:  # mapped: decoded without a copy
            if snap is None:
                return
            index, data = snap
            try:
                self._load_snapshot(snapshot.parse(data))
            except SnapshotCorrupt as e:
                raise DataDirCorrupt(f"{self.storage.snapshot_name(index)}: {e}") from None
        self.snapshotter.index = index

    def _load_snapshot(self, snap: snapshot.Snapshot) -> None:
        leases = LeaseTable(self.config.min_lease_ttl)
        leases.load(snap.leases, live_kvs(snap.mvcc.index))
        self._set_state(snap.mvcc, leases)
        self.leader_id, self.term = snap.leader
        self.alarm_table.load(snap.alarms)
        self.auth.state.load(snap.auth)
        self._leadership_changed()

    async def install_snapshot(self, first_index: int) -> None:
        """The log no longer holds what follows our applied index: start again from the
        cluster's shared snapshot (a new or wiped member, or one away for long)."""
        apply_loop = self._apply_loop
        assert apply_loop is not None  # the apply loop calls this
        applied = apply_loop.applied_index
        if self.cluster is None:
            raise errors.Corrupt(f"etcdserver: the log starts at {first_index}, after this "
                                 f"member's applied index {applied}, and there is no snapshot "
                                 f"to start from")
        while True:
            index, data = await self.cluster.download_snapshot()
            if index >= first_index - 1:
                break
            logger.warning("the shared snapshot (%d) does not reach the log's start (%d) yet; "
                           "waiting", index, first_index)
            await asyncio.sleep(1.0)
        self._load_snapshot(snapshot.parse(data))
        apply_loop.set_applied(index)
        self._waits.fail_through(index, errors.Timeout)  # those will never be applied here
        self.snapshotter.index = index
        await self.storage.save_snapshot(index, _parts(data))
        logger.info("installed the shared snapshot at log index %d (revision %d)", index,
                    self.mvcc.current_rev)

    def _log_full(self, full: bool) -> None:
        """The log found its medium full (writes fail with etcd's "database space exceeded";
        reads go on), or took an append again once space was freed."""
        self._medium_full = full
        if not full:
            logger.warning("the log takes appends again: NOSPACE alarm cleared")

    def _fatal(self, exc: BaseException) -> None:
        """The member can no longer apply the log (or append to its local log): it stops taking
        writes, and the server exits (serve.py)."""
        if self._proposer is not None:
            self._proposer.refuse(exc)
        if self.failed is not None and not self.failed.done():
            self.failed.set_result(exc)

    async def close(self) -> None:
        for task in self._timers:
            task.cancel()
        await self.lessor.stop()
        self.compactor.cancel()  # the log replays the compaction at the next start
        for stream in list(self.watch_streams):
            stream.close()
        if self._proposer is not None:
            await self._proposer.close()  # everything queued is in the log
            self._proposer = None
            apply_loop = self._apply_loop
            assert apply_loop is not None  # started before the proposer
            if apply_loop.failure is None:  # and answered, once applied
                async def applied_all() -> None:
                    await apply_loop.wait_applied(await self.log.read_index())

                try:  # the read index too within the timeout: the log may be unreachable
                    await asyncio.wait_for(applied_all(), CLOSE_TIMEOUT)
                except (TimeoutError, LogUnavailable):
                    pass
        if self.cluster is not None:
            await self.cluster.close()
        if self._apply_loop is not None:
            await self._apply_loop.stop()
            if self._recovered and self._apply_loop.failure is None:  # a restart with less is refused
                recovery.record_stop(self.storage, recovery.Stop(self._apply_loop.applied_index,
                                                                 self.mvcc.current_rev))
        await self.snapshotter.wait()
        await self.log.close()
        await self.storage.close()

    # -- leadership ----------------------------------------------------------------------------

    async def campaign_won(self, term: int) -> None:
        """This member won the election for ``term``: it leads once its LEADER entry is
        applied (a later term in the log first means it lost meanwhile)."""
        self._campaign_term = term
        assert self.identity is not None  # campaigns follow start()
        try:
            await self._propose(entry.LEADER, entry.Leader(self.identity.member_id, term))
        except errors.EtcdError:
            pass  # a newer term was applied first

    def campaign_lost(self) -> None:
        self._campaign_term = 0
        self._leadership_changed()

    def _leadership_changed(self) -> None:
        if (self.identity is not None and self.leader_id == self.identity.member_id
                and self.term == self._campaign_term and self.term):
            if not self.lessor.is_leader or self.lessor.term != self.term:
                self.lessor.promote(self.term)
        else:
            self.lessor.demote(self.term)

    # -- apply (the apply loop's state machine) ------------------------------------------------

    def apply_entry(self, kind: int, request: Any) -> Any:
        """One entry's response: KV writes come serialized, header and all; the rest are
        messages whose header is filled here."""
        a = self.applier
        if kind == entry.PUT:
            if self.alarm_table.nospace:  # etcd's capped applier: nothing that grows
                raise errors.NoSpace()
            return a.put(request, header=self.header_bytes)
        if kind == entry.TXN:
            if self.alarm_table.nospace and quota.txn_cost(request):
                raise errors.NoSpace()
            return a.txn(request, header=self.header_bytes)
        if kind == entry.DELETE_RANGE:
            return a.delete_range(request, header=self.header_bytes)
        if kind == entry.LEASE_GRANT:
            if self.alarm_table.nospace:
                raise errors.NoSpace()
            resp = a.lease_grant(request)
            lease = self.leases.get(resp.ID)
            assert lease is not None  # just granted
            self.lessor.granted(lease)
            return self._fill(resp)
        if kind == entry.LEASE_REVOKE:
            return self._fill(a.lease_revoke(request))
        if kind == entry.LEASE_EXPIRE:
            if request.term != self.term:
                raise errors.NotLeader()
            return self._fill(a.lease_revoke(pb.LeaseRevokeRequest(ID=request.lease_id)))
        if kind == entry.COMPACT:
            resp = a.compact(request)
            self.compactor.schedule()
            return self._fill(resp)
        if kind == entry.ALARM:
            resp = self.alarm_table.apply(request)
            if request.action == pb.AlarmRequest.ACTIVATE and request.alarm == pb.AlarmType.NOSPACE:
                self._nospace_proposed = False
            return self._fill(resp)
        if kind == entry.AS_USER:
            self.auth.check_write(request, self.leases)
            if request.kind == entry.AUTH:
                return self._fill(self.auth.apply_change(request.request))
            return self.apply_entry(request.kind, request.request)
        if kind == entry.AUTH:
            return self._fill(self.auth.apply_change(request))
        if kind == entry.AUTHENTICATE:
            return self._fill(self.auth.apply_authenticate(request, self.applied_index + 1))
        if kind == entry.LEADER:
            if request.term <= self.term:
                raise errors.NotLeader()
            self.leader_id, self.term = request.member_id, request.term
            if self._recovered:  # (what recovery replays was seen by an earlier process)
                self.leader_changes += 1
            self._leadership_changed()
            return None
        raise errors.Corrupt(f"etcdserver: unknown log entry kind {kind}")

    async def after_batch(self) -> None:
        self.snapshotter.maybe_start()

    def _applied_index(self) -> int:
        assert self._apply_loop is not None  # the snapshotter runs once the store has started
        return self._apply_loop.applied_index

    def _capture(self) -> Capture:
        return Capture(self.mvcc, self.leases.dump(), self._applied_index(),
                       (self.leader_id, self.term), self.alarm_table.dump(),
                       self.auth.state.dump())

    async def _snapshot_saved(self, index: int) -> None:
        """A snapshot is durable here. On a single member the log drops what it covers. On a
        shared log the leader shares it with new members, then trims the stream below the one
        it shared before (a member that was away less than a snapshot's worth of entries still
        finds its place in the stream)."""
        if self.cluster is None:
            await self.log.trim(index)
        elif self.lessor.is_leader:
            shared_before = await self.cluster.shared_snapshot_index()
            snap = self.storage.load_snapshot()
            if index <= shared_before or snap is None or snap[0] != index:
                return  # a newer one is shared already (a deposed leader's would be older)
            await self.cluster.upload_snapshot(index, snap[1])
            if shared_before:
                await self.log.trim(shared_before)

    async def snapshot(self) -> None:
        """Saves the applied state now, so recovery starts here (the log drops what it covers)."""
        await self.snapshotter.save_now()

    def etcd_snapshot(self) -> AsyncIterator[bytes]:
        """Maintenance.Snapshot's responses, serialized: the applied state as an etcd 3.4 db
        file, built while writes go on (etcd_snapshot.py), in the data dir if there is one (a
        large state's db may not fit a tmpfs /tmp)."""
        self.auth.check_admin(untranslated=True)
        data_dir = getattr(self.storage, "dir", None)
        return etcd_snapshot_stream(self._etcd_snapshot_state, lambda: self.mvcc,
                                    str(data_dir) if data_dir is not None else None)

    def _etcd_snapshot_state(self) -> SnapshotState:
        ident = self.identity
        assert ident is not None  # requests follow start()
        member = Member(ident.member_id, self.name, self.members.peer_urls(),
                        list(self.config.client_urls))
        return SnapshotState(self.mvcc, self.leases.dump(), self.applied_index, member,
                             self.alarm_table.dump(), self.auth.state.dump())

    @property
    def applied_index(self) -> int:
        return self._apply_loop.applied_index if self._apply_loop is not None else 0

    @property
    def snapshot_index(self) -> int:
        return self.snapshotter.index

    # -- proposals and responses ---------------------------------------------------------------

    def _propose(self, kind: int, request) -> asyncio.Future:
        """Queues a write; the future gets its response, header filled, once it is in the log
        and applied. A plain future rather than a coroutine: one frame less to resume per write."""
        if self._proposer is None:
            raise errors.Stopped()
        return self._proposer.propose(kind, request)

    def _propose_client(self, kind: int, request) -> asyncio.Future:
        """A client's write: while auth is enabled, with who asks (checked when applied)."""
        if self.auth.state.enabled:
            return self._propose(entry.AS_USER, self.auth.as_user(kind, request))
        if CALLER.get() is not None:
            self.auth.caller()  # a token that names no one is refused all the same
        return self._propose(kind, request)

    def mirror(self, request: pb.TxnRequest | pb.LeaseGrantRequest | pb.LeaseRevokeRequest
               | pb.CompactionRequest) -> asyncio.Future:
        """A write another store already admitted, proposed as it is (kvstore migrate replays
        etcd's revisions and leases): past this store's auth, quota and op limits, whose
        place the source's own took. The future gets the response (a TxnResponse serialized)."""
        return self._propose(_MIRRORED[type(request)], request)

    def _fill(self, resp, revision: bool = True):
        """The response's header: ids, term, and the current revision unless one is set
        (``revision=False``: none, as etcd's Cluster service answers)."""
        h = resp.header
        ident = self.identity
        assert ident is not None  # responses follow start()
        h.cluster_id = ident.cluster_id
        h.member_id = ident.member_id
        h.raft_term = self.term
        if revision and not h.revision:
            h.revision = self.mvcc.current_rev
        return resp

    def header_bytes(self, revision: int) -> bytes:
        """The serialized header of a response at ``revision`` (the last one is kept: reads
        between two writes share it)."""
        cached = self._header_cache
        if cached[0] != revision or cached[1] != self.term:
            ident = self.identity
            assert ident is not None  # responses follow start()
            cached = self._header_cache = (revision, self.term, wire.encode_header(
                ident.cluster_id, ident.member_id, revision, self.term))
        return cached[2]

    def _after_read_index(self, read):
        """``read()``'s result once a linearizable read may be served (a future)."""
        assert self.loop is not None and self._reads is not None  # a started store on a shared log
        out = self.loop.create_future()

        def serve(ready: asyncio.Future) -> None:
            if out.done():
                return
            exc = ready.exception()
            if exc is not None:
                out.set_exception(exc)
                return
            try:
                out.set_result(read())
            except Exception as e:
                out.set_exception(e)

        self._reads.wait().add_done_callback(serve)
        return out

    # -- KV ------------------------------------------------------------------------------------

    def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        """The RangeResponse from the applied state (on a shared log, ``await
        store.linearizable()`` first for a linearizable read)."""
        validate.check_range(r)
        if self.auth.state.enabled:
            return pb.RangeResponse.FromString(self._range_as_caller(r))
        return pb.RangeResponse.FromString(self.applier.range(r, header=self.header_bytes))

    def range_as_server(self, r: pb.RangeRequest) -> pb.RangeResponse:
        """A read by the server itself (kvstore migrate's checks): no caller, so nothing for
        auth to check, whether it is enabled or not."""
        validate.check_range(r)
        return pb.RangeResponse.FromString(self.applier.range(r, header=self.header_bytes))

    def range_encoded(self, r: pb.RangeRequest):
        """Range's response already serialized: the fast path (no protobuf object per key). A
        future of it when the read must first wait for a read index (a linearizable read on a
        shared log)."""
        validate.check_range(r)
        if self.auth.state.enabled or CALLER.get() is not None:
            if r.serializable or self._reads is None:
                return self._range_as_caller(r)
            return self._after_read_index(lambda: self._range_as_caller(r))
        if r.serializable or self._reads is None:
            return self.applier.range(r, header=self.header_bytes)
        return self._after_read_index(lambda: self.applier.range(r, header=self.header_bytes))

    def _range_as_caller(self, r: pb.RangeRequest) -> bytes:
        info = self.auth.check_range(r.key, r.range_end)
        resp = self.applier.range(r, header=self.header_bytes)
        self.auth.still_current(info)
        return resp

    def range_stream(self, r: pb.RangeRequest):
        """RangeStream's responses, serialized (range_stream.py): request errors are raised
        here, read errors (a future or compacted revision) by the first ``next()``."""
        validate.check_range_stream(r)
        if self.auth.state.enabled or CALLER.get() is not None:
            self.auth.check_range(r.key, r.range_end)
        return range_chunks(self.mvcc, r, self.max_request_bytes, self.header_bytes)

    async def linearizable(self, serializable: bool = False) -> None:
        """Returns once a read may be served here: at once for a serializable one or on a
        single member; on a shared log, once a linearizable one may."""
        if self._reads is not None and not serializable:
            await self._reads.wait()

    # Writes: ``*_encoded`` answer with the response serialized (the fast path the services
    # take: a future, no coroutine in between); the plain ones parse it for library callers.

    def put_encoded(self, r: pb.PutRequest) -> asyncio.Future[bytes]:
        validate.check_put(r)
        if self.state_bytes() >= self._quota_near:
            self._check_quota(quota.put_cost(r))
        return self._propose_client(entry.PUT, r)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return pb.PutResponse.FromString(await self.put_encoded(r))

    def delete_range_encoded(self, r: pb.DeleteRangeRequest) -> asyncio.Future[bytes]:
        validate.check_delete(r)
        return self._propose_client(entry.DELETE_RANGE, r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return pb.DeleteRangeResponse.FromString(await self.delete_range_encoded(r))

    def txn_encoded(self, r: pb.TxnRequest):
        """The serialized TxnResponse: at once for a read-only txn, else a future."""
        validate.check_txn(r, self.max_txn_ops)
        if validate.is_txn_readonly(r):
            read = self._txn_as_caller if (self.auth.state.enabled or CALLER.get() is not None) \
                else self.applier.txn
            if self._reads is None or validate.is_txn_serializable(r):
                return read(r, header=self.header_bytes)
            return self._after_read_index(lambda: read(r, header=self.header_bytes))
        if self.state_bytes() >= self._quota_near:
            self._check_quota(quota.txn_cost(r))
        return self._propose_client(entry.TXN, r)

    def _txn_as_caller(self, r: pb.TxnRequest, header) -> bytes:
        info = self.auth.check_readonly_txn(r)
        resp = self.applier.txn(r, header=header)
        self.auth.still_current(info)
        return resp

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        resp = self.txn_encoded(r)
        return pb.TxnResponse.FromString(resp if type(resp) is bytes else await resp)

    def compact(self, r: pb.CompactionRequest):
        """The response once the compaction is applied: reads below its revision fail from
        then on. With ``physical``, as in etcd, only once the keys are compacted too."""
        applied = self._propose_client(entry.COMPACT, r)
        return self._compacted(applied) if r.physical else applied

    async def _compacted(self, applied: asyncio.Future) -> pb.CompactionResponse:
        resp = await applied
        await self.compactor.done()
        return resp

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
        if self.quota_bytes:
            self._check_quota(quota.LEASE_OVERHEAD)
        if r.ID == 0:  # the server picks: a positive id not in use, fixed before proposing
            r = pb.LeaseGrantRequest(TTL=r.TTL, ID=self._new_lease_id())
        return await self._propose_client(entry.LEASE_GRANT, r)

    def _new_lease_id(self) -> int:
        while True:
            lease_id = random.getrandbits(63)
            if lease_id and lease_id not in self.leases:
                return lease_id

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        return await self._propose_client(entry.LEASE_REVOKE, r)

    async def lease_keepalive(self, lease_id: int) -> pb.LeaseKeepAliveResponse:
        """Renews a lease to its full TTL (on the leader); TTL 0 when it is unknown or expired."""
        ttl = await self.lessor.keepalive(lease_id)
        return self._fill(pb.LeaseKeepAliveResponse(ID=lease_id, TTL=ttl))

    def lease_keepalive_now(self, lease_id: int) -> bytes | None:
        """``lease_keepalive``'s response, serialized, when this member leads the leases (it
        renews on its own clock, nothing to wait for); None otherwise."""
        if not self.lessor.is_leader:
            return None
        ttl = self.lessor.renew(lease_id)
        return wire.lease_keepalive_response(self.header_bytes(self.mvcc.current_rev), lease_id, ttl)

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        await self.linearizable()
        lease = self.leases.get(r.ID)
        if r.keys and self.auth.state.enabled and lease is not None:
            self.auth.check_lease_keys(lease.keys)
        if lease is None:
            return self._fill(pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1))
        resp = pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=await self.lessor.time_to_live(r.ID),
                                          grantedTTL=lease.ttl)
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return self._fill(resp)

    async def lease_leases(self) -> pb.LeaseLeasesResponse:
        await self.linearizable()
        by_expiry = sorted(self.leases.leases.values(), key=lambda lease: (lease.expiry or 0, lease.id))
        return self._fill(pb.LeaseLeasesResponse(leases=[pb.LeaseStatus(ID=lease.id) for lease in by_expiry]))

    # -- quota and alarms ----------------------------------------------------------------------

    def state_bytes(self) -> int:
        """The state's size as etcd's buckets would hold it (quota.py)."""
        return self.mvcc.size + quota.LEASE_RECORD_BYTES * len(self.leases.leases)

    def _check_quota(self, cost: int) -> None:
        """etcd's quota check before a write is proposed: over the quota, the write gets
        NOSPACE and this member raises the NOSPACE alarm (once)."""
        if self.state_bytes() + cost < self.quota_bytes:
            return
        assert self.identity is not None  # requests follow start()
        member = self.identity.member_id
        if not self._nospace_proposed and not self.alarm_table.raised(member, pb.AlarmType.NOSPACE):
            self._nospace_proposed = True
            logger.warning("the state (%d bytes) reached the quota (%d bytes): raising NOSPACE",
                           self.state_bytes(), self.quota_bytes)
            fut = self._propose(entry.ALARM, pb.AlarmRequest(
                action=pb.AlarmRequest.ACTIVATE, memberID=member, alarm=pb.AlarmType.NOSPACE))
            fut.add_done_callback(self._nospace_settled)
        raise errors.NoSpace()

    def _nospace_settled(self, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._nospace_proposed = False  # not applied: the next write over quota tries again

    @property
    def alarms(self) -> set[int]:
        """The alarm types raised, by any member or by this one's full medium."""
        raised: set[int] = {m.alarm for m in self.alarm_table.get()}
        if self._medium_full:
            raised.add(pb.AlarmType.NOSPACE)
        return raised

    async def alarm(self, r: pb.AlarmRequest) -> pb.AlarmResponse:
        """etcd's Alarm: every action goes through the log, as in etcd. This member's full
        medium shows in GET as its NOSPACE alarm (it cannot be written to the log)."""
        if r.action == pb.AlarmRequest.GET and self._medium_full:
            resp = self.alarm_table.apply(r)
            assert self.identity is not None  # requests follow start()
            mine = pb.AlarmMember(memberID=self.identity.member_id, alarm=pb.AlarmType.NOSPACE)
            if r.alarm in (pb.AlarmType.NONE, pb.AlarmType.NOSPACE) and mine not in resp.alarms:
                resp.alarms.append(mine)
            return self._fill(resp)
        if CALLER.get() is not None:
            self.auth.check_token()
        return await self._propose_client(entry.ALARM, r)

    # -- auth ----------------------------------------------------------------------------------

    async def auth_request(self, method: str, r) -> Any:
        """An Auth request but Authenticate (``method``: its name in the service), through the
        log so every member applies it; a password is hashed first, off the event loop, and
        only its hash goes into the log."""
        if method in ("UserAdd", "UserChangePassword") and not (
                method == "UserAdd" and r.options.no_password):
            hashed = await self.passwords.hash(r.password)
            if method == "UserAdd":
                r = pb.AuthUserAddRequest(name=r.name, options=r.options, hashedPassword=hashed)
            else:
                r = pb.AuthUserChangePasswordRequest(name=r.name, hashedPassword=hashed)
        elif method == "UserAdd":
            r = pb.AuthUserAddRequest(name=r.name, options=r.options, hashedPassword=r.hashedPassword)
        return await self._propose_client(entry.AUTH, entry.AuthChange(method, r))

    async def authenticate(self, r: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
        """A token for a user and password (etcd's Authenticate): the password is checked
        here (bcrypt, off the event loop), then every member learns the token through the log;
        checked again if the auth state changed meanwhile."""
        await self.linearizable()
        while True:
            hashed, revision = self.auth.state.password_of(r.name)
            if not await self.passwords.check(r.password, hashed):
                raise errors.AuthFailed()
            resp = await self._propose(entry.AUTHENTICATE,
                                       entry.Authenticate(r.name, self.auth.tokens.prefix()))
            if revision == self.auth.state.revision:
                return resp

    # -- hashes ---------------------------------------------------------------------------------

    async def hash_kv(self, r: pb.HashKVRequest) -> pb.HashKVResponse:
        """etcd's HashKV: the CRC-32C of the key bucket up to a revision (mvcc/hash.py),
        computed a few thousand records per turn of the event loop."""
        self.auth.check_admin(untranslated=True)
        mvcc = self.mvcc
        rev = r.revision
        if 0 < rev <= mvcc.compact_rev:
            raise errors.Compacted()
        if rev > mvcc.current_rev:
            raise errors.FutureRev()
        rev = rev or mvcc.current_rev
        compact_rev, current_rev = mvcc.compact_rev, mvcc.current_rev
        h = await run_in_steps(lambda: hash_kv_steps(self.mvcc, rev))
        resp = pb.HashKVResponse(hash=h, compact_revision=compact_rev, hash_revision=rev)
        resp.header.revision = current_rev
        return self._fill(resp)

    async def hash(self) -> pb.HashResponse:
        """A hash of the whole state (revisions, leases): stable for the same state, unlike
        etcd's, which hashes its database file."""
        self.auth.check_admin(untranslated=True)
        current_rev = self.mvcc.current_rev
        h = await run_in_steps(lambda: state_hash_steps(self.mvcc, self.leases.dump()))
        resp = pb.HashResponse(hash=h)
        resp.header.revision = current_rev
        return self._fill(resp)

    # -- member --------------------------------------------------------------------------------

    def db_size(self) -> int:
        """Bytes on the medium: the log's files and the snapshot (the state's size in memory
        on the memory log)."""
        if not self.storage.durable:
            return self.state_bytes()
        return self.log.size_bytes() + self.storage.size_bytes()

    def db_size_in_use(self) -> int:
        """Of those, what is in use: the log's pages holding records, and the snapshot."""
        if not self.storage.durable:
            return self.state_bytes()
        return self.log.size_in_use() + self.storage.size_bytes()

    async def defragment(self) -> pb.DefragmentResponse:
        """etcd's Defragment, here: a snapshot now (the log drops what it covers), then the
        log's file rewritten without its free pages, and the freed space returned."""
        self.auth.check_admin(untranslated=True)
        await self.snapshot()
        await self.log.defragment()
        return self._fill(pb.DefragmentResponse())

    def healthy(self) -> bool:
        return (not self.alarms and self._proposer is not None and self._proposer.healthy
                and self.failed is not None and not self.failed.done() and self.has_leader())

    def has_leader(self) -> bool:
        """Whether a leader is known and this member reaches it through the log (etcd's
        members answer "no leader" otherwise)."""
        if self.cluster is None:
            return self.leader_id != 0
        return self.leader_id != 0 and self.cluster.has_leader()

    def log_appends(self) -> int:
        return self._proposer.batches if self._proposer is not None else 0

    def log_entries(self) -> int:
        return self._proposer.entries if self._proposer is not None else 0

    def proposals_pending(self) -> int:
        """This member's proposals not yet answered: queued, or in the log and not applied."""
        queued = self._proposer.queued() if self._proposer is not None else 0
        return queued + self._waits.entries()

    def proposals_failed(self) -> int:
        """Proposals answered with an error of the log's rather than apply's (the log full or
        gone, a timeout, the member stopping)."""
        return self._proposer.failed if self._proposer is not None else 0

    def status(self) -> pb.StatusResponse:
        return self._fill(pb.StatusResponse(
            version=self.etcd_version, dbSize=self.db_size(), dbSizeInUse=self.db_size_in_use(),
            leader=self.leader_id,
            raftIndex=self.applied_index, raftTerm=self.term, raftAppliedIndex=self.applied_index,
            isLearner=False, errors=self.alarm_texts()))

    def alarm_texts(self) -> list[str]:
        """Raised alarms as etcd's Status lists them (AlarmMember in protobuf text format)."""
        assert self.identity is not None  # requests follow start()
        return [f"memberID:{self.identity.member_id} alarm:{pb.AlarmType.Name(a)} "
                for a in sorted(self.alarms)]

async def _parts(data: bytes):
    yield data
