"""What both gRPC clients (h2client.H2Conn, aioclient.AioConn) offer: unary(path, message, cb)
and stream(path, message, on_message, cb), with pre-encoded messages; cb(status, body) once,
with status 0 and the response bytes, or a gRPC status code (-1: connection lost) and a
reason. Pool and call_once work with either."""
from __future__ import annotations

import asyncio


class Pool:
    """--conns connections to one endpoint, used in turn."""

    def __init__(self, conns):
        self.conns = conns
        self.i = 0

    def next(self):
        self.i = (self.i + 1) % len(self.conns)
        return self.conns[self.i]


def call_once(conn, path: bytes, message: bytes) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()

    def done(status, body):
        if not fut.done():
            fut.set_result((status, body))
    conn.unary(path, message, done)
    return fut
