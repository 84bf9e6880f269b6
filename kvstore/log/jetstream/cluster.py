"""What the members of one kvstore cluster do through NATS besides sharing the log.

- **Election** of the member that owns lease expiry (election.py).
- **Membership:** every member puts its record (id, name, URLs) into a key-value bucket every
  HEARTBEAT seconds; records live MEMBER_TTL seconds, so the live members are the ones heard
  from lately. Members see each other's puts as they happen (a plain subscription on the
  bucket's subjects).
- **The leader link:** the leader answers the other members' keep-alives and time-to-live
  questions on a subject of the cluster (NATS request-reply).
- **Snapshots for new members:** the leader keeps its newest snapshot in an object store
  bucket; a member that finds the stream trimmed past what it applied (a new or wiped member,
  or one that was away too long) starts from it, then follows the stream from its index.
"""
from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgpack
import nats.errors
import nats.js.api
import nats.js.errors

from ... import errors
from ..base import LeaderRequests, MemberInfo
from . import buckets
from .election import GOODBYE_TIMEOUT, TTL as ELECTION_TTL, Election
from .log import JetStreamLog

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription
    from nats.js.kv import KeyValue
    from nats.js.object_store import ObjectStore

logger = logging.getLogger(__name__)

HEARTBEAT = 2.0
MEMBER_TTL = 3 * HEARTBEAT
LINK_TIMEOUT = 2.0
SNAPSHOT_OBJECT = "snapshot"


