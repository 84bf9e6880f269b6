from __future__ import annotations

from ...api import rpc_pb2 as pb


class ClusterService:
    service_name = "etcdserverpb.Cluster"

    def __init__(self, store):
        self.store = store

    async def MemberList(self, request: pb.MemberListRequest) -> pb.MemberListResponse:
        return self.store.members.list_members()

    async def MemberAdd(self, request: pb.MemberAddRequest) -> pb.MemberAddResponse:
        return await self.store.members.add(request)

    async def MemberRemove(self, request: pb.MemberRemoveRequest) -> pb.MemberRemoveResponse:
        return await self.store.members.remove(request.ID)

    async def MemberUpdate(self, request: pb.MemberUpdateRequest) -> pb.MemberUpdateResponse:
        return await self.store.members.update(request)

    async def MemberPromote(self, request: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
        return await self.store.members.promote(request.ID)
