"""The `kvstore` command: `kvstore serve` with etcd's flag names."""
from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..load.cli import add_load_parser, main as run_load
from ..log import BACKENDS, DataDirCorrupt, DataDirInUse, LogUnavailable, parse_log_url
from ..partition.launch import PROFILES, build_supervisor, partitioned
from ..partition.worker import tie_to_supervisor
from ..store.auth.tokens import TokenOptionError, token_provider
from ..store.config import StoreConfig
from .check import add_check_parser, main as run_check
from .config import ConfigError, ServerConfig, split_urls
from .env_flags import apply_env_flags
from .migrate import add_migrate_parser, main as run_migrate
from .restore import add_restore_parser, main as run_restore
from .snapshot_status import add_snapshot_parser, main as snapshot_status
from .transport.connection_limits import ConnectionLimits
from .transport.tls import ClientTLS, split_cipher_suites


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {value!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def _duration(value: str) -> float:
    """Go-style durations as etcd takes them: 10m, 1.5s, 100ms (a bare number is seconds)."""
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    for suffix, scale in units:  # noqa: B007 - scale is read after the break
        if value.endswith(suffix) and not (suffix == "s" and value.endswith("ms")):
            number = value[: -len(suffix)]
            break
    else:
        number, scale = value, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value!r}")
    return max(seconds, 0.1)  # etcd's minimum progress interval is 100 ms


