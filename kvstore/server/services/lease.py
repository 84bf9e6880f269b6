from __future__ import annotations

from collections.abc import AsyncIterator

from ...api import rpc_pb2 as pb


class LeaseService:
    service_name = "etcdserverpb.Lease"

    def __init__(self, store):
        self.store = store

    async def LeaseGrant(self, request: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        return await self.store.lease_grant(request)

    async def LeaseRevoke(self, request: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        return await self.store.lease_revoke(request)

    async def LeaseKeepAlive(self, requests: AsyncIterator[pb.LeaseKeepAliveRequest]
                             ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        async for request in requests:
            yield await self.store.lease_keepalive(request.ID)

    def LeaseKeepAlive_at_once(self, request: pb.LeaseKeepAliveRequest) -> bytes | None:
        """One keep-alive answered on the spot (the transport needs no task for the stream)
        while this member leads the leases; None: through LeaseKeepAlive."""
        return self.store.lease_keepalive_now(request.ID)

    async def LeaseTimeToLive(self, request: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        return await self.store.lease_time_to_live(request)

    async def LeaseLeases(self, request: pb.LeaseLeasesRequest) -> pb.LeaseLeasesResponse:
        return await self.store.lease_leases()
