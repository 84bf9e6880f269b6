"""How a run connects, from etcd's flags: its TLS (--cacert, --cert, --key: None for plaintext,
unless an endpoint says https://, the client then using the system's CAs) and who it logs in as
(--user, --password, resolved once by the command line into ``credentials``)."""
from __future__ import annotations

import argparse

from ..client import Client, TLSConfig, connect
from ..client.tls import tls_from_flags


def tls_config(options: argparse.Namespace) -> TLSConfig | None:
    return tls_from_flags(*(getattr(options, name, None) for name in ("cacert", "cert", "tls_key")))


async def connect_for_run(endpoint: str, options: argparse.Namespace) -> Client:
    """One connection of the run, logged in when --user says so."""
    return await connect(endpoint, tls_config(options), getattr(options, "credentials", None))
