"""A small asyncio Watch client over grpcio, for tests."""
from __future__ import annotations

import asyncio

import grpc

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc


class WatchClient:
    def __init__(self, endpoint: str, channel_options=None):
        self.channel = grpc.aio.insecure_channel(endpoint, options=channel_options or [])
        self.call = rpc.WatchStub(self.channel).Watch(metadata=(("hasleader", "true"),))

    async def create(self, key: bytes, range_end: bytes = b"", **kw) -> pb.WatchResponse:
        await self.call.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=key, range_end=range_end, **kw)))
        resp = await self.read()
        assert resp.created, resp
        return resp

    async def progress(self) -> None:
        await self.call.write(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    async def read(self, timeout: float = 10.0) -> pb.WatchResponse:
        return await asyncio.wait_for(self.call.read(), timeout)

    async def events(self, n: int, timeout: float = 30.0) -> list:
        """Reads responses until n events arrived; returns [(response, event)]."""
        out = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < n:
            resp = await self.read(max(0.1, deadline - asyncio.get_running_loop().time()))
            out.extend((resp, ev) for ev in resp.events)
        return out

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()
