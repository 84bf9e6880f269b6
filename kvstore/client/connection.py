"""A client's HTTP/2 connection over a TCP socket (plaintext; TLS is for later)."""
from __future__ import annotations

import asyncio
import socket

from ..h2.client import H2ClientConnection
from .call import unary_call


class _Protocol(H2ClientConnection):
    """H2ClientConnection, plus a future that says when the socket is gone (for close())."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


def split_target(target: str) -> tuple[str, int]:
    """"host:port", "[v6]:port", optionally after "http://" as etcd's endpoints are written."""
    target = target.removeprefix("http://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, not {target!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


class Channel:
    """One HTTP/2 connection that unary calls share, each on its own stream."""

    def __init__(self, protocol: _Protocol, authority: str):
        self._protocol = protocol
        self._authority = authority.encode("ascii")

    @property
    def protocol(self) -> H2ClientConnection:
        return self._protocol

    async def unary(self, path: bytes, message: bytes, timeout: float | None = None) -> bytes:
        return await unary_call(self._protocol, path, self._authority, message, timeout)

    async def close(self) -> None:
        """Graceful: GOAWAY, then the socket closes once the calls in flight are answered."""
        protocol = self._protocol
        if not protocol.lost.done():
            protocol.goaway()
        await protocol.lost


async def open_channel(target: str) -> Channel:
    """Connects to ``target`` ("host:port"); raises OSError if nothing accepts there."""
    host, port = split_target(target)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(_Protocol, host, port)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # small requests and responses: no waiting for Nagle (asyncio sets it too; be sure)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Channel(protocol, target.removeprefix("http://"))
