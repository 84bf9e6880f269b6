"""An async etcd client: etcd's services (etcdserverpb) over a Channel, protobuf messages in,
protobuf messages out. Unary calls are one method each; streams come as objects to send on
and iterate."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import TypeVar

from ..api import rpc_pb2 as pb
from .connection import Channel, open_channel
from .credentials import Credentials
from .lease_keep_alive import LEASE_KEEP_ALIVE, LeaseKeepAliveStream
from .message_stream import Serializable
from .range_stream import PAGE_SIZE, range_stream
from .tls import TLSConfig
from .watch import WATCH, WatchStream

_KV = b"/etcdserverpb.KV/"
_LEASE = b"/etcdserverpb.Lease/"
_CLUSTER = b"/etcdserverpb.Cluster/"
_MAINTENANCE = b"/etcdserverpb.Maintenance/"
_AUTH = b"/etcdserverpb.Auth/"

ResponseT = TypeVar("ResponseT")


class Client:
    """An async etcd client on one HTTP/2 connection; calls and streams may run concurrently.
    A unary call's ``timeout`` (seconds) is its deadline: GrpcError DEADLINE_EXCEEDED when it
    passes. Errors are GrpcError with etcd's code and message."""

    def __init__(self, channel: Channel):
        self.channel = channel

    async def _unary(self, path: bytes, request: Serializable, parse: Callable[[bytes], ResponseT],
                     timeout: float | None) -> ResponseT:
        return parse(await self.channel.unary(path, request.SerializeToString(), timeout))

    # -- Auth ------------------------------------------------------------------------------------

    async def authenticate(self, name: str, password: str, timeout: float | None = None) -> None:
        """Logs in as etcd's users do: every call after it carries the token etcd gives (the
        user's permissions apply to it). A simple token lives while it is used; log in again
        on a new connection."""
        answer = await self._unary(_AUTH + b"Authenticate",
                                   pb.AuthenticateRequest(name=name, password=password),
                                   pb.AuthenticateResponse.FromString, timeout)
        self.channel.set_token(answer.token)

    # -- KV --------------------------------------------------------------------------------------

    async def put(self, request: pb.PutRequest, timeout: float | None = None) -> pb.PutResponse:
        return await self._unary(_KV + b"Put", request, pb.PutResponse.FromString, timeout)

    async def range(self, request: pb.RangeRequest, timeout: float | None = None) -> pb.RangeResponse:
        return await self._unary(_KV + b"Range", request, pb.RangeResponse.FromString, timeout)

    async def delete_range(self, request: pb.DeleteRangeRequest,
                           timeout: float | None = None) -> pb.DeleteRangeResponse:
        return await self._unary(_KV + b"DeleteRange", request, pb.DeleteRangeResponse.FromString, timeout)

    async def txn(self, request: pb.TxnRequest, timeout: float | None = None) -> pb.TxnResponse:
        return await self._unary(_KV + b"Txn", request, pb.TxnResponse.FromString, timeout)

    async def compact(self, request: pb.CompactionRequest,
                      timeout: float | None = None) -> pb.CompactionResponse:
        return await self._unary(_KV + b"Compact", request, pb.CompactionResponse.FromString, timeout)

    def range_stream(self, request: pb.RangeRequest,
                     page_size: int = PAGE_SIZE) -> AsyncIterator[pb.RangeResponse]:
        """RangeResponse chunks: KV.RangeStream, or paged Range where the server has none."""
        return range_stream(self.channel, request, page_size)

    # -- Watch -----------------------------------------------------------------------------------

    def watch(self) -> WatchStream:
        """A Watch stream, open: ``await ws.create(key, ...)``, ``async for resp in ws``."""
        return WatchStream(self.channel.stream(WATCH))

    # -- Lease -----------------------------------------------------------------------------------

    async def lease_grant(self, request: pb.LeaseGrantRequest,
                          timeout: float | None = None) -> pb.LeaseGrantResponse:
        return await self._unary(_LEASE + b"LeaseGrant", request, pb.LeaseGrantResponse.FromString, timeout)

    async def lease_revoke(self, request: pb.LeaseRevokeRequest,
                           timeout: float | None = None) -> pb.LeaseRevokeResponse:
        return await self._unary(_LEASE + b"LeaseRevoke", request, pb.LeaseRevokeResponse.FromString, timeout)

    async def lease_time_to_live(self, request: pb.LeaseTimeToLiveRequest,
                                 timeout: float | None = None) -> pb.LeaseTimeToLiveResponse:
        return await self._unary(_LEASE + b"LeaseTimeToLive", request, pb.LeaseTimeToLiveResponse.FromString,
                                 timeout)

    async def lease_leases(self, request: pb.LeaseLeasesRequest | None = None,
                           timeout: float | None = None) -> pb.LeaseLeasesResponse:
        return await self._unary(_LEASE + b"LeaseLeases", request or pb.LeaseLeasesRequest(),
                                 pb.LeaseLeasesResponse.FromString, timeout)

    def lease_keep_alive(self) -> LeaseKeepAliveStream:
        """A LeaseKeepAlive stream, open: ``await ks.keep_alive(id)``, ``async for resp in ks``."""
        return LeaseKeepAliveStream(self.channel.stream(LEASE_KEEP_ALIVE))

    # -- Cluster and Maintenance -----------------------------------------------------------------

    async def member_list(self, request: pb.MemberListRequest | None = None,
                          timeout: float | None = None) -> pb.MemberListResponse:
        return await self._unary(_CLUSTER + b"MemberList", request or pb.MemberListRequest(),
                                 pb.MemberListResponse.FromString, timeout)

    async def status(self, request: pb.StatusRequest | None = None,
                     timeout: float | None = None) -> pb.StatusResponse:
        return await self._unary(_MAINTENANCE + b"Status", request or pb.StatusRequest(),
                                 pb.StatusResponse.FromString, timeout)

    async def hash_kv(self, request: pb.HashKVRequest,
                      timeout: float | None = None) -> pb.HashKVResponse:
        return await self._unary(_MAINTENANCE + b"HashKV", request, pb.HashKVResponse.FromString, timeout)

    def snapshot(self) -> AsyncIterator[pb.SnapshotResponse]:
        """Maintenance.Snapshot: the server's db file in chunks (etcd's last chunk ends with
        the SHA-256 of what came before)."""
        return self._server_stream(_MAINTENANCE + b"Snapshot", pb.SnapshotRequest(),
                                   pb.SnapshotResponse.FromString)

    async def _server_stream(self, path: bytes, request: Serializable,
                             parse: Callable[[bytes], ResponseT]) -> AsyncIterator[ResponseT]:
        call = await self.channel.server_stream(path, request.SerializeToString())
        try:
            async for message in call:
                yield parse(message)
        finally:
            if not call.ended:  # the reader stopped early: the server need send no more
                call.cancel()

    # -- the connection --------------------------------------------------------------------------

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def connect(targets: str | Sequence[str], tls: TLSConfig | None = None,
                  credentials: Credentials | None = None, timeout: float = 10.0) -> Client:
    """A Client connected to the first of ``targets`` that accepts: "host:port", several
    comma-separated ("a:2379,b:2379") or a list, tried in order. Raises the last OSError if
    none accepts. Once connected it stays on that endpoint (no failover). TLS with ``tls``
    (etcdctl's --cacert, --cert, --key), or for "https://" targets. With ``credentials``
    (user, password) it logs in (``timeout`` for that call) before it is returned."""
    client = Client(await open_channel(targets, tls))
    if credentials is not None:
        try:
            await client.authenticate(*credentials, timeout=timeout)
        except BaseException:
            await client.close()
            raise
    return client
