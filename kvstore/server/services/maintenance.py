from __future__ import annotations

from collections.abc import AsyncIterator

from ...api import rpc_pb2 as pb


class MaintenanceService:
    service_name = "etcdserverpb.Maintenance"

    def __init__(self, store):
        self.store = store

    async def Status(self, request: pb.StatusRequest) -> pb.StatusResponse:
        return self.store.status()

    async def Snapshot(self, request: pb.SnapshotRequest) -> AsyncIterator[bytes]:
        async for response in self.store.etcd_snapshot():
            yield response
