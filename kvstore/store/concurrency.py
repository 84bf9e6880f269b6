"""etcd's lock and election recipes (clientv3/concurrency's Mutex and Election), run over the
store's own public API, as etcd's v3lock and v3election servers run them over an in-process
client of their own KV.

- A session's lease: the caller's, or, for lease 0, a new one of 60 s (etcd's NewSession grants
  it and the server orphans it at once: it is left to expire).
- Lock: the key ``name + "/" + lease in hex``, put with the lease if absent; the holder is the
  key of the prefix with the smallest create revision. A waiter waits, one watch at a time, for
  the deletion of the last-created key below its own create revision, until none is left.
- Election: Campaign is the same wait with the proclaimed value as the key's value; Proclaim,
  Resign and Leader act on the key (guarded by its create revision); Observe follows the
  leader's key and, when it is deleted, the next leader.

Waiting is a watch on the store's watch hub (no polling). A wait that is cancelled (the client
went away) deletes the key it created, as etcd's Mutex.Lock and Election.Campaign do; a wait
that fails (its revision compacted) does the same for a lock.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import NamedTuple

from .. import errors
from ..api import kv_pb2, rpc_pb2 as pb

SESSION_TTL = 60  # concurrency.defaultSessionTTL
NO_LEASE = 0

_CREATE, _ASCEND, _DESCEND = pb.RangeRequest.CREATE, pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND
_DELETE = kv_pb2.Event.DELETE


class ElectionNotLeader(errors.EtcdError):
    message = "election: not leader"  # concurrency.ErrElectionNotLeader


class ElectionNoLeader(errors.EtcdError):
    message = "election: no leader"  # concurrency.ErrElectionNoLeader


class LostWatcher(errors.EtcdError):
    message = "lost watcher waiting for delete"


class LeaderKey(NamedTuple):
    name: bytes
    key: bytes
    rev: int
    lease: int


# -- the store's API, as etcd's client calls it ------------------------------------------------

def prefix_end(prefix: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd: the range end covering every key with this prefix."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


async def _get(store, r: pb.RangeRequest) -> pb.RangeResponse:
    await store.linearizable()  # clientv3's Get is a linearizable read
    return store.range(r)


def _first_created(prefix: bytes) -> pb.RangeRequest:
    """clientv3.WithFirstCreate on a prefix."""
    return pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=1,
                           sort_order=_ASCEND, sort_target=_CREATE)


def _is_created(key: bytes, rev: int) -> pb.Compare:
    return pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                      create_revision=rev)


def _put(key: bytes, value: bytes, lease: int) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))


def _range(r: pb.RangeRequest) -> pb.RequestOp:
    return pb.RequestOp(request_range=r)


async def session_lease(store, lease: int) -> int:
    """concurrency.NewSession(WithLease(lease)): the lease, or a new one for NO_LEASE."""
    if lease != NO_LEASE:
        return lease
    return (await store.lease_grant(pb.LeaseGrantRequest(TTL=SESSION_TTL))).ID


def own_key(prefix: bytes, lease: int) -> bytes:
    return prefix + b"%x" % lease  # Go's fmt "%s%x"


_cleanups: set[asyncio.Task] = set()


def _detach(work: Awaitable) -> None:
    """Runs a cleanup to its end although the caller is being cancelled (etcd runs it on the
    client's own context, not the cancelled one)."""
    task = asyncio.ensure_future(work)
    _cleanups.add(task)
    task.add_done_callback(_cleanup_done)


def _cleanup_done(task: asyncio.Task) -> None:
    _cleanups.discard(task)
    if not task.cancelled():
        task.exception()  # a store stopping meanwhile: nothing more to do


# -- waiting for deletions ---------------------------------------------------------------------

class KeyWatch:
    """One watch on the store's hub, its responses read in order; closed on exit."""

    def __init__(self, store, key: bytes, range_end: bytes = b"", start_revision: int = 0):
        self._stream = store.watch_stream()
        self._stream.create(pb.WatchCreateRequest(key=key, range_end=range_end,
                                                  start_revision=start_revision))

    def __enter__(self) -> KeyWatch:
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()

    async def responses(self) -> AsyncIterator[pb.WatchResponse]:
        """Responses with events; raises what ends the watch (compaction) as etcd's client
        reports it."""
        while (resp := await self._stream.next()) is not None:
            if resp.compact_revision:
                raise errors.Compacted()
            if resp.canceled:
                raise LostWatcher()
            if resp.events:
                yield resp
        raise LostWatcher()


async def wait_delete(store, key: bytes, rev: int) -> None:
    """Until ``key`` is deleted at ``rev`` or later (concurrency's waitDelete)."""
    with KeyWatch(store, key, start_revision=rev) as watch:
        async for resp in watch.responses():
            if any(ev.type == _DELETE for ev in resp.events):
                return


async def wait_deletes(store, prefix: bytes, max_create_rev: int) -> pb.ResponseHeader:
    """Until no key of the prefix was created at ``max_create_rev`` or before; the header of
    the read that saw none (concurrency's waitDeletes)."""
    last_created = pb.RangeRequest(key=prefix, range_end=prefix_end(prefix), limit=1,
                                   sort_order=_DESCEND, sort_target=_CREATE,
                                   max_create_revision=max_create_rev)
    while True:
        resp = await _get(store, last_created)
        if not resp.kvs:
            return resp.header
        await wait_delete(store, resp.kvs[0].key, resp.header.revision)


# -- the mutex ---------------------------------------------------------------------------------

async def lock(store, name: bytes, lease: int) -> tuple[pb.ResponseHeader, bytes]:
    """Mutex.Lock: (header, key) once the caller holds the lock ``name``."""
    lease = await session_lease(store, lease)
    prefix = name + b"/"
    key = own_key(prefix, lease)
    owner = _range(_first_created(prefix))
    resp = await store.txn(pb.TxnRequest(
        compare=[_is_created(key, 0)],
        success=[_put(key, b"", lease), owner],
        failure=[_range(pb.RangeRequest(key=key)), owner]))
    my_rev = resp.header.revision
    if not resp.succeeded:
        my_rev = resp.responses[0].response_range.kvs[0].create_revision
    holder = resp.responses[1].response_range.kvs
    if not holder or holder[0].create_revision == my_rev:
        return resp.header, key
    try:
        header = await wait_deletes(store, prefix, my_rev - 1)
    except asyncio.CancelledError:
        _detach(unlock(store, key))
        raise
    except Exception:
        await unlock(store, key)
        raise
    return header, key


async def unlock(store, key: bytes) -> pb.ResponseHeader:
    """Mutex.Unlock: deletes the lock's key."""
    return (await store.delete_range(pb.DeleteRangeRequest(key=key))).header


# -- the election ------------------------------------------------------------------------------

async def campaign(store, name: bytes, lease: int, value: bytes
                   ) -> tuple[pb.ResponseHeader, LeaderKey]:
    """Election.Campaign: (header of the campaign's txn, leader key) once elected."""
    lease = await session_lease(store, lease)
    prefix = name + b"/"
    key = own_key(prefix, lease)
    resp = await store.txn(pb.TxnRequest(
        compare=[_is_created(key, 0)],
        success=[_put(key, value, lease)],
        failure=[_range(pb.RangeRequest(key=key))]))
    leader = LeaderKey(name, key, resp.header.revision, lease)
    if not resp.succeeded:
        kv = resp.responses[0].response_range.kvs[0]
        leader = leader._replace(rev=kv.create_revision)
        if kv.value != value:
            try:
                await proclaim(store, leader, value)
            except Exception:
                await _resign(store, leader)
                raise
    try:
        await wait_deletes(store, prefix, leader.rev - 1)
    except asyncio.CancelledError:
        _detach(_resign(store, leader))  # clean up in case of context cancel
        raise
    return resp.header, leader


async def proclaim(store, leader: LeaderKey, value: bytes) -> pb.ResponseHeader:
    """Election.Proclaim (of a resumed election): the leader's key gets the value, if it is
    still the one created at ``leader.rev``."""
    lease = await session_lease(store, leader.lease)
    resp = await store.txn(pb.TxnRequest(compare=[_is_created(leader.key, leader.rev)],
                                         success=[_put(leader.key, value, lease)]))
    if not resp.succeeded:
        raise ElectionNotLeader()
    return resp.header


async def resign(store, leader: LeaderKey) -> pb.ResponseHeader:
    """Election.Resign (of a resumed election): deletes the leader's key if it is still the
    one created at ``leader.rev``; not being the leader is no error."""
    await session_lease(store, leader.lease)  # as etcd, a new session for lease 0
    return await _resign(store, leader)


async def _resign(store, leader: LeaderKey) -> pb.ResponseHeader:
    resp = await store.txn(pb.TxnRequest(
        compare=[_is_created(leader.key, leader.rev)],
        success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=leader.key))]))
    return resp.header


