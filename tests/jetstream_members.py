"""kvstore members on one JetStream stream, as real processes, beside real NATS servers."""
from __future__ import annotations

import time
from pathlib import Path

import grpc

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from nats_cluster import NatsCluster
from procs import KvstoreProcess


class Members:
    """``n`` kvstore members of cluster ``name`` on ``nats``'s stream, started one by one."""

    def __init__(self, tmp: Path, nats: NatsCluster, n: int = 3, name: str = "kv",
                 extra_args: list[str] | None = None):
        self.nats = nats
        self.name = name
        self.procs = [
            KvstoreProcess(Path(tmp) / f"{name}-m{i}", backend="jetstream",
                           extra_args=["--name", f"m{i}", "--nats-url", nats.url,
                                       "--cluster-name", name, *(extra_args or [])])
            for i in range(n)]

    def __enter__(self) -> Members:
        try:
            for p in self.procs:
                p.start(timeout=60)
        except Exception:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __getitem__(self, i: int) -> KvstoreProcess:
        return self.procs[i]

    def __iter__(self):
        return iter(self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    @property
    def endpoints(self) -> list[str]:
        return [p.endpoint for p in self.procs]

    @property
    def stream(self) -> str:
        return f"KVSTORE_{self.name}"

    def leader(self, timeout: float = 20.0) -> KvstoreProcess:
        """The member that owns lease expiry, once every running member agrees on it."""
        deadline = time.monotonic() + timeout
        while True:
            seen = set()
            for p in self.procs:
                if p.proc is None or p.proc.poll() is not None:
                    continue
                try:
                    with grpc.insecure_channel(p.endpoint) as ch:
                        seen.add(rpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=2).leader)
                except grpc.RpcError:
                    seen.add(None)
            if len(seen) == 1 and None not in seen and 0 not in seen:
                (leader,) = seen
                for p in self.procs:
                    with grpc.insecure_channel(p.endpoint) as ch:
                        status = rpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=2)
                        if status.header.member_id == leader:
                            return p
            if time.monotonic() > deadline:
                raise TimeoutError(f"members do not agree on a leader: {seen}")
            time.sleep(0.2)