class JetStreamCluster:
    def __init__(self, wal: JetStreamLog):
        self._log = wal
        self.peer_urls = wal.servers  # members reach each other through NATS
        self._names = wal.names
        self.me: MemberInfo | None = None
        self.election: Election | None = None
        self._heard: dict[int, tuple[MemberInfo, float]] = {}
        self._members_kv: KeyValue | None = None  # opened by open()
        self._election_kv: KeyValue | None = None  # opened by open()
        self._objects: ObjectStore | None = None  # opened by open()
        self._leader_sub: Subscription | None = None
        self._requests: LeaderRequests | None = None
        self._tasks: list[asyncio.Task] = []

    async def open(self) -> None:
        """The cluster's buckets (created by the first member), before the member catches up:
        catching up may need the shared snapshot."""
        js = self._nc().jetstream(timeout=LINK_TIMEOUT)
        replicas = await buckets.retrying("stream info", self._replicas)
        self._members_kv = await buckets.key_value(js, self._names.members_bucket, replicas,
                                                   MEMBER_TTL)
        self._election_kv = await buckets.key_value(js, self._names.election_bucket, replicas,
                                                    ELECTION_TTL)
        self._objects = await buckets.object_store(js, self._names.snapshots_bucket, replicas)

    async def start(self, me: MemberInfo, requests: LeaderRequests,
                    elected: Callable[[int], Awaitable[None]], deposed: Callable[[], None]) -> None:
        """Once caught up: membership heartbeats, and the campaign for leadership."""
        nc = self._nc()
        self.me, self._requests = me, requests
        await nc.subscribe(f"$KV.{self._names.members_bucket}.>", cb=self._on_member)
        await self._read_members()
        assert self._election_kv is not None  # open() comes first
        self.election = Election(self._election_kv, me.member_id,
                                 lambda term: self._on_elected(term, elected),
                                 lambda: self._on_deposed(deposed))
        self.election.start()
        self._tasks = [asyncio.get_running_loop().create_task(self._heartbeat(), name="membership")]

    def _nc(self) -> Client:
        nc = self._log.nc
        assert nc is not None  # the log is opened before the cluster
        return nc

    async def _replicas(self) -> int:
        return (await self._log.stream_info())["config"].get("num_replicas", 1)

    def has_leader(self) -> bool:
        return self._log.connected and self.election is not None and self.election.has_leader()

    async def hand_over(self, member_id: int) -> None:
        assert self.election is not None  # start() came first
        await self.election.hand_over(member_id)

    # -- membership ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        me = self.me
        assert me is not None and self._members_kv is not None  # start() and open() came first
        record = msgpack.packb(list(me))
        while True:
            try:
                await self._members_kv.put(f"{me.member_id:x}", record)
            except Exception as e:
                logger.debug("membership heartbeat: %r", e)
            await asyncio.sleep(HEARTBEAT)

    async def _on_member(self, msg) -> None:
        try:
            info = MemberInfo(*msgpack.unpackb(msg.data))
        except Exception:
            return  # a delete marker, or not ours
        self._heard[info.member_id] = (info, time.monotonic())

    async def _read_members(self) -> None:
        assert self._members_kv is not None  # open() came first
        try:
            keys = await self._members_kv.keys()
        except Exception:  # no keys yet, or not reachable: heartbeats will tell
            return
        for key in keys:
            try:
                entry = await self._members_kv.get(key)
                info = MemberInfo(*msgpack.unpackb(entry.value))
            except Exception:
                continue
            self._heard.setdefault(info.member_id, (info, time.monotonic()))

    def members(self) -> list[MemberInfo]:
        """The members heard from lately, this one included."""
        now = time.monotonic()
        live = {m.member_id: m for m, at in self._heard.values() if now - at < MEMBER_TTL}
        assert self.me is not None  # start() came first
        live[self.me.member_id] = self.me
        return sorted(live.values(), key=lambda m: m.name)

    # -- the leader link -----------------------------------------------------------------------

    async def _on_elected(self, term: int, elected) -> None:
        if self._leader_sub is None:
            self._leader_sub = await self._nc().subscribe(self._names.leader_subject,
                                                            cb=self._answer)
        await elected(term)

    def _on_deposed(self, deposed) -> None:
        sub, self._leader_sub = self._leader_sub, None
        if sub is not None:
            asyncio.get_running_loop().create_task(sub.unsubscribe())
        deposed()

    async def _answer(self, msg) -> None:
        try:
            op, lease_id = msgpack.unpackb(msg.data)
            assert self._requests is not None  # set by start() before this member can lead
            handler = self._requests.keepalive if op == "keepalive" else self._requests.time_to_live
            await msg.respond(msgpack.packb(handler(lease_id)))
        except Exception as e:
            logger.warning("leader request failed: %r", e)

    async def ask_leader(self, op: str, lease_id: int) -> int:
        try:
            msg = await self._nc().request(self._names.leader_subject,
                                             msgpack.packb([op, lease_id]), timeout=LINK_TIMEOUT)
        except nats.errors.NoRespondersError:
            raise errors.NoLeader() from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise errors.Timeout() from None
        except nats.errors.Error:
            raise errors.NoLeader() from None
        return msgpack.unpackb(msg.data)

    async def keepalive(self, lease_id: int) -> int:
        return await self.ask_leader("keepalive", lease_id)

    async def time_to_live(self, lease_id: int) -> int:
        return await self.ask_leader("ttl", lease_id)

    # -- snapshots for new members -------------------------------------------------------------

    async def upload_snapshot(self, index: int, data: bytes) -> None:
        assert self._objects is not None  # open() came first
        await self._objects.put(SNAPSHOT_OBJECT, io.BytesIO(data), meta=nats.js.api.ObjectMeta(
            name=SNAPSHOT_OBJECT, description=str(index)))

    async def shared_snapshot_index(self) -> int:
        assert self._objects is not None  # open() came first
        try:
            info = await self._objects.get_info(SNAPSHOT_OBJECT)
        except nats.js.errors.ObjectNotFoundError:
            return 0
        return int(info.description or 0)

    async def download_snapshot(self) -> tuple[int, bytes]:
        """The shared snapshot: (its log index, its bytes); (0, b"") when there is none."""
        into = io.BytesIO()  # not the client's own concatenation: quadratic in the chunks
        assert self._objects is not None  # open() came first
        try:
            result = await self._objects.get(SNAPSHOT_OBJECT, writeinto=into)
        except nats.js.errors.ObjectNotFoundError:
            return 0, b""
        return int(result.info.description or 0), into.getvalue()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.election is not None:
            await self.election.stop()
        if self._members_kv is not None and self.me is not None:
            try:  # bounded: at shutdown NATS may be unreachable (the record expires anyway)
                await asyncio.wait_for(self._members_kv.delete(f"{self.me.member_id:x}"),
                                       GOODBYE_TIMEOUT)
            except Exception:
                pass
