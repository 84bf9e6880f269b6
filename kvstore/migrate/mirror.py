"""The mirror: the source's revisions after the copy's, applied to the copy one for one.

It watches every key of the source from the revision after the copy's. etcd never splits a
revision's events across watch responses, so each revision arrives whole; it becomes one Txn of
puts and deletes in the same order, proposed to the store as the source admitted it
(Store.mirror). From the same state, the same writes give the same result: each put gets the
source's create revision and version, and each Txn one revision, the source's. That is checked
as each one applies; a difference stops the mirror (Diverged) rather than go on serving
something else than the source.

Leases: a grant has no revision, so a lease is known by the first put that names it; it is
granted here first, with the source's id and TTL. The copy's own clock expires nothing (the
store is opened with lease_expiry off): the source's expiries and revocations arrive as its
deletes. What it cannot see is a revoked lease that held no key, nor a compaction: ``cut_over``
does those.

Revisions are proposed without waiting for each to apply (up to WINDOW ahead): the store's
proposer batches them into its log records, which is what lets the mirror keep up with a
loaded source. A lost connection resumes from the next revision not yet proposed; a source
that compacted past it raises Compacted (the copy must be taken again).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from ..api import kv_pb2, rpc_pb2 as pb
from ..client import Client, GrpcError
from ..client.status import CANCELLED, UNAUTHENTICATED, UNAVAILABLE, UNKNOWN
from ..store.store import Store

logger = logging.getLogger(__name__)

WINDOW = 1000  # revisions proposed and not yet checked
IDLE_CHECK = 0.05  # seconds without a response after which what is proposed is checked
RETRY_FIRST, RETRY_MOST = 0.2, 5.0  # seconds between reconnections, doubling
ALL_KEYS = (b"\0", b"\0")  # key, range_end: every key
# A connection lost, not a refusal; or an auth token that expired (a new connection logs in).
_RETRIED = (UNAVAILABLE, CANCELLED, UNKNOWN, UNAUTHENTICATED)


class Diverged(Exception):
    """The copy no longer matches the source: the mirror stops."""


class Compacted(Exception):
    """The source compacted a revision the mirror still needs: the copy must be taken again."""

    def __init__(self, compact_revision: int, needed: int):
        super().__init__(f"the source compacted its history through revision {compact_revision}, "
                         f"and the mirror needs revision {needed}")
        self.compact_revision = compact_revision
        self.needed = needed


class Mirror:
    def __init__(self, store: Store, connect: Callable[[], Awaitable[Client]]):
        self.store = store
        self._connect = connect
        self.next_revision = store.mvcc.current_rev + 1  # the next one to propose
        self.source_revision = 0  # the source's newest, as its last response said
        self._pending: deque[tuple[int, list, asyncio.Future]] = deque()
        self._granting: set[int] = set()  # leases proposed, maybe not yet applied

    @property
    def applied(self) -> int:
        """The newest source revision the copy has applied (each is checked soon after)."""
        return self.store.mvcc.current_rev

    async def run(self, catch_up: bool = False) -> int:
        """Follows the source until cancelled; with ``catch_up``, until the revision the
        source had when the (last) watch began is applied. Returns the applied revision."""
        delay = RETRY_FIRST
        while True:
            try:
                client = await self._connect()
            except OSError as e:
                logger.warning("cannot reach the source (%s): trying again in %.1fs", e, delay)
            else:
                try:
                    if await self._follow(client, catch_up):
                        await self._check(0)
                        return self.applied
                    logger.warning("the source ended the watch: resuming from revision %d",
                                   self.next_revision)
                except (GrpcError, OSError, ConnectionError) as e:
                    if isinstance(e, GrpcError) and e.code not in _RETRIED:
                        raise
                    logger.warning("lost the source (%s): resuming from revision %d",
                                   e, self.next_revision)
                    delay = RETRY_FIRST
                finally:
                    await client.close()
            await self._check(0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)

    async def _follow(self, client: Client, catch_up: bool) -> bool:
        ws = client.watch()
        responses = ws.__aiter__()
        next_response = None
        try:
            await ws.create(*ALL_KEYS, start_revision=self.next_revision)
            target = None
            while True:
                next_response = asyncio.ensure_future(responses.__anext__())
                while self._pending and not next_response.done():
                    # the source is quiet: check what is proposed rather than wait for more
                    await asyncio.wait({next_response}, timeout=IDLE_CHECK)
                    if not next_response.done():
                        await self._check(0)
                try:
                    resp = await next_response
                except StopAsyncIteration:
                    return False
                if resp.compact_revision:
                    raise Compacted(resp.compact_revision, self.next_revision)
                if resp.canceled:
                    raise Diverged(f"the source cancelled the mirror's watch: {resp.cancel_reason}")
                self.source_revision = max(self.source_revision, resp.header.revision)
                if resp.created:
                    target = resp.header.revision  # what "caught up" means for this watch
                await self._apply(client, resp.events)
                await self._check(WINDOW)
                if catch_up and target is not None and self.next_revision > target:
                    return True
        finally:
            if next_response is not None and not next_response.done():
                next_response.cancel()
            ws.close()

    async def _apply(self, client: Client, events) -> None:
        """Proposes each revision among ``events`` (consecutive events of one revision)."""
        i, n = 0, len(events)
        while i < n:
            revision = events[i].kv.mod_revision
            j = i + 1
            while j < n and events[j].kv.mod_revision == revision:
                j += 1
            await self._propose(client, revision, events[i:j])
            i = j

    async def _propose(self, client: Client, revision: int, events) -> None:
        if revision != self.next_revision:
            raise Diverged(f"the source's revision {revision} came where revision "
                           f"{self.next_revision} was due")
        store = self.store
        ops = []
        for ev in events:
            kv = ev.kv
            if ev.type == kv_pb2.Event.PUT:
                if kv.lease and kv.lease not in store.leases and kv.lease not in self._granting:
                    await self._grant(client, kv.lease)
                ops.append(pb.RequestOp(request_put=pb.PutRequest(
                    key=kv.key, value=kv.value, lease=kv.lease)))
            else:
                ops.append(pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=kv.key)))
        fut = store.mirror(pb.TxnRequest(success=ops))
        self._pending.append((revision, list(events), fut))
        self.next_revision += 1

    async def _grant(self, client: Client, lease_id: int) -> None:
        ttl = await client.lease_time_to_live(pb.LeaseTimeToLiveRequest(ID=lease_id))
        # Revoked or expired since (TTL -1): its keys' deletes follow in the stream; the
        # shortest lease stands in until then.
        granted = ttl.grantedTTL if ttl.TTL != -1 else 0
        self._granting.add(lease_id)
        fut = self.store.mirror(pb.LeaseGrantRequest(ID=lease_id, TTL=granted))
        fut.add_done_callback(lambda f: self._granting.discard(lease_id))

    async def _check(self, window: int) -> None:
        """Checks the oldest proposals against the source's events: those applied already,
        and more, waiting, until at most ``window`` are pending."""
        pending = self._pending
        while len(pending) > window or pending and pending[0][2].done():
            revision, events, fut = pending[0]
            try:
                resp = pb.TxnResponse.FromString(await fut)
            except Exception as e:
                raise Diverged(f"the source's revision {revision} does not apply here: {e!r}") from None
            pending.popleft()
            if resp.header.revision != revision:
                raise Diverged(f"the source's revision {revision} made revision "
                               f"{resp.header.revision} here: the copy and the source differ")
            self._check_puts(revision, events)

    def _check_puts(self, revision: int, events) -> None:
        for ev in events:
            if ev.type != kv_pb2.Event.PUT:
                continue
            want = ev.kv
            got = self.store.range_as_server(pb.RangeRequest(key=want.key, revision=revision)).kvs
            if not got or got[0] != want:
                raise Diverged(f"key {want.key!r} at revision {revision}: the source has "
                               f"{_kv_text(want)}, the copy {_kv_text(got[0]) if got else 'nothing'}")

    async def cut_over(self, client: Client) -> tuple[int, int]:
        """What the source did that no event shows, done here too; call once caught up, with
        writes to the source stopped. Its compaction: the copy is compacted to the source's
        compact revision (then HashKV agrees on both sides). And the leases it revoked while
        they held no key: revoked here. Returns (compact revision, leases revoked)."""
        await self._check(0)
        store = self.store
        compacted = (await client.hash_kv(pb.HashKVRequest())).compact_revision
        if compacted > store.mvcc.compact_rev:
            await store.mirror(pb.CompactionRequest(revision=compacted))
        source = {lease.ID for lease in (await client.lease_leases()).leases}
        gone = [lease for lease_id, lease in store.leases.leases.items() if lease_id not in source]
        for lease in gone:
            if lease.keys:
                raise Diverged(f"lease {lease.id:x} is gone from the source but holds "
                               f"{len(lease.keys)} keys here")
        for lease in gone:
            await store.mirror(pb.LeaseRevokeRequest(ID=lease.id))
        return compacted, len(gone)


def _kv_text(kv) -> str:
    return (f"create {kv.create_revision}, mod {kv.mod_revision}, version {kv.version}, "
            f"lease {kv.lease:x}, {len(kv.value)} bytes")
