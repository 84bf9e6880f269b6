from __future__ import annotations

from ...api import rpc_pb2 as pb


class MaintenanceService:
    service_name = "etcdserverpb.Maintenance"

    def __init__(self, store):
        self.store = store

    async def Status(self, request: pb.StatusRequest) -> pb.StatusResponse:
        return self.store.status()
