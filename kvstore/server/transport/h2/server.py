"""The HTTP/2 gRPC server: listens, makes one H2ServerConnection per client, routes calls."""
from __future__ import annotations

import asyncio
import socket
import ssl
from functools import partial

from ....limits import with_overhead
from ...gateway import Gateway
from ..connection_limits import ConnectionLimits
from ..methods import request_decoder, service_methods
from ..tls import ClientTLS
from .connections import Connections
from .grpc_call import GrpcCall, Method
from .http_stream import HttpStream, is_plain_http
from .server_connection import H2ServerConnection


def method_table(services) -> dict[bytes, Method]:
    """b"/etcdserverpb.KV/Range" -> Method, for every method a service object defines."""
    return {m.path: Method(m.func, request_decoder(m.request), m.kind, m.counts(), m.at_once,
                         m.feed)
            for m in service_methods(services)}


class H2Server:
    def __init__(self, services: list, max_request_bytes: int, http1=None, intercept=None,
                 limits: ConnectionLimits | None = None):
        self._http1 = http1
        self._intercept = intercept
        self._methods = method_table(services)
        # what /metrics reads of each method's calls (grpc_server_*_total)
        self.calls = [m.counts for m in self._methods.values()]
        self._max_receive = with_overhead(max_request_bytes)
        # etcd's grpc-gateway, on the port's HTTP/1.1 side (served where /health is)
        self._gateway = (Gateway(service_methods(services), self._max_receive, intercept,
                                 getattr(intercept, "common_names_refused", None))
                         if http1 is not None else None)
        self._listen: list[tuple[str, int, ssl.SSLContext | None, bool]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._connections = Connections(limits or ConnectionLimits())

    @property
    def connections(self) -> set[H2ServerConnection]:
        return self._connections.open

    def _make_call(self, conn, stream, headers):
        if self._http1 is not None and is_plain_http(headers):  # /health, the gateway, over h2
            return HttpStream(conn, stream, headers, self._http1, self._gateway)
        return GrpcCall(conn, stream, headers, self._methods, self._max_receive, self._intercept)

    def _protocol(self, names_users: bool = False) -> H2ServerConnection:
        return H2ServerConnection(self._make_call, on_close=self._connections.closed,
                                  http1=self._http1, on_open=self._connections.admit,
                                  gateway=self._gateway, names_users=names_users)

    def listen(self, host: str, port: int, tls: ClientTLS | None = None) -> None:
        """``tls``: serve TLS; under --client-cert-auth, the common name of the certificate a
        client presented is its calls' ``peer_cn`` (read once, as the connection opens)."""
        self._listen.append((host, port, tls.ssl_context() if tls is not None else None,
                             tls is not None and tls.client_cert_auth))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port, ssl_context, names_users in self._listen:
            server = await loop.create_server(
                partial(self._protocol, names_users), host, port, reuse_address=True,
                backlog=1024, ssl=ssl_context,
                ssl_handshake_timeout=self._connections.limits.handshake_timeout if ssl_context else None)
            for sock in server.sockets:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._servers.append(server)
        self._connections.start()

    async def stop(self, grace: float = 1.0) -> None:
        self._connections.stop()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.goaway()
        deadline = asyncio.get_running_loop().time() + grace
        # connections leave the set as they close: polled, there is no event to wait on
        while self.connections and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        for server in self._servers:
            await server.wait_closed()
