"""The Store: one keyspace's MVCC state behind its log. This is the embedded library.

Writes: validate -> encode -> propose (group commit into the log) -> apply in log order ->
answer. Reads: straight from MVCC, which already holds every acknowledged write. Recovery:
newest snapshot, then replay of the log after it.
"""
from __future__ import annotations

import logging
import os
import time

import msgpack

from .. import errors
from ..api import rpc_pb2 as pb
from ..log import Log, open_log
from ..mvcc import MVCCStore
from . import entry, validate
from .apply import Applier
from .identity import Identity, load_identity
from .proposer import Proposer

log = logging.getLogger(__name__)

DEFAULT_ETCD_VERSION = "3.5.21"
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
DEFAULT_MAX_TXN_OPS = 128
DEFAULT_SNAPSHOT_COUNT = 10_000


def _varint_size(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def etcd_proposal_size(request_size: int) -> int:
    """What etcd compares with --max-request-bytes for a request of this encoded size.

    etcd measures the InternalRaftRequest it proposes: the request as a length-delimited
    field, plus a RequestHeader holding a 64-bit request id (up to a 10-byte varint, its size
    depending on the member id; the largest is taken so the limit never depends on ids).
    """
    header = 2 + 1 + 1 + 10  # field 100 tag, length, id tag, id
    return header + 1 + _varint_size(request_size) + request_size


class Store:
    def __init__(self, wal: Log, *, name: str = "default", max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_txn_ops: int = DEFAULT_MAX_TXN_OPS, snapshot_count: int = DEFAULT_SNAPSHOT_COUNT,
                 etcd_version: str = DEFAULT_ETCD_VERSION, client_urls: list[str] | None = None):
        self.log = wal
        self.name = name
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops
        self.snapshot_count = snapshot_count
        self.etcd_version = etcd_version
        self.client_urls = list(client_urls or [])
        self.mvcc = MVCCStore()
        self.applier = Applier(self.mvcc)
        self.applied_index = 0
        self.snapshot_index = 0
        self.identity: Identity | None = None
        self._proposer: Proposer | None = None
        self._started_at = time.monotonic()

    # -- life cycle ----------------------------------------------------------------------------

    @classmethod
    async def open(cls, backend: str = "memory", data_dir: str | os.PathLike | None = None,
                   **options) -> "Store":
        """Opens (recovering if there is state) and starts a store on a log backend."""
        store = cls(open_log(backend, data_dir), **options)
        await store.start()
        return store

    async def start(self) -> None:
        self.identity = load_identity(self.log, self.name)
        self._recover()
        self._proposer = Proposer(self.log, self._apply_entry, after_batch=self._maybe_snapshot)
        self._proposer.start()

    def _recover(self) -> None:
        snap = self.log.load_snapshot()
        if snap is not None:
            index, data = snap
            state = msgpack.unpackb(data, raw=False)
            self.mvcc = MVCCStore.load(state["mvcc"])
            self.applier = Applier(self.mvcc)
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
        if self._proposer is not None:
            await self._proposer.close()
            self._proposer = None
        await self.log.close()

    # -- apply ---------------------------------------------------------------------------------

    def _apply_entry(self, index: int, kind: int, request):
        self.applied_index = index
        a = self.applier
        if kind == entry.PUT:
            return a.put(request)
        if kind == entry.DELETE_RANGE:
            return a.delete_range(request)
        if kind == entry.TXN:
            return a.txn(request)
        if kind == entry.COMPACT:
            return a.compact(request)
        raise errors.Corrupt(f"etcdserver: unknown log entry kind {kind}")

    async def _maybe_snapshot(self) -> None:
        if self.log.durable and self.applied_index - self.snapshot_index >= self.snapshot_count:
            await self.snapshot()

    async def snapshot(self) -> None:
        """Saves the applied state so replay starts here (the log drops what it covers)."""
        index = self.applied_index
        data = msgpack.packb({"index": index, "mvcc": self.mvcc.dump()}, use_bin_type=True)
        await self.log.save_snapshot(index, data)
        self.snapshot_index = index

    async def _propose(self, kind: int, request):
        data = entry.encode(kind, request)
        if etcd_proposal_size(len(data) - 1) > self.max_request_bytes:
            raise errors.RequestTooLarge()
        if self._proposer is None:
            raise errors.Stopped()
        resp = await self._proposer.propose(data, kind, request)
        return self._fill(resp)

    def _fill(self, resp):
        h = resp.header
        ident = self.identity
        h.cluster_id = ident.cluster_id
        h.member_id = ident.member_id
        h.raft_term = ident.term
        if not h.revision:
            h.revision = self.mvcc.current_rev
        return resp

    # -- KV ------------------------------------------------------------------------------------

    def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        validate.check_range(r)
        return self._fill(self.applier.range(r))

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        validate.check_put(r)
        return await self._propose(entry.PUT, r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        validate.check_delete(r)
        return await self._propose(entry.DELETE_RANGE, r)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        validate.check_txn(r, self.max_txn_ops)
        if validate.is_txn_readonly(r):
            return self._fill(self.applier.txn(r))
        return await self._propose(entry.TXN, r)

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        return await self._propose(entry.COMPACT, r)

    # -- member --------------------------------------------------------------------------------

    def db_size(self) -> int:
        return self.log.size_bytes()

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
