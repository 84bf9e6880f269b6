"""The two halves of a member's persistence, as interfaces every backend implements.

The **shared log** is the consensus: an ordered sequence of opaque records, numbered from 1,
that several members may append to and that every member follows and applies in order, its
own records included (state-machine replication). With one member on a local disk (LMDB) or in
memory it is the same contract with a single writer.

**Member storage** is what one member keeps for itself: a few durable facts (its ids, its
start count) and snapshots of its applied state. A snapshot at index N lets the member resume
following the log after N.

A **cluster** is what the members of a shared log do through it besides the log: elect the
member that owns lease expiry, know who is alive, ask the leader, share snapshots with members
that start late. A single member has none.
"""
from __future__ import annotations

import asyncio
import mmap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

# A record of no bytes is the log's own: a barrier a replicated log appends to find its read
# index (JetStreamLog.read_index). Followers deliver it like any record, so indexes stay dense;
# it holds nothing to apply.
BARRIER = b""


class LogUnavailable(Exception):
    """The log cannot take or give records now (unreachable, no leader); it may come back."""


class DataDirCorrupt(Exception):
    """Something the data dir must hold is missing, short or damaged: the member refuses to
    start rather than serve partial data. The message names the file and what is wrong."""


class LogFull(Exception):
    """The log's medium is full (no space, quota, file-size limit): the record was not
    appended, nothing of it is durable, and the next append may succeed once space is freed."""


class Trimmed(Exception):
    """The records a follower asked for were trimmed away: it must install a snapshot taken
    at ``first_index - 1`` or later."""

    def __init__(self, first_index: int):
        super().__init__(f"log trimmed: the first record kept is {first_index}")
        self.first_index = first_index


class SharedLog(Protocol):
    # True when this member is the only writer and acknowledges nothing before applying it:
    # then the applied state already holds every acknowledged write, and a linearizable read
    # needs no read index.
    local: bool
    # How many appends the proposer may have in flight. 1 for a local disk: while one batch is
    # being made durable the next one grows (group commit).
    max_in_flight: int
    # The largest record the log takes, in bytes.
    max_record_bytes: int
    # Where the records are, for messages (a file, a stream).
    name: str

    async def open(self) -> None:
        """Connects (or opens files); the log is usable afterwards."""

    def append(self, record: bytes, record_id: str) -> asyncio.Future[int]:
        """Appends one record; the future gets its index once it is in the log (durable, or
        on a local log written and about to be: followers see it only once it is durable).
        ``record_id`` names the record for de-duplication of a retried append."""

    def follow(self, after: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Every record with index > ``after``, in order, in batches, forever (new records as
        they are appended), barriers (BARRIER) among them. Raises Trimmed if ``after + 1`` is
        no longer in the log."""

    async def read_index(self) -> int:
        """An index at or after the newest record in the log as of the call: a read that
        waits until it is applied sees every write acknowledged before the call. A replicated
        log may append a barrier to find it."""

    def held(self) -> tuple[int, int] | None:
        """(first, last) index of the records this member's own medium holds (first > last:
        none); None when the log is not this member's alone (a replicated stream)."""

    async def trim(self, through: int) -> None:
        """Drops records up to ``through`` (a snapshot covers them)."""

    def size_bytes(self) -> int:
        """Bytes the log takes on its medium on this member (0 when it is not local)."""

    def size_in_use(self) -> int:
        """Of ``size_bytes``, the bytes holding records (the rest is free space in files)."""

    async def defragment(self) -> None:
        """Returns the free space in the log's files to the medium (etcd's Defragment)."""

    async def close(self) -> None:
        ...


class MemberStorage(Protocol):
    durable: bool

    def get_meta(self, key: str) -> bytes | None:
        """Small durable facts about this member (ids, start count)."""

    def put_meta(self, key: str, value: bytes) -> None:
        ...

    async def save_snapshot(self, index: int, parts: AsyncIterator[bytes]) -> None:
        """Stores the state as of ``index`` (the concatenation of ``parts``, produced while
        being stored: a large state never sits whole in memory). If ``parts`` raises, nothing
        is stored and the exception propagates."""

    def load_snapshot(self) -> tuple[int, bytes] | None:
        """The newest snapshot as (index, data), or None. Raises DataDirCorrupt if one that
        storage recorded is gone."""

    def open_snapshot(self) -> AbstractContextManager[tuple[int, bytes | mmap.mmap] | None]:
        """As load_snapshot, for as long as the context lasts: the data may be a map of the
        file (recovery reads it without copying it)."""

    def snapshot_name(self, index: int) -> str:
        """Where the snapshot at ``index`` is (a path), for messages."""

    def size_bytes(self) -> int:
        ...

    async def close(self) -> None:
        ...


class MemberInfo(NamedTuple):
    member_id: int
    name: str
    client_urls: list[str]
    peer_urls: list[str]


class LeaderRequests(NamedTuple):
    """What the leader answers for the other members."""
    keepalive: Callable[[int], int]  # lease id -> TTL renewed to (0: unknown or expired)
    time_to_live: Callable[[int], int]  # lease id -> seconds left (-1: unknown)


class Cluster(Protocol):
    # what member list shows as a member's peer URLs unless it is told (the log's servers)
    peer_urls: list[str]

    async def open(self) -> None:
        """What the cluster keeps (buckets), before the member catches up with the log."""

    async def start(self, me: MemberInfo, requests: LeaderRequests,
                    elected: Callable[[int], Awaitable[None]], deposed: Callable[[], None]) -> None:
        """Once caught up: announce this member, campaign for leadership (``elected(term)``
        when won, ``deposed()`` when lost) and answer ``requests`` while leading."""

    def has_leader(self) -> bool:
        ...

    async def hand_over(self, member_id: int) -> None:
        """This member, the leader, hands its leadership to another (MoveLeader)."""

    def members(self) -> list[MemberInfo]:
        """The live members, this one included."""

    async def keepalive(self, lease_id: int) -> int:
        """Asks the leader to renew a lease: the TTL it renewed it to (0: unknown or expired)."""

    async def time_to_live(self, lease_id: int) -> int:
        """Asks the leader how long a lease has left (-1: unknown)."""

    async def shared_snapshot_index(self) -> int:
        ...

    async def upload_snapshot(self, index: int, data: bytes) -> None:
        ...

    async def download_snapshot(self) -> tuple[int, bytes]:
        """The shared snapshot: (its log index, its bytes); (0, b"") when there is none."""

    async def close(self) -> None:
        ...
