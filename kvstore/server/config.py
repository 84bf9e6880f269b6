"""Server configuration from etcd-style flags."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..store.config import StoreConfig
from .tls import TLSConfigError, TLSOptions
from .transport.connection_limits import ConnectionLimits


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
    tls: TLSOptions = field(default_factory=TLSOptions)
    partition: str | None = None  # the partition this process serves, as a supervisor's worker
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self):
        if self.data_dir is None:
            self.data_dir = f"{self.store.name}.kvstore"
        if not self.store.client_urls:
            self.store.client_urls = list(self.listen_client_urls)

    def listen_addresses(self) -> list[tuple[str, int, bool]]:
        """(host, port, tls) for each client URL."""
        out = []
        for url in self.listen_client_urls:
            host, port = parse_client_url(url)
            tls = url.startswith("https://")
            if tls and not (self.tls.has_cert or self.tls.auto_tls):
                raise ConfigError(f"TLS key/cert (--cert-file, --key-file) must be provided for "
                                  f"client url {url} with HTTPS scheme")
            out.append((host, port, tls))
        return out

    def ssl_context(self):
        """The server's TLS context, or None; with --auto-tls and no certificate, one is made
        first (the data dir's fixtures/client) for the hosts of the https:// client URLs."""
        tls = self.tls
        try:
            tls.check()
            if tls.auto_tls and not tls.has_cert:
                hosts = [parse_client_url(u)[0] for u in self.listen_client_urls
                         if u.startswith("https://")]
                if hosts:
                    assert self.data_dir is not None  # __post_init__ names one
                    tls.self_signed(self.data_dir, hosts)
            return tls.context()
        except TLSConfigError as e:
            raise ConfigError(str(e)) from None


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
