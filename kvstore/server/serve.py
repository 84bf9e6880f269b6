"""Runs one kvstore member: the store on its log, the services on the client URLs."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

from ..log import DataDirCorrupt, open_backend
from ..store import Store
from . import gc_policy
from .config import ConfigError, ServerConfig
from .http import HttpEndpoints
from .services import all_services
from .services.interceptor import CallInterceptor
from .transport.connection_limits import raise_fd_limit
from .transport.tls import ClientTLS


def transport_server(name: str, tls: ClientTLS | None = None):
    """The server class of a --transport. grpcio is imported only when chosen: its C core
    costs ~18 MB of resident memory, which the default transport does without; and it reads
    its TLS cipher suites from the environment once, as it loads."""
    if name == "grpcio":
        env = tls.grpcio_cipher_env() if tls is not None else {}
        if env and os.environ.get("GRPC_SSL_CIPHER_SUITES") != env["GRPC_SSL_CIPHER_SUITES"]:
            if "grpc" in sys.modules:
                raise ConfigError("--cipher-suites on --transport grpcio: grpc was loaded "
                                  "before they could be given to it")
            os.environ.update(env)
        from .transport.grpcio_server import GrpcioServer
        return GrpcioServer
    from .transport.h2.server import H2Server
    return H2Server

log = logging.getLogger("kvstore")


class MemberFailed(RuntimeError):
    """The member can no longer apply the log (see the log for why): the process exits."""


def check_port_free(host: str, port: int) -> None:
    """Fails early, with etcd's wording, if something already listens there."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # As Go's listeners do: TIME_WAIT leftovers of a previous run do not count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as e:
            assert e.strerror is not None  # bind and listen errors carry one
            raise OSError(f"listen tcp {host}:{port}: bind: {e.strerror.lower()}") from None


async def serve(config: ServerConfig, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    addresses = config.listen_addresses()
    tls = config.client_tls()
    for host, port, _tls in addresses:
        check_port_free(host, port)
    fd_limit = raise_fd_limit()
    wal, storage, cluster = open_backend(config.log_backend, config.data_dir, **config.log_options)
    store = Store(wal, storage, config.store, cluster=cluster)
    with gc_policy.recovering():
        try:
            await store.start()
        except BaseException:
            await store.close()
            raise
    gc_policy.settle_after_recovery()
    intercept = CallInterceptor(store)
    http = HttpEndpoints(store, client_requests=intercept.client_requests,
                         partition=config.partition)
    serves_tls = tls if any(t for _, _, t in addresses) else None
    server = transport_server(config.transport, serves_tls)(
        all_services(store), config.store.max_request_bytes, http1=http.respond,
        intercept=intercept, limits=config.connection_limits)
    http.metrics.count_calls(server.calls)
    try:
        for host, port, is_tls in addresses:
            server.listen(host, port, serves_tls if is_tls else None)
        await server.start()
        log.info("ready to serve client requests on %s (%slog %s, data dir %s, revision %d, "
                 "file descriptor limit %d)", ",".join(config.listen_client_urls),
                 f"partition {config.partition}, " if config.partition else "",
                 config.log_backend, config.data_dir, store.mvcc.current_rev, fd_limit)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        if ready is not None:
            ready.set()
        failed = store.failed
        assert failed is not None  # set by start()
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if failed.done():
            why = failed.result()
            raise MemberFailed(f"this member stopped: "
                               f"{why if isinstance(why, DataDirCorrupt) else repr(why)}")
        log.info("shutting down")
    finally:
        await server.stop(1.0)
        await store.close()
