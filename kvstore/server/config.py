"""Server configuration from etcd-style flags."""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..store.config import StoreConfig
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
    cert_file: str | None = None
    key_file: str | None = None
    trusted_ca_file: str | None = None
    client_cert_auth: bool = False
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
            if tls and not (self.cert_file and self.key_file):
                raise ConfigError(f"TLS key/cert (--cert-file, --key-file) must be provided for "
                                  f"client url {url} with HTTPS scheme")
            out.append((host, port, tls))
        return out

    def ssl_context(self):
        """The server's TLS context (ALPN h2, and http/1.1 for /health), or None."""
        if not (self.cert_file and self.key_file):
            return None
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        if self.trusted_ca_file:
            ctx.load_verify_locations(self.trusted_ca_file)
        if self.client_cert_auth:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


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
