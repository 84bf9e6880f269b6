"""TLS for the client: https:// endpoints, etcd's --cacert/--cert/--key, ALPN h2 as gRPC
requires (a server that does not agree on h2 is no gRPC server)."""
from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class TLSConfig:
    """What etcdctl's TLS flags say: the CA that signs the server's certificate (None: the
    system's), and a client certificate and key for servers that ask for one."""

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cacert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # HTTP/2 forbids older (RFC 9113 9.2)
        ctx.set_alpn_protocols(["h2"])
        if self.cert is not None:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def tls_from_flags(cacert: str | None, cert: str | None, key: str | None) -> TLSConfig | None:
    """etcdctl's --cacert, --cert, --key as given: None when none is (plaintext, or an
    https:// target with the system's CAs)."""
    if cacert is None and cert is None and key is None:
        return None
    return TLSConfig(cacert, cert, key)
