"""A gRPC request's header block, as grpc-go sends it (POST, te: trailers).

The constant part is encoded once per method path: with static-table indexes and literals
*without indexing* only (a table-less Encoder(0)), so the block never refers to nor changes
the connection encoder's dynamic table, and is valid on any connection at any time
(H2ClientConnection.open_stream_encoded). A deadline's grpc-timeout, different every call,
is appended to it as one more literal without indexing.
"""
from __future__ import annotations

import math

from ..h2.connection import Headers
from ..h2.hpack_select import Encoder

_TIMEOUT_UNITS = ((b"n", 1e9), (b"u", 1e6), (b"m", 1e3), (b"S", 1.0), (b"M", 1 / 60),
                  (b"H", 1 / 3600))
# literal without indexing, new name (RFC 7541 §6.2.2): 0x00, the name, then the value
_TIMEOUT_FIELD = b"\x00\x0cgrpc-timeout"


def encode_timeout(seconds: float) -> bytes:
    """grpc-timeout: at most 8 digits, in the finest unit that fits (rounded up, as grpc-go)."""
    for unit, per_second in _TIMEOUT_UNITS:
        n = max(0, math.ceil(seconds * per_second))
        if n < 10**8:
            return b"%d%s" % (n, unit)
    return b"99999999H"


def request_headers(path: bytes, authority: bytes, timeout: float | None = None,
                    scheme: bytes = b"http") -> Headers:
    headers = [(b":method", b"POST"), (b":scheme", scheme), (b":path", path),
               (b":authority", authority), (b"content-type", b"application/grpc"),
               (b"te", b"trailers")]
    if timeout is not None:
        headers.append((b"grpc-timeout", encode_timeout(timeout)))
    return headers


def request_block(path: bytes, authority: bytes, scheme: bytes = b"http") -> bytes:
    """The request headers of ``path``, encoded to leave any dynamic table alone."""
    return Encoder(0).encode(request_headers(path, authority, scheme=scheme))


def token_field(token: str) -> bytes:
    """etcd's auth token as gRPC metadata ("token"), encoded as the blocks are (it leaves the
    dynamic table alone), to append to one."""
    return Encoder(0).encode([(b"token", token.encode("ascii"))])


def with_timeout(block: bytes, timeout: float | None) -> bytes:
    if timeout is None:
        return block
    value = encode_timeout(timeout)  # at most 9 bytes: its length fits the 7-bit prefix
    return block + _TIMEOUT_FIELD + bytes((len(value),)) + value
