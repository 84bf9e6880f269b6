"""Real server processes for tests: kvstore and Debian's etcd, each on a free loopback port."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parent.parent
# What a module's tests run against, each in turn: a real kvstore, then a real etcd. The etcd
# runs do not go through kvstore's transport, so the grpcio pass leaves them out.
SERVER_KINDS = ["kvstore", pytest.param("etcd", marks=pytest.mark.transport_free)]


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this test process handed out before: the kernel
    may give the same ephemeral port to consecutive bind(0) calls once the socket is closed,
    and two servers of one fixture (an etcd's client and peer ports, a kvstore) would then
    collide, a test talking to the wrong server."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def channel(endpoint: str, root_ca: Path | None = None,
            client_cert: tuple[Path, Path] | None = None) -> grpc.Channel:
    """``client_cert``: (certificate, key) to present, for servers that verify clients."""
    if root_ca is None:
        return grpc.insecure_channel(endpoint)
    cert, key = (Path(client_cert[0]).read_bytes(), Path(client_cert[1]).read_bytes()) \
        if client_cert else (None, None)
    return grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(
        Path(root_ca).read_bytes(), private_key=key, certificate_chain=cert))


def wait_for_grpc(endpoint: str, proc: subprocess.Popen, timeout: float = 30.0,
                  root_ca: Path | None = None, client_cert: tuple[Path, Path] | None = None) -> None:
    """Wait until a Maintenance.Status call succeeds (the server is really serving)."""
    from kvstore.api import rpc_pb2, rpc_pb2_grpc

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before serving")
        try:
            with channel(endpoint, root_ca, client_cert) as ch:
                rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=1)
            return
        except (grpc.RpcError, FileNotFoundError) as e:  # not up yet (--auto-tls: nor its CA)
            last = e
            time.sleep(0.05)
    raise TimeoutError(f"{endpoint} not serving after {timeout}s: {last}")


class ServerProcess:
    """Common start/stop/kill for a server child process whose output goes to a log file."""

    name = "server"
    root_ca: Path | None = None  # set when the server speaks TLS
    client_cert: tuple[Path, Path] | None = None  # (cert, key) it is checked with, if it verifies clients

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self._port_chosen = port is None  # ours to change if something else takes it
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.{self.name}.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.root_ca else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError  # each server class says how it is started

    def env(self) -> dict:
        return dict(os.environ)

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env(), cwd=str(self.data_dir.parent))
            log.close()
            try:
                wait_for_grpc(self.endpoint, self.proc, timeout, self.root_ca, self.client_cert)
            except Exception as e:
                self.stop()
                if self._port_chosen and attempt < 2 and "address already in use" in self.log():
                    self.port = free_port()  # taken meanwhile (e.g. by a client socket)
                    continue
                raise RuntimeError(f"{self.name} failed to start; log:\n{self.log()}") from e
            if self.proc.poll() is not None:  # what answered was another server on the port
                raise RuntimeError(f"{self.name} exited at start; log:\n{self.log()}")
            return self
        raise AssertionError("unreachable")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @contextlib.contextmanager
    def paused(self):
        """SIGSTOP for the block, then SIGCONT: alive to its peers' sockets, answering
        nothing (a stalled process, a long GC pause), and resumed with its old view."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield self
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class KvstoreProcess(ServerProcess):
    name = "kvstore"

    def __init__(self, data_dir: Path, port: int | None = None, backend: str = "lmdb",
                 extra_args: list[str] | None = None, tls: tuple[Path, Path, Path] | None = None):
        """``tls``: (CA, certificate, key) to serve https:// with."""
        super().__init__(data_dir, port)
        self.backend = backend
        self.extra_args = list(extra_args or [])
        if tls is not None:
            self.root_ca = tls[0]
            self.extra_args += ["--cert-file", str(tls[1]), "--key-file", str(tls[2])]

    def command(self) -> list[str]:
        # KVSTORE_TEST_TRANSPORT runs the whole suite over one server transport or the other.
        transport = os.environ.get("KVSTORE_TEST_TRANSPORT", "h2")
        return [sys.executable, "-m", "kvstore", "serve",
                "--name", "test", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--log-backend", self.backend, "--transport", transport, *self.extra_args]

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env


class EtcdProcess(ServerProcess):
    """Debian's etcd (3.4.x), the reference for differential tests."""

    name = "etcd"

    def __init__(self, data_dir: Path, port: int | None = None, extra_args: list[str] | None = None):
        super().__init__(data_dir, port)
        self.peer_port = free_port()
        self.extra_args = list(extra_args or [])

    @staticmethod
    def available() -> bool:
        return shutil.which("etcd") is not None

    def command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return ["etcd", "--name", "ref", "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"ref={peer}", "--log-level", "error",
                *self.extra_args]

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("ETCDCTL_API", None)
        env["ETCD_UNSUPPORTED_ARCH"] = env.get("ETCD_UNSUPPORTED_ARCH", "")
        return env
