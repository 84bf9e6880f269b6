"""Cluster membership as this deployment has it, and etcd's answers to changes of it.

A single member is the only one; the members of a shared log are those its cluster knows
(kvstore/log/jetstream). Members join by starting on the log and leave by stopping, so the
changes etcd makes through raft get etcd's errors here, after etcd's own checks of the request.
URLs are checked as etcd's types.NewURLs does.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import errors
from ..api import rpc_pb2 as pb

if TYPE_CHECKING:
    from .store import Store

# etcd's peer URL default (--initial-advertise-peer-urls), shown by MemberList for a member
# that has no peers to be reached by.
DEFAULT_PEER_URL = "http://localhost:2380"
MOVE_LEADER_TIMEOUT = 5.0  # for the new leader's LEADER entry to be applied here
PEER_URLS_KEY = "peer_urls"  # in member storage: this member's peer URLs, once MemberUpdate set them


def valid_url(url: str) -> bool:
    """http, https, unix or unixs; a host:port; no path."""
    try:
        u = urlsplit(url.strip())
        port = u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https", "unix", "unixs"):
        return False
    if port is None and not u.netloc.endswith(":"):  # Go's SplitHostPort wants a port (may be empty)
        return False
    return not u.path


class Members:
    def __init__(self, store: Store):
        self._store = store

    def current(self) -> list[pb.Member]:
        if self._store.cluster is None:
            ident = self._store.identity
            assert ident is not None  # requests follow start()
            return [pb.Member(ID=ident.member_id, name=self._store.name,
                              clientURLs=self._store.config.client_urls, peerURLs=self.peer_urls())]
        return [pb.Member(ID=m.member_id, name=m.name, clientURLs=m.client_urls,
                          peerURLs=m.peer_urls) for m in self._store.cluster.members()]

    def peer_urls(self) -> list[str]:
        """This member's peer URLs: as MemberUpdate last set them, else as configured."""
        updated = self._store.storage.get_meta(PEER_URLS_KEY)
        if updated is not None:
            return updated.decode().split(",")
        return self._store.config.peer_urls or [DEFAULT_PEER_URL]

    def list_members(self) -> pb.MemberListResponse:
        return self._store._fill(pb.MemberListResponse(members=self.current()), revision=False)

    def get(self, member_id: int) -> pb.Member:
        for m in self.current():
            if m.ID == member_id:
                return m
        raise errors.MemberNotFound()

    def _check_peer_urls(self, urls, member_id: int = 0) -> None:
        if not urls or not all(valid_url(u) for u in urls):
            raise errors.MemberBadURLs()
        for m in self.current():
            if m.ID != member_id and set(m.peerURLs) & set(urls):
                raise errors.PeerURLExist()

    async def add(self, r: pb.MemberAddRequest) -> pb.MemberAddResponse:
        """Members join a kvstore cluster by starting on its log, not by being added: after
        etcd's checks of the URLs, the answer is etcd's refusal of a re-configuration."""
        self._store.auth.check_admin()  # membership changes need root
        self._check_peer_urls(list(r.peerURLs))
        raise errors.MemberNotEnoughStarted()

    async def remove(self, member_id: int) -> pb.MemberRemoveResponse:
        """As etcd answers for the only member; members of a shared log leave by stopping."""
        self._store.auth.check_admin()  # membership changes need root
        self.get(member_id)
        raise errors.MemberNotEnoughStarted()

    async def update(self, r: pb.MemberUpdateRequest) -> pb.MemberUpdateResponse:
        """Sets this member's peer URLs (kept in its data dir, as etcd keeps membership)."""
        self._store.auth.check_admin()  # membership changes need root
        self.get(r.ID)
        self._check_peer_urls(list(r.peerURLs), r.ID)
        assert self._store.identity is not None  # requests follow start()
        if r.ID != self._store.identity.member_id or self._store.cluster is not None:
            raise errors.MemberNotEnoughStarted()
        self._store.storage.put_meta(PEER_URLS_KEY, ",".join(r.peerURLs).encode())
        return self._store._fill(pb.MemberUpdateResponse(members=self.current()), revision=False)

    async def promote(self, member_id: int) -> pb.MemberPromoteResponse:
        """No member is a learner here."""
        self._store.auth.check_admin()  # membership changes need root
        self.get(member_id)
        raise errors.MemberNotLearner()

    async def move_leader(self, target: int) -> pb.MoveLeaderResponse:
        """etcd's MoveLeader: only the leader moves its leadership, to a member, and answers
        once that member leads (etcd's ErrTimeoutLeaderTransfer if it does not in time)."""
        store = self._store
        assert store.identity is not None  # requests follow start()
        if not store.has_leader() or store.leader_id != store.identity.member_id:
            raise errors.NotLeader()
        if target not in {m.ID for m in self.current()}:
            raise errors.BadLeaderTransferee()
        if target != store.identity.member_id:
            assert store.cluster is not None  # the only member is itself
            try:
                await store.cluster.hand_over(target)
            except RuntimeError:
                raise errors.NotLeader() from None
            deadline = time.monotonic() + MOVE_LEADER_TIMEOUT
            while store.leader_id != target:
                if time.monotonic() > deadline:
                    raise errors.TimeoutLeaderTransfer()
                await asyncio.sleep(0.05)
        return store._fill(pb.MoveLeaderResponse())
