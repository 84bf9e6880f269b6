from __future__ import annotations

from ...api import rpc_pb2 as pb


class ClusterService:
    service_name = "etcdserverpb.Cluster"

    def __init__(self, store):
        self.store = store

    async def MemberList(self, request: pb.MemberListRequest) -> pb.MemberListResponse:
        return self.store.member_list()