def _urls(value: str) -> list[str]:
    try:
        return split_urls(value)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _log_backend(value: str) -> str:
    try:
        parse_log_url(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The kvstore parser, and its serve command's (``load`` is kvstore.load.cli's)."""
    d = StoreConfig  # the defaults
    p = argparse.ArgumentParser(prog="kvstore", description="An etcd-v3-compatible key-value store.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run a kvstore member")
    s.add_argument("--name", default=d.name, help="human-readable name for this member")
    s.add_argument("--data-dir", default=None, help="path to the data directory (default: NAME.kvstore)")
    s.add_argument("--listen-client-urls", type=_urls, default=None,
                   help="comma-separated URLs to listen on for client traffic (default: "
                        "http://127.0.0.1:2379; with --profile, the default partition's)")
    s.add_argument("--advertise-client-urls", type=_urls, default=None,
                   help="comma-separated client URLs to advertise (default: the listen URLs)")
    s.add_argument("--initial-advertise-peer-urls", type=_urls, default=None,
                   help="peer URLs shown by member list (default: http://localhost:2380 for a "
                        "single member, the NATS URLs on jetstream)")
    s.add_argument("--listen-peer-urls", type=_urls, default=None,
                   help="accepted for etcd's command lines; kvstore members talk through their "
                        "shared log, so nothing listens there")
    s.add_argument("--log-backend", type=_log_backend, default="lmdb",
                   help=f"where writes are made durable and replicated: {', '.join(BACKENDS)}, "
                        "or a log URL (nats://host:4222,...)")
    g = s.add_argument_group("jetstream log (--log-backend jetstream)")
    g.add_argument("--nats-url", default="nats://127.0.0.1:4222",
                   help="comma-separated NATS server URLs")
    g.add_argument("--cluster-name", default="kvstore",
                   help="the kvstore cluster: its members share one JetStream stream")
    g.add_argument("--nats-replicas", type=int, choices=(1, 3), default=None,
                   help="replicas of the stream (default: 3 on a NATS cluster, else 1)")
    s.add_argument("--max-request-bytes", type=_positive_int, default=d.max_request_bytes,
                   help="maximum client request size in bytes the server will accept")
    s.add_argument("--max-txn-ops", type=_positive_int, default=d.max_txn_ops,
                   help="maximum number of operations permitted in a transaction")
    s.add_argument("--quota-backend-bytes", type=int, default=d.quota_backend_bytes,
                   help="raise the NOSPACE alarm when the state's size exceeds this many bytes "
                        "(0: etcd's default, 2 GiB; negative: no quota)")
    s.add_argument("--snapshot-count", type=_positive_int, default=d.snapshot_count,
                   help="applied entries between two MVCC snapshots")
    s.add_argument("--watch-progress-notify-interval", type=_duration,
                   default=d.progress_notify_interval,
                   help="interval of progress notifications to idle progress_notify watches "
                        "(etcd's --experimental-watch-progress-notify-interval; e.g. 10m, 1s)")
    s.add_argument("--transport", choices=("h2", "grpcio"), default="h2",
                   help="server transport: h2 (kvstore's own HTTP/2, default) or grpcio")
    g = s.add_argument_group("client TLS (https:// client URLs), as etcd's flags")
    g.add_argument("--cert-file", default=None, help="path to the client server TLS cert file")
    g.add_argument("--key-file", default=None, help="path to the client server TLS key file")
    g.add_argument("--trusted-ca-file", default=None,
                   help="path to the client server TLS trusted CA file; clients must present a "
                        "certificate it signed (as etcd, even without --client-cert-auth)")
    g.add_argument("--client-cert-auth", action="store_true",
                   help="require client certificates; a certificate's common name is its "
                        "holder's user name for auth")
    g.add_argument("--client-crl-file", default=None,
                   help="path to the client certificate revocation list file (PEM or DER)")
    g.add_argument("--auto-tls", action="store_true",
                   help="client TLS using a generated self-signed certificate "
                        "(DATA_DIR/fixtures/client) when --cert-file/--key-file are not given")
    g.add_argument("--cipher-suites", default=None,
                   help="comma-separated list of supported TLS 1.2 cipher suites, by Go's names "
                        "(e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256; default: OpenSSL's)")
    g.add_argument("--tls-min-version", default="",
                   help="minimum TLS version: TLS1.2 (default) or TLS1.3")
    g.add_argument("--tls-max-version", default="",
                   help="maximum TLS version: TLS1.2 or TLS1.3 (default: the highest)")
    s.add_argument("--auth-token", default="simple",
                   help="the auth token provider: 'simple', or 'jwt,pub-key=PATH,priv-key=PATH,"
                        "sign-method=RS256[,ttl=5m]' (etcd's syntax)")
    s.add_argument("--auth-token-ttl", type=int, default=300,
                   help="seconds a simple token lives unused")
    s.add_argument("--bcrypt-cost", type=int, default=10,
                   help="the bcrypt cost of hashing passwords (4..31)")
    s.add_argument("--handshake-timeout", type=_duration, default=ConnectionLimits.handshake_timeout,
                   help="a client connection that has not sent its HTTP/2 preface (or TLS "
                        "handshake, or HTTP/1.1 request) by then is dropped (default 10s)")
    s.add_argument("--connection-idle-timeout", type=_duration, default=ConnectionLimits.idle_timeout,
                   help="a client connection with no stream open and nothing received for this "
                        "long gets GOAWAY, as grpc-go's MaxConnectionIdle (default 5m)")
    s.add_argument("--max-connections", type=_positive_int, default=None,
                   help="client connections at once; a new one past it closes the one idle the "
                        "longest, or is refused (default: the file descriptor limit, less 128)")
    s.add_argument("--etcd-version", default=d.etcd_version,
                   help="etcd version reported by Maintenance.Status")
    s.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    g = s.add_argument_group("partitions: one worker process a keyspace, under a supervisor")
    g.add_argument("--profile", choices=PROFILES, default=None,
                   help="kube: default, nodes, pods, leases and events partitions, on the "
                        "--listen-client-urls port and the 3rd to 6th ports after it")
    g.add_argument("--partitions", metavar="FILE", default=None,
                   help="a TOML partition map (see docs/partitions.md)")
    g.add_argument("--listen-metrics-urls", type=_urls, default=None,
                   help="where the supervisor answers /health (all partitions) and /metrics "
                        "(default: the default partition's port + 2)")
    g.add_argument("--partition", default=None,
                   help="the partition this process serves, as a worker (labels its metrics)")
    add_load_parser(sub)
    add_check_parser(sub)
    add_snapshot_parser(sub)
    add_restore_parser(sub)
    add_migrate_parser(sub)
    return p, s


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (a bus error on a damaged mapped file) says where, not nothing.
    faulthandler.enable()
    parser, serve_parser = build_parsers()
    args = parser.parse_args(argv)
    if args.command == "load":
        return run_load(args)
    if args.command == "check":
        return run_check(args)
    if args.command == "snapshot":
        return snapshot_status(args)
    if args.command == "restore":
        return run_restore(args)
    if args.command == "migrate":
        return run_migrate(args)
    _configure_logging(args.log_level)
    apply_env_flags(args, serve_parser, argv)  # etcd's ETCD_* variables, for the flags not given
    if partitioned(args):
        return _run(lambda: build_supervisor(args, serve_parser).run())
    if args.listen_metrics_urls:
        print("kvstore: --listen-metrics-urls is served by a supervisor (--profile, --partitions)",
              file=sys.stderr)
        return 2
    tie_to_supervisor()
    return _run(lambda: _serve(_server_config(args)))


def _server_config(args: argparse.Namespace) -> ServerConfig:
    backend = args.log_backend
    log_options: dict = {}
    if parse_log_url(backend)[0] == "nats":
        if "://" not in backend:
            backend = args.nats_url
        log_options = {"cluster": args.cluster_name, "replicas": args.nats_replicas}
    listen = args.listen_client_urls or ["http://127.0.0.1:2379"]
    try:  # refused here, with one line, rather than when the store starts
        token_provider(args.auth_token, args.auth_token_ttl)
    except (TokenOptionError, OSError) as e:
        raise ConfigError(f"failed to create the auth token provider: {e}") from None
    if not 4 <= args.bcrypt_cost <= 31:
        raise ConfigError(f"invalid bcrypt-cost: {args.bcrypt_cost} (want 4..31)")
    tls = ClientTLS(args.cert_file, args.key_file, args.trusted_ca_file, args.client_cert_auth,
                    args.client_crl_file, args.auto_tls, split_cipher_suites(args.cipher_suites),
                    args.tls_min_version, args.tls_max_version)
    store = StoreConfig(
        name=args.name, max_request_bytes=args.max_request_bytes, max_txn_ops=args.max_txn_ops,
        snapshot_count=args.snapshot_count, etcd_version=args.etcd_version,
        client_urls=args.advertise_client_urls or listen,
        peer_urls=args.initial_advertise_peer_urls or [],
        progress_notify_interval=args.watch_progress_notify_interval,
        quota_backend_bytes=args.quota_backend_bytes,
        cluster_name=args.cluster_name if log_options else None,
        auth_token=args.auth_token, auth_token_ttl=args.auth_token_ttl,
        bcrypt_cost=args.bcrypt_cost, client_cert_auth=tls.as_served().client_cert_auth)
    return ServerConfig(
        store=store, data_dir=args.data_dir, listen_client_urls=listen,
        log_backend=backend, log_options=log_options, log_level=args.log_level,
        transport=args.transport, tls=tls, partition=args.partition, connection_limits=ConnectionLimits(
            args.handshake_timeout, args.connection_idle_timeout, args.max_connections or 0))


def _configure_logging(level: str) -> None:
    logging.basicConfig(level={"warn": "WARNING"}.get(level, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _serve(config: ServerConfig) -> None:
    from .serve import serve
    await serve(config)


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    from .serve import MemberFailed

    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # uvloop is a dependency; this only keeps odd platforms working
        runner = asyncio.run
    try:
        runner(main())
    except (OSError, DataDirInUse, DataDirCorrupt, ConfigError, LogUnavailable, MemberFailed) as e:
        print(f"kvstore: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except Exception as e:  # a fatal condition nobody foresaw: still one line (traceback at debug)
        logging.getLogger("kvstore").debug("fatal", exc_info=e)
        print(f"kvstore: fatal: {e!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
