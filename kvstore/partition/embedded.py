"""Partitions: a partition map in one process, one Store per partition, requests routed by key.

For benchmarks and embedded use, without gRPC::

    parts = await kvstore.Partitions.open()  # the kube profile, in memory
    await parts.put(pb.PutRequest(key=b"/registry/pods/ns/a", value=b"..."))  # the pods Store
    parts.range(pb.RangeRequest(key=b"/registry/pods/", range_end=b"/registry/pods0"))
    await parts.close()

Each partition has its own log, revisions, compactor, watch hub and lease table: a request goes
to the one partition owning every key it touches, and one touching several raises ValueError
(there is no atomic or consistently-revisioned request across partitions).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from ..api import rpc_pb2 as pb
from ..log import parse_log_url
from ..store import Store
from .kube import in_process_kube_map
from .map import PartitionMap

Span = tuple[bytes, bytes]  # etcd's (key, range_end)


class Partitions:
    """One Store per partition of ``map``; KV requests routed to the partition owning their keys.

    Leases live in one partition: grant a lease in the partition of the keys it will be
    attached to (a Put goes to its key's partition, where the lease must exist: for events,
    grant in ``"events"``). Watches too: ``stores[name].watch_stream()``.
    """

    def __init__(self, partition_map: PartitionMap, stores: dict[str, Store]):
        self.map = partition_map
        self._stores = stores
        self._default = stores[partition_map.default.name]

    @classmethod
    async def open(cls, partition_map: PartitionMap | None = None, backend: str = "memory",
                   data_dir: str | os.PathLike | None = None, **store_options) -> Partitions:
        """Opens a Store per partition (default map: the kube profile's, in_process_kube_map),
        each in ``data_dir/<partition name>`` (lmdb; memory needs no dir). ``store_options``
        go to every ``Store.open``."""
        pmap = partition_map or in_process_kube_map()
        scheme, address = parse_log_url(backend)
        if scheme == "nats":  # the partitions would share one stream, hence one keyspace
            raise ValueError("Partitions takes the memory or lmdb backend (one log per partition)")
        if address:  # lmdb://root: the root, not one dir shared by every partition
            data_dir, backend = address, scheme
        root = Path(data_dir) if data_dir is not None else None
        stores: dict[str, Store] = {}
        try:
            for part in pmap:
                stores[part.name] = await Store.open(
                    backend, root / part.name if root is not None else None, **store_options)
        except BaseException:
            for store in stores.values():
                with contextlib.suppress(Exception):  # the open's error is the one to report
                    await store.close()
            raise
        return cls(pmap, stores)

    async def close(self) -> None:
        """Closes every store (all of them, even if one fails; the first error is raised)."""
        failure: Exception | None = None
        for store in self._stores.values():
            try:
                await store.close()
            except Exception as e:
                failure = failure or e
        if failure is not None:
            raise failure

    @property
    def stores(self) -> Mapping[str, Store]:
        return MappingProxyType(self._stores)

    def store_for(self, key: bytes) -> Store:
        return self._stores[self.map.partition_for(key).name]

    def store(self, partition: str | None = None) -> Store:
        """The named partition's Store (None: the default partition's)."""
        if partition is None:
            return self._default
        try:
            return self._stores[partition]
        except KeyError:
            raise KeyError(f"no partition {partition!r} (partitions: "
                           f"{', '.join(self._stores)})") from None

    def _route(self, what: str, spans: Iterable[Span]) -> Store:
        """The one store owning every key of ``spans``."""
        names: dict[str, None] = {}  # ordered: the error names them as found
        for key, range_end in spans:
            for part in self.map.partitions_for_range(key, range_end):
                names[part.name] = None
        if len(names) > 1:
            raise ValueError(f"{what} touches partitions {', '.join(names)}: each partition has "
                             "its own revisions, so a request cannot span partitions")
        return self._stores[next(iter(names))] if names else self._default

    # -- KV: Store's requests and responses ----------------------------------------------------

    def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        return self._route("the range", [(r.key, r.range_end)]).range(r)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return await self.store_for(r.key).put(r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return await self._route("the delete", [(r.key, r.range_end)]).delete_range(r)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        """A txn on one partition: its compares and ops (nested txns too) must all fall in it;
        there is no atomic txn across partitions."""
        return await self._route("the txn", _txn_spans(r)).txn(r)

    async def compact(self, revision: int, partition: str,
                      physical: bool = False) -> pb.CompactionResponse:
        """Compacts one partition (revisions are per partition)."""
        return await self.store(partition).compact(
            pb.CompactionRequest(revision=revision, physical=physical))

    # -- leases: each in one partition ---------------------------------------------------------

    async def lease_grant(self, r: pb.LeaseGrantRequest,
                          partition: str | None = None) -> pb.LeaseGrantResponse:
        return await self.store(partition).lease_grant(r)

    async def lease_revoke(self, r: pb.LeaseRevokeRequest,
                           partition: str | None = None) -> pb.LeaseRevokeResponse:
        return await self.store(partition).lease_revoke(r)

    async def lease_keepalive(self, lease_id: int,
                              partition: str | None = None) -> pb.LeaseKeepAliveResponse:
        return await self.store(partition).lease_keepalive(lease_id)

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest,
                                 partition: str | None = None) -> pb.LeaseTimeToLiveResponse:
        return await self.store(partition).lease_time_to_live(r)


def _txn_spans(r: pb.TxnRequest) -> Iterable[Span]:
    for c in r.compare:
        yield c.key, c.range_end
    for op in (*r.success, *r.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            yield op.request_range.key, op.request_range.range_end
        elif which == "request_put":
            yield op.request_put.key, b""
        elif which == "request_delete_range":
            yield op.request_delete_range.key, op.request_delete_range.range_end
        elif which == "request_txn":
            yield from _txn_spans(op.request_txn)
        # an empty op touches no key: the store rejects it
