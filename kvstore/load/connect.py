"""How a run connects, from etcd's flags: its TLS (--cacert, --cert, --key: None for plaintext,
unless an endpoint says https://, the client then using the system's CAs) and who it logs in as
(--user, --password, resolved once by the command line into ``credentials``)."""
from __future__ import annotations

import argparse

from ..client import Client, TLSConfig, connect


def tls_config(options: argparse.Namespace) -> TLSConfig | None:
    cacert, cert, key = (getattr(options, name, None) for name in ("cacert", "cert", "tls_key"))
    if cacert is None and cert is None and key is None:
        return None
    return TLSConfig(cacert=cacert, cert=cert, key=key)


async def connect_for_run(endpoint: str, options: argparse.Namespace) -> Client:
    """One connection of the run, logged in when --user says so."""
    return await connect(endpoint, tls_config(options), getattr(options, "credentials", None))
