from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from ...api import rpc_pb2 as pb
from ...store.watch_stream import WatchStream
from .batch import ResponseBatch


class WatchService:
    service_name = "etcdserverpb.Watch"

    def __init__(self, store):
        self.store = store

    async def Watch(self, requests: AsyncIterator[pb.WatchRequest]) -> AsyncIterator[ResponseBatch]:
        stream = self.store.watch_stream()
        reader = asyncio.create_task(_read(stream, requests))
        try:
            while (responses := await stream.next_batch()) is not None:
                yield ResponseBatch(responses)
        finally:
            reader.cancel()
            stream.close()

    def Watch_feed(self, requests: AsyncIterator[pb.WatchRequest]) -> WatchFeed:
        """Watch for a transport that takes the responses when told (services/feed.py)."""
        return WatchFeed(self.store.watch_stream(), requests)


class WatchFeed:
    """A watch stream as a ResponseFeed: its requests read by a task, its responses taken from
    its queue when it has some."""

    def __init__(self, stream: WatchStream, requests: AsyncIterator[pb.WatchRequest]):
        self._stream = stream
        self._reader = asyncio.create_task(_read(stream, requests))

    def start(self, ready: Callable[[], None]) -> None:
        self._stream.on_ready(ready)

    def take(self) -> list[bytes] | None:
        return self._stream.take()

    def close(self) -> None:
        self._reader.cancel()
        self._stream.close()


async def _read(stream: WatchStream, requests: AsyncIterator[pb.WatchRequest]) -> None:
    try:
        async for request in requests:
            stream.handle(request)
            await stream.room()
    except Exception:
        stream.close()  # the connection broke: end the stream
    # A client that only half-closes keeps receiving, as with etcd.
