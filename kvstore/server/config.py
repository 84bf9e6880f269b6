"""Server configuration from etcd-style flags."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..store.config import StoreConfig
from .transport.connection_limits import ConnectionLimits
from .transport.tls import ClientTLS, TLSConfigError

log = logging.getLogger("kvstore")


class ConfigError(ValueError):
    pass


@dataclass
class ServerConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    data_dir: str | None = None
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    log_backend: str = "lmdb"  # a backend name or a log URL (kvstore/log/__init__.py)
    log_options: dict = field(default_factory=dict)  # the backend's own (jetstream: cluster, replicas)
    log_level: str = "info"
    transport: str = "h2"
    tls: ClientTLS = field(default_factory=ClientTLS)  # the client URLs' (https://)
    partition: str | None = None  # the partition this process serves, as a supervisor's worker
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self):
        if self.data_dir is None:
            self.data_dir = f"{self.store.name}.kvstore"
        if not self.store.client_urls:
            self.store.client_urls = list(self.listen_client_urls)

    def listen_addresses(self) -> list[tuple[str, int, bool]]:
        """(host, port, tls) for each client URL; refuses what etcd refuses of the TLS flags."""
        out = []
        for url in self.listen_client_urls:
            host, port = parse_client_url(url)
            out.append((host, port, url.startswith("https://")))
        serves_tls = any(tls for _, _, tls in out)
        try:
            self.tls.validate(serves_tls)
            if serves_tls and self.transport == "grpcio":
                self.tls.as_served().validate_for_grpcio()
        except TLSConfigError as e:
            raise ConfigError(str(e)) from None
        for url in self.listen_client_urls:
            if url.startswith("https://") and not (self.tls.has_cert or self.tls.self_signed):
                raise ConfigError(f"TLS key/cert (--cert-file, --key-file) must be provided for "
                                  f"client url {url} with HTTPS scheme")
        return out

    def client_tls(self) -> ClientTLS | None:
        """What the https:// URLs serve with (--auto-tls: its certificate made first, as etcd
        makes it even for http:// URLs alone), or None without a certificate."""
        tls = self.tls
        if tls.self_signed:
            assert self.data_dir is not None  # __post_init__ names one
            # etcd: the hosts of every listen client URL, in its sorted order
            hosts = [parse_client_url(u)[0] for u in sorted(self.listen_client_urls)]
            tls = tls.with_self_signed_cert(self.data_dir, hosts)
        elif tls.auto_tls:
            log.warning("ignoring client auto TLS since certs given")  # (etcd's words)
        return tls if tls.has_cert else None


def parse_client_url(url: str) -> tuple[str, int]:
    """``http://host:port`` -> (host, port); etcd's error wording for what it rejects."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"unexpected URL scheme in {url!r} (use http://host:port)")
    if parts.path not in ("", "/"):
        raise ConfigError(f"URL must not contain a path: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"invalid port in URL {url!r}") from None
    if not parts.hostname or port is None:
        raise ConfigError(f"URL address does not have the form \"host:port\": {url!r}")
    return parts.hostname, port


def split_urls(value: str) -> list[str]:
    urls = [u.strip() for u in value.split(",") if u.strip()]
    if not urls:
        raise ConfigError("no URL given")
    for u in urls:
        parse_client_url(u)
    return urls
