"""The run's TLS, from etcd's flags (--cacert, --cert, --key): None for plaintext, unless an
endpoint says https:// (the client then uses the system's CAs)."""
from __future__ import annotations

import argparse

from ..client import TLSConfig


def tls_config(options: argparse.Namespace) -> TLSConfig | None:
    cacert, cert, key = (getattr(options, name, None) for name in ("cacert", "cert", "tls_key"))
    if cacert is None and cert is None and key is None:
        return None
    return TLSConfig(cacert=cacert, cert=cert, key=key)
