from __future__ import annotations

from collections.abc import AsyncIterator

from ...api import v3election_pb2 as epb
from ...store import concurrency
from .recipe_errors import MissingLeaderKey, as_client_errors


def _leader_key(request) -> concurrency.LeaderKey:
    if not request.HasField("leader"):
        raise MissingLeaderKey()
    k = request.leader
    return concurrency.LeaderKey(k.name, k.key, k.rev, k.lease)


class ElectionService:
    """etcd's v3election server: clientv3/concurrency's Election over the store
    (store/concurrency.py)."""

    service_name = "v3electionpb.Election"
    descriptor = epb.DESCRIPTOR

    def __init__(self, store):
        self.store = store

    @as_client_errors
    async def Campaign(self, request: epb.CampaignRequest) -> epb.CampaignResponse:
        header, leader = await concurrency.campaign(self.store, request.name, request.lease,
                                                    request.value)
        return epb.CampaignResponse(header=header, leader=epb.LeaderKey(
            name=leader.name, key=leader.key, rev=leader.rev, lease=leader.lease))

    @as_client_errors
    async def Proclaim(self, request: epb.ProclaimRequest) -> epb.ProclaimResponse:
        header = await concurrency.proclaim(self.store, _leader_key(request), request.value)
        return epb.ProclaimResponse(header=header)

    @as_client_errors
    async def Leader(self, request: epb.LeaderRequest) -> epb.LeaderResponse:
        header, kv = await concurrency.leader(self.store, request.name)
        return epb.LeaderResponse(header=header, kv=kv)

    async def Observe(self, request: epb.LeaderRequest) -> AsyncIterator[epb.LeaderResponse]:
        async for header, kv in concurrency.observe(self.store, request.name):
            yield epb.LeaderResponse(header=header, kv=kv)

    @as_client_errors
    async def Resign(self, request: epb.ResignRequest) -> epb.ResignResponse:
        return epb.ResignResponse(header=await concurrency.resign(self.store, _leader_key(request)))
