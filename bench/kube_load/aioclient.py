"""The clients' interface (clients.py) over grpc.aio, for --client grpc: to check the figures
against grpc itself at low rates. grpc is imported on first use (the raw client's processes
never load it)."""
from __future__ import annotations

import asyncio


class AioConn:
    """The same interface over a grpc.aio channel (--client grpc)."""

    def __init__(self, channel):
        self.channel = channel
        self.unaries: dict[bytes, object] = {}
        self.tasks: set = set()

    def unary(self, path: bytes, message: bytes, cb) -> None:
        mc = self.unaries.get(path)
        if mc is None:
            mc = self.unaries[path] = self.channel.unary_unary(path.decode())  # bytes in and out
        task = asyncio.ensure_future(mc(message))
        task.add_done_callback(lambda t: cb(*_aio_outcome(t)))

    def stream(self, path: bytes, message: bytes, on_message, cb) -> None:
        async def run():
            call = self.channel.stream_stream(path.decode())()
            await call.write(message)
            async for reply in call:
                on_message(reply)
            return b""
        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(lambda t: cb(*_aio_outcome(t)))

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        task = asyncio.ensure_future(self.channel.close())
        self.tasks.add(task)


def _aio_outcome(task) -> tuple[int, object]:
    import grpc
    if task.cancelled():
        return -1, "cancelled"
    exc = task.exception()
    if exc is None:
        return 0, task.result()
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().value[0], exc.details() or exc.code().name
    return -1, repr(exc)


async def aio_connect(url: str) -> AioConn:
    import grpc
    channel = grpc.aio.insecure_channel(url.split("://", 1)[1].rstrip("/"),
                                        options=[("grpc.use_local_subchannel_pool", 1)])
    await asyncio.wait_for(channel.channel_ready(), 10)
    return AioConn(channel)