async def leader(store, name: bytes) -> tuple[pb.ResponseHeader, kv_pb2.KeyValue]:
    """Election.Leader: the first-created key of the election, or ElectionNoLeader."""
    resp = await _get(store, _first_created(name + b"/"))
    if not resp.kvs:
        raise ElectionNoLeader()
    return resp.header, resp.kvs[0]


async def observe(store, name: bytes) -> AsyncIterator[tuple[pb.ResponseHeader, kv_pb2.KeyValue]]:
    """Election.Observe: the leader's key and each of its updates, then the next leader's...
    Ends (without error) when a read or a watch fails, as etcd's channel closes."""
    prefix = name + b"/"
    try:
        while True:
            resp = await _get(store, _first_created(prefix))
            if resp.kvs:
                header, kv = resp.header, resp.kvs[0]
            else:
                header, kv = await _first_put(store, prefix, resp.header.revision)
            yield header, kv
            with KeyWatch(store, kv.key, start_revision=header.revision + 1) as watch:
                async for wr in watch.responses():
                    deleted = False
                    for ev in wr.events:
                        if ev.type == _DELETE:
                            deleted = True
                            break
                        yield wr.header, ev.kv
                    if deleted:
                        break
    except errors.EtcdError:
        return


async def _first_put(store, prefix: bytes, rev: int) -> tuple[pb.ResponseHeader, kv_pb2.KeyValue]:
    """The first key put on the prefix from ``rev`` on; the header's revision is the put's."""
    with KeyWatch(store, prefix, prefix_end(prefix), start_revision=rev) as watch:
        async for wr in watch.responses():
            for ev in wr.events:
                if ev.type != _DELETE:
                    header = pb.ResponseHeader()
                    header.CopyFrom(wr.header)
                    header.revision = ev.kv.mod_revision
                    return header, ev.kv
    raise LostWatcher()  # responses() ends by raising
