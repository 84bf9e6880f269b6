from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ...api import rpc_pb2 as pb
from .batch import ResponseBatch


class WatchService:
    service_name = "etcdserverpb.Watch"

    def __init__(self, store):
        self.store = store

    async def Watch(self, requests: AsyncIterator[pb.WatchRequest]) -> AsyncIterator[ResponseBatch]:
        stream = self.store.watch_stream()

        async def read() -> None:
            try:
                async for request in requests:
                    stream.handle(request)
                    await stream.room()
            except Exception:
                stream.close()  # the connection broke: end the stream
            # A client that only half-closes keeps receiving, as with etcd.

        reader = asyncio.create_task(read())
        try:
            while (responses := await stream.next_batch()) is not None:
                yield ResponseBatch(responses)
        finally:
            reader.cancel()
            stream.close()
