"""The supervisor of a partitioned kvstore: one worker process a partition.

One Python process uses one core (the GIL); a partition in a process of its own uses another.
The supervisor starts a ``kvstore serve`` worker per partition of the map, restarts one that
exits with backoff (and logs why: its exit status and last lines of output), stops them all on
SIGTERM, and answers ``/health`` (every worker's, aggregated) and ``/metrics`` on its own URL.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from ..log import DataDirInUse
from ..server.config import parse_client_url
from ..server.env_flags import without_etcd_env
from ..server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..server.serve import check_port_free
from .map import Partition, PartitionMap

logger = logging.getLogger("kvstore.supervisor")

SUPERVISOR_PID_ENV = "KVSTORE_SUPERVISOR_PID"
FLAGS_FILE = "kube-apiserver.flags"


@dataclass
class Backoff:
    first: float = 0.5
    most: float = 30.0
    stable_after: float = 10.0  # a worker up this long starts again from ``first``
    stop_grace: float = 15.0  # SIGTERM to SIGKILL (a snapshot being written may take a while)


@dataclass
class Worker:
    partition: Partition
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_exit: str = ""
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=5))

    @property
    def name(self) -> str:
        return self.partition.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    def __init__(self, partition_map: PartitionMap, worker_argv: Callable[[Partition], list[str]],
                 data_dir: str | Path, metrics_urls: list[str], backoff: Backoff | None = None,
                 http_health: bool = True):
        self.map = partition_map
        # Workers on the grpcio transport answer no HTTP/1.1: their probe is a connection.
        self.http_health = http_health
        self.data_dir = Path(data_dir)
        self.metrics_urls = metrics_urls
        self.backoff = backoff or Backoff()
        self.workers = [Worker(p, worker_argv(p)) for p in partition_map]
        self._stopping = asyncio.Event()
        self._lock_file: BinaryIO | None = None
        self.registry = CollectorRegistry(auto_describe=False)  # /metrics
        ProcessCollector(registry=self.registry)
        self.registry.register(self)

    # -- the flags kube-apiserver needs ---------------------------------------------------------

    def kube_apiserver_flags(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.map.kube_apiserver_flags().items()]

    def announce(self) -> Path:
        """Prints kube-apiserver's flags, and writes them to a file beside the workers' dirs."""
        flags = self.kube_apiserver_flags()
        path = self.data_dir / FLAGS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f + "\n" for f in flags))
        os.replace(tmp, path)
        joined = " \\\n  ".join(flags)
        print(f"kube-apiserver flags (also in {path}):\n  {joined}", flush=True)
        return path

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        servers = [await self._serve_http(url) for url in self.metrics_urls]
        self.announce()
        keepers = [asyncio.ensure_future(self._keep_running(w)) for w in self.workers]
        logger.info("supervising %d partitions (%s); health on %s", len(self.workers),
                    ", ".join(f"{w.name} {w.partition.url}" for w in self.workers),
                    ",".join(self.metrics_urls))
        try:
            await stop.wait()
        finally:
            logger.info("stopping %d workers", sum(w.running for w in self.workers))
            self._stopping.set()
            await asyncio.gather(*(self._stop_worker(w) for w in self.workers))
            for k in keepers:
                k.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            for s in servers:
                s.close()
            self._unlock()

    def _lock(self) -> None:
        self._lock_file = lock = open(self.data_dir / "supervisor.lock", "wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise DataDirInUse(f"data dir {self.data_dir} is used by another supervisor") from None

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()

    async def _keep_running(self, worker: Worker) -> None:
        delay = self.backoff.first
        while not self._stopping.is_set():
            try:
                await self._start(worker)
            except OSError as e:  # the worker could not even be started (e.g. no such python)
                worker.proc = None
                worker.last_exit = f"could not be started: {e}"
                uptime = 0.0
            else:
                assert worker.proc is not None
                if self._stopping.is_set():  # SIGTERM came while it was being started
                    await self._stop_worker(worker)
                    return
                pump = asyncio.ensure_future(self._pump_output(worker))
                await worker.proc.wait()
                await asyncio.wait([pump], timeout=1.0)
                if self._stopping.is_set():
                    return
                uptime = time.monotonic() - worker.started_at
                worker.last_exit = describe_exit(worker.proc.returncode)
            if uptime >= self.backoff.stable_after:
                delay = self.backoff.first
            last = " | ".join(worker.output) or "none"
            logger.warning("partition %s %s after %.1f s (last output: %s); restarting in %.1f s",
                           worker.name, worker.last_exit, uptime, last, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self.backoff.most)
            worker.restarts += 1

    async def _start(self, worker: Worker) -> None:
        worker.output.clear()
        # the ETCD_* variables are in the worker's flags already (env_flags, passthrough_flags)
        env = dict(without_etcd_env(os.environ), **{SUPERVISOR_PID_ENV: str(os.getpid())})
        worker.proc = await asyncio.create_subprocess_exec(
            *worker.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env)
        worker.started_at = time.monotonic()

    async def _pump_output(self, worker: Worker) -> None:
        """The worker's output, each line prefixed with its partition, to our stderr; the last
        lines are kept to say why it exited."""
        proc = worker.proc
        assert proc is not None and proc.stdout is not None
        prefix = f"[{worker.name}] ".encode()
        while line := await proc.stdout.readline():
            sys.stderr.buffer.write(prefix + line)
            sys.stderr.buffer.flush()
            worker.output.append(line.decode(errors="replace").rstrip())

    async def _stop_worker(self, worker: Worker) -> None:
        proc = worker.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.backoff.stop_grace)
        except TimeoutError:
            logger.warning("partition %s did not stop within %.0f s of SIGTERM: killing it",
                           worker.name, self.backoff.stop_grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # -- /health and /metrics ------------------------------------------------------------------

    async def _serve_http(self, url: str) -> asyncio.AbstractServer:
        host, port = parse_client_url(url)
        check_port_free(host, port)  # etcd's wording, as a worker's own port gets
        return await asyncio.start_server(self._http, host, port, reuse_address=True)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, path = (request.split(b" ", 2) + [b"", b""])[:2]
            status, ctype, body = await self.respond(method.decode(), path.decode())
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}[status]
            head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + (b"" if method == b"HEAD" else body))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    async def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"Method Not Allowed\n"
        if path in ("/health", "/livez", "/readyz"):
            return await self.health()
        if path == "/metrics":
            return 200, METRICS_CONTENT_TYPE, generate_latest(self.registry)
        return 404, "text/plain; charset=utf-8", b"404 page not found\n"

    async def health(self) -> tuple[int, str, bytes]:
        """etcd's /health body, true only if every worker's /health is; each worker's own
        answer under ``partitions``."""
        answers = await asyncio.gather(*(self._probe(w) for w in self.workers))
        parts = {w.name: a for w, a in zip(self.workers, answers)}
        sick = [name for name, a in parts.items() if a["health"] != "true"]
        body = {"health": "false" if sick else "true",
                "reason": f"unhealthy partitions: {', '.join(sick)}" if sick else "",
                "partitions": parts}
        return (503 if sick else 200), "application/json", json.dumps(body).encode()

    async def _probe(self, worker: Worker) -> dict[str, str]:
        if not worker.running:
            return {"health": "false", "reason": f"not running ({worker.last_exit or 'starting'})"}
        host, port = parse_client_url(worker.partition.url)
        context = None
        if worker.partition.url.startswith("https://"):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # a liveness probe of our own child
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context), 1.0)
            if not self.http_health:
                writer.close()
                return {"health": "true", "reason": ""}
            try:
                writer.write(b"GET /health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                             % host.encode())
                answer = await asyncio.wait_for(reader.read(), 2.0)
            finally:
                writer.close()
        except (TimeoutError, OSError, ssl.SSLError) as e:
            return {"health": "false", "reason": f"no answer: {e or type(e).__name__}"}
        head, _, body = answer.partition(b"\r\n\r\n")
        try:
            got = json.loads(body)
            return {"health": str(got["health"]), "reason": str(got.get("reason", ""))}
        except (ValueError, KeyError, TypeError):
            return {"health": "false", "reason": head.split(b"\r\n", 1)[0].decode(errors="replace")}

    def collect(self):
        """/metrics (the registry's collector): each partition's worker, read when scraped."""
        up = GaugeMetricFamily("kvstore_partition_up", "Whether the partition's worker is running.",
                               labels=["partition"])
        restarts = CounterMetricFamily("kvstore_partition_restarts_total",
                                       "Times the partition's worker was restarted.", labels=["partition"])
        for w in self.workers:
            up.add_metric([w.name], int(w.running))
            restarts.add_metric([w.name], w.restarts)
        return [up, restarts]


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "is running"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"
