"""etcd's Watch stream: WatchRequests in, WatchResponses out, with shorthands for the three
kinds of request."""
from __future__ import annotations

from collections.abc import Iterable

from ..api import rpc_pb2 as pb
from .message_stream import MessageStream
from .stream import StreamingCall

WATCH = b"/etcdserverpb.Watch/Watch"


class WatchStream(MessageStream[pb.WatchResponse]):
    """One Watch call, any number of watches on it (told apart by watch_id). ``close()``
    ends the call; ``cancel(watch_id)`` ends one watch."""

    def __init__(self, call: StreamingCall):
        super().__init__(call, pb.WatchResponse.FromString)

    async def create(self, key: bytes, range_end: bytes = b"", start_revision: int = 0,
                     prev_kv: bool = False, progress_notify: bool = False,
                     filters: Iterable[pb.WatchCreateRequest.FilterType] = (),
                     watch_id: int = 0, fragment: bool = False) -> None:
        await self.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv,
            progress_notify=progress_notify, filters=filters, watch_id=watch_id,
            fragment=fragment)))

    async def cancel(self, watch_id: int) -> None:
        await self.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=watch_id)))

    async def progress(self) -> None:
        await self.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
