"""A client's HTTP/2 connection over a TCP socket (plaintext; TLS is for later), and the
Channel that gRPC calls of any kind share."""
from __future__ import annotations

import asyncio
import socket
import weakref
from collections.abc import Sequence

from ..h2 import frames as f
from ..h2.client import H2ClientConnection
from ..h2.hpack_select import HPACKError
from ..h2.stream import Stream
from .call import Callback, start_unary, unary_call
from .headers import request_block, token_field, with_timeout
from .stream import StreamingCall
from .tls import TLSConfig
from .unary_select import receive as _receive, window_updates_due as _window_updates_due


class _Protocol(H2ClientConnection):
    """H2ClientConnection, plus a future that says when the socket is gone (for close()), and
    a receive loop made for the frames of unary calls' responses (unary_select.receive)."""

    # compiled or pure (unary_select); class attributes, so that a test can run both
    receive_frames = staticmethod(_receive)
    window_updates_due = staticmethod(_window_updates_due)

    def __init__(self) -> None:
        super().__init__()
        self.lost: asyncio.Future[None] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        # H2Connection.data_received for a client (whose preface is sent, not awaited), with
        # its frame loop and window-update check compiled
        try:
            frames, error = self._reader.feed(data)
            if self.receive_frames(self, frames):
                return
            if error is not None:
                raise error
            if self.window_updates_due(self):
                self._send_window_updates()
        except f.ConnectionError_ as e:
            self._fail(e.code, str(e))
        except HPACKError as e:
            self._fail(f.COMPRESSION_ERROR, f"hpack: {e}")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


def split_target(target: str) -> tuple[str, int]:
    """"host:port", "[v6]:port", optionally after "http://" or "https://" as etcd's endpoints
    are written."""
    target = target.removeprefix("http://").removeprefix("https://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, not {target!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def split_targets(targets: str | Sequence[str]) -> list[str]:
    """"a:1,b:2" or ["a:1", "b:2"]: the endpoints in order."""
    items = targets.split(",") if isinstance(targets, str) else list(targets)
    out = [t.strip() for t in items if t.strip()]
    if not out:
        raise ValueError("no endpoint given")
    return out


class Channel:
    """One HTTP/2 connection that calls share, each on its own stream."""

    def __init__(self, protocol: _Protocol, authority: str, scheme: str = "http"):
        self._protocol = protocol
        self._authority = authority.encode("ascii")
        self._scheme = scheme.encode("ascii")
        self._blocks: dict[bytes, bytes] = {}  # method path -> its request header block
        self._token = b""  # etcd's auth token, encoded, at the end of every block
        self._streams: weakref.WeakSet[StreamingCall] = weakref.WeakSet()  # to end at close

    @property
    def protocol(self) -> H2ClientConnection:
        return self._protocol

    def _block(self, path: bytes) -> bytes:
        block = self._blocks.get(path)
        if block is None:
            block = self._blocks[path] = request_block(
                path, self._authority, self._scheme) + self._token
        return block

    def set_token(self, token: str) -> None:
        """etcd's auth token (Auth.Authenticate's), sent with every call from now on."""
        self._token = token_field(token)
        self._blocks.clear()

    def call(self, path: bytes, message: bytes, callback: Callback,
             timeout: float | None = None) -> Stream | None:
        """A unary call without a coroutine: ``callback(0, response bytes)`` or
        ``callback(code, message)`` once it is answered, never before this returns.
        ``timeout`` only goes to the server as grpc-timeout (it answers DEADLINE_EXCEEDED)."""
        block = self._blocks.get(path) or self._block(path)
        if timeout is not None:
            block = with_timeout(block, timeout)
        return start_unary(self._protocol, block, message, callback)

    async def unary(self, path: bytes, message: bytes, timeout: float | None = None) -> bytes:
        """The response message's bytes; raises GrpcError. ``timeout`` is the deadline."""
        return await unary_call(self._protocol, self._block(path), message, timeout)

    def stream(self, path: bytes) -> StreamingCall:
        """A bidirectional streaming call, open: send, done_writing, iterate, cancel."""
        call = StreamingCall(self._protocol).open(self._block(path))
        self._streams.add(call)
        return call

    async def server_stream(self, path: bytes, message: bytes) -> StreamingCall:
        """A server-streaming call: ``message`` sent, writing done; iterate the responses."""
        call = self.stream(path)
        if not call.ended:
            await call.send(message)
        call.done_writing()
        return call

    async def close(self) -> None:
        """GOAWAY, then the socket closes once the unary calls in flight are answered; the
        streaming calls still open are cancelled (a watch never ends by itself)."""
        protocol = self._protocol
        if not protocol.lost.done():
            for call in list(self._streams):
                call.cancel()
            protocol.goaway()
        await protocol.lost


async def _connect(target: str, tls: TLSConfig | None) -> Channel:
    host, port = split_target(target)
    secure = tls is not None or target.startswith("https://")
    loop = asyncio.get_running_loop()
    context = (tls or TLSConfig()).context() if secure else None
    transport, protocol = await loop.create_connection(
        _Protocol, host, port, ssl=context, server_hostname=host if secure else None)
    if secure and transport.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
        transport.close()
        raise ConnectionRefusedError(f"{target} did not agree on HTTP/2 (ALPN h2) over TLS")
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # small requests and responses: no waiting for Nagle (asyncio sets it too; be sure)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    authority = target.removeprefix("http://").removeprefix("https://")
    return Channel(protocol, authority, "https" if secure else "http")


async def open_channel(targets: str | Sequence[str], tls: TLSConfig | None = None) -> Channel:
    """Connects to the first of ``targets`` ("host:port", several comma-separated or in a
    list) that accepts, trying them in order; raises the last OSError if none does. The
    channel stays on that endpoint: no failover once connected. TLS with ``tls``, or for an
    "https://" target (the system's CAs then)."""
    error: OSError | None = None
    for target in split_targets(targets):
        try:
            return await _connect(target, tls)
        except OSError as e:  # ssl.SSLError too: a certificate refused
            error = e
    assert error is not None
    raise error
