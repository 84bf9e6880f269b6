"""etcd's KV service (etcdserverpb.KV) over a Channel: rpc_pb2 requests in, responses out."""
from __future__ import annotations

from types import TracebackType

from ..api import rpc_pb2 as pb
from .connection import Channel, open_channel

_SERVICE = b"/etcdserverpb.KV/"


class Client:
    """An async etcd KV client on one HTTP/2 connection; calls may run concurrently. A call's
    ``timeout`` (seconds) is its deadline: GrpcError DEADLINE_EXCEEDED when it passes."""

    def __init__(self, channel: Channel):
        self.channel = channel

    async def put(self, request: pb.PutRequest, timeout: float | None = None) -> pb.PutResponse:
        return pb.PutResponse.FromString(await self._call(b"Put", request, timeout))

    async def range(self, request: pb.RangeRequest, timeout: float | None = None) -> pb.RangeResponse:
        return pb.RangeResponse.FromString(await self._call(b"Range", request, timeout))

    async def delete_range(self, request: pb.DeleteRangeRequest,
                           timeout: float | None = None) -> pb.DeleteRangeResponse:
        return pb.DeleteRangeResponse.FromString(await self._call(b"DeleteRange", request, timeout))

    async def txn(self, request: pb.TxnRequest, timeout: float | None = None) -> pb.TxnResponse:
        return pb.TxnResponse.FromString(await self._call(b"Txn", request, timeout))

    async def compact(self, request: pb.CompactionRequest,
                      timeout: float | None = None) -> pb.CompactionResponse:
        return pb.CompactionResponse.FromString(await self._call(b"Compact", request, timeout))

    async def _call(self, method: bytes, request, timeout: float | None) -> bytes:
        return await self.channel.unary(_SERVICE + method, request.SerializeToString(), timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def connect(target: str) -> Client:
    """A Client connected to ``target`` ("host:port")."""
    return Client(await open_channel(target))
