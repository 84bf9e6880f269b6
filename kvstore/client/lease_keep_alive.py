"""etcd's LeaseKeepAlive stream: one LeaseKeepAliveRequest per renewal, one response each."""
from __future__ import annotations

from ..api import rpc_pb2 as pb
from .message_stream import MessageStream
from .stream import StreamingCall

LEASE_KEEP_ALIVE = b"/etcdserverpb.Lease/LeaseKeepAlive"


class LeaseKeepAliveStream(MessageStream[pb.LeaseKeepAliveResponse]):
    def __init__(self, call: StreamingCall):
        super().__init__(call, pb.LeaseKeepAliveResponse.FromString)

    async def keep_alive(self, lease_id: int) -> None:
        """Asks for one renewal of lease ``lease_id``; its response comes in the iteration
        (TTL 0: the lease is not found)."""
        await self.send(pb.LeaseKeepAliveRequest(ID=lease_id))
