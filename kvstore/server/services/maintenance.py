from __future__ import annotations

from collections.abc import AsyncIterator

from ...api import rpc_pb2 as pb


class MaintenanceService:
    service_name = "etcdserverpb.Maintenance"

    def __init__(self, store):
        self.store = store

    async def Status(self, request: pb.StatusRequest) -> pb.StatusResponse:
        return self.store.status()

    async def Alarm(self, request: pb.AlarmRequest) -> pb.AlarmResponse:
        return await self.store.alarm(request)

    async def HashKV(self, request: pb.HashKVRequest) -> pb.HashKVResponse:
        return await self.store.hash_kv(request)

    async def Hash(self, request: pb.HashRequest) -> pb.HashResponse:
        return await self.store.hash()

    async def Defragment(self, request: pb.DefragmentRequest) -> pb.DefragmentResponse:
        return await self.store.defragment()

    async def MoveLeader(self, request: pb.MoveLeaderRequest) -> pb.MoveLeaderResponse:
        return await self.store.members.move_leader(request.targetID)

    async def Snapshot(self, request: pb.SnapshotRequest) -> AsyncIterator[bytes]:
        async for response in self.store.etcd_snapshot():
            yield response
