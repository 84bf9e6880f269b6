"""The server's side of an HTTP/2 connection (kvstore.h2.connection does the role-neutral part).

What is a server's: it expects the client's preface, or serves plain HTTP/1.1 on the same port
(/health, /version, /metrics and the JSON gateway, as etcd's cmux does: see http1.py); a
client's HEADERS open a stream,
whose handler ``handler_factory(conn, stream, headers)`` makes (gRPC calls, see grpc_call.py);
and it polices the client's pings as grpc-go does.
"""
from __future__ import annotations

import re

from ....h2 import frames as f
from ....h2.config import H2Configuration
from ....h2.connection import H2Connection, Headers
from ....h2.settings import OUR_MAX_CONCURRENT_STREAMS
from ....h2.stream import Stream
from ..tls import peer_common_name
from .http1 import Http1Session

# Keepalive enforcement as etcd configures grpc-go: pings closer than MIN_PING_INTERVAL apart
# (2 h with no open stream) are strikes unless we sent something in between; past
# MAX_PING_STRIKES the connection gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
MIN_PING_INTERVAL = 5.0
IDLE_PING_INTERVAL = 2 * 3600.0
MAX_PING_STRIKES = 2

_SERVER_SIDE = H2Configuration(client_side=False)
# An HTTP/1.1 request line starts with a method token (RFC 9110: letters here) and a space.
_HTTP1_REQUEST = re.compile(rb"[A-Z]{1,20} ")
_HTTP1_PARTIAL = re.compile(rb"[A-Z]{0,20}")


class H2ServerConnection(H2Connection):
    hold_input_while_writes_wait = True

    def __init__(self, handler_factory, on_close=None, http1=None, on_open=None, gateway=None,
                 names_users: bool = False):
        super().__init__(_SERVER_SIDE)
        self._handler_factory = handler_factory
        self._on_open = on_open  # (conn) -> whether it may stay (connections.py)
        self._on_close = on_close
        self._http1 = http1  # (method, path) -> (status, content type, body), as etcd's cmux
        self._gateway = gateway  # kvstore.server.gateway.Gateway, served with http1
        self._h1: Http1Session | None = None  # once the client spoke HTTP/1.1
        self._last_ping = float("-inf")
        self._ping_strikes = 0
        self.opened_at = self.last_activity = self.loop.time()
        # Under --client-cert-auth (names_users), the common name of the client's certificate,
        # once TLS verified it: the user, as etcd takes it. Read once, as the connection opens
        # (the handshake is over by then), and given to the interceptor with every call.
        self._names_users = names_users
        self.peer_cn: str | None = None

    @property
    def handshake_done(self) -> bool:
        """The client's preface came, or a whole HTTP/1.1 request head."""
        return self._preface_seen or (self._h1 is not None and self._h1.requests_seen > 0)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self._names_users:
            self.peer_cn = peer_common_name(transport.get_extra_info("peercert"))
        if self._on_open is not None and not self._on_open(self):
            transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        if self._h1 is not None:
            self._h1.connection_lost()
        if self._on_close is not None:
            self._on_close(self)

    def goaway(self) -> None:
        if self._h1 is not None:  # HTTP/1.1: closed once the request in progress is answered
            self._h1.goaway()
            return
        super().goaway()

    # -- HTTP/1.1 (http1.py) -------------------------------------------------------------------

    def transport_closed(self) -> bool:
        return self._closed or self.transport is None or self.transport.is_closing()

    def writes_waiting(self) -> bool:
        return self._write_paused and not self._closed

    async def http1_drain(self) -> None:
        """Until the socket takes more (the transport's high-water mark)."""
        if self._write_paused and not self._closed:
            fut = self.loop.create_future()
            self._write_waiters.append(fut)
            await fut

    # -- before HTTP/2 -------------------------------------------------------------------------

    def _receive_preface(self, data: bytes) -> bytes | None:
        if self._h1 is not None:
            self._h1.feed(data)
            return None
        if self._http1 is not None:
            # (the preface so far is at most 23 bytes: joined for the look, not kept)
            head = bytes(self._buf + data[:22])
            # (PRI is HTTP/2's: a preface gone wrong gets HTTP/2's answer, GOAWAY)
            if not f.PREFACE.startswith(head[:len(f.PREFACE)]) and not head.startswith(b"PRI "):
                if _HTTP1_REQUEST.match(head):
                    self._h1 = Http1Session(self, self._http1, self._gateway)
                    buf, self._buf = bytes(self._buf), bytearray()
                    self._h1.feed(buf + data)
                    return None
                if _HTTP1_PARTIAL.fullmatch(head):  # "GE": a method still coming
                    self._buf += data
                    return None
        return super()._receive_preface(data)

    # -- streams the client opens --------------------------------------------------------------

    def _headers_opening_stream(self, sid: int, headers: Headers, end_stream: bool) -> None:
        if sid <= self._last_stream_id:
            raise f.ConnectionError_(f.STREAM_CLOSED, "HEADERS on a closed stream")
        self._last_stream_id = sid
        if self._going_away:
            self._write(f.rst_stream(sid, f.REFUSED_STREAM))
            return
        if len(self.streams) >= OUR_MAX_CONCURRENT_STREAMS:
            raise f.StreamError(sid, f.REFUSED_STREAM, "too many concurrent streams")
        stream = Stream(sid, self._peer_initial_window)
        self.streams[sid] = stream
        stream.remote_closed = end_stream
        handler = self._handler_factory(self, stream, headers)
        if stream.closed:  # answered at once (an error): no handler to keep
            return
        stream.handler = handler
        if end_stream:
            handler.end_of_stream()

    def _headers_on_stream(self, stream: Stream, headers: Headers, end_stream: bool) -> None:
        # trailers from the client: they end its requests, and say nothing we use
        if not end_stream:
            raise f.StreamError(stream.id, f.PROTOCOL_ERROR, "trailers without END_STREAM")
        handler = stream.handler
        assert handler is not None  # an open stream's handler is made
        self._remote_ended(stream, handler)

    # -- pings ---------------------------------------------------------------------------------

    def _on_ping(self) -> None:
        now = self.loop.time()
        last, self._last_ping = self._last_ping, now
        if self._sent_since_ping:
            self._sent_since_ping = False
            self._ping_strikes = 0
            return
        min_gap = MIN_PING_INTERVAL if self.streams else IDLE_PING_INTERVAL
        if now - last < min_gap:
            self._ping_strikes += 1
            if self._ping_strikes > MAX_PING_STRIKES:
                raise f.ConnectionError_(f.ENHANCE_YOUR_CALM, "too_many_pings")

