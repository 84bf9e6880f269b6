"""A full disk under the log: writes fail with etcd's "database space exceeded" and raise the
NOSPACE alarm, reads go on, nothing acknowledged is lost, and writes work again once space is
freed. The medium is a 4 MiB tmpfs where root may mount one, else a file-size limit."""
from __future__ import annotations

import json
import resource
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess

VALUE = b"x" * 8192


class Medium:
    def __init__(self, root: Path, kind: str):
        self.root = root
        self.kind = kind
        self.free: Callable[[KvstoreProcess], None] = lambda server: None
        self.limit: Callable[[KvstoreProcess], None] = lambda server: None


# kvstore's own transport whatever the pass: the alarm shows on /health, which grpcio cannot serve
pytestmark = pytest.mark.h2_transport


@pytest.fixture(params=["tmpfs", "file-size limit"])
def medium(request, tmp_path):
    """A small tmpfs (ENOSPC; where mounting is not permitted, the file-size limit stands in),
    or a file-size limit set on the server process (EFBIG)."""
    root = tmp_path / "mnt"
    root.mkdir()
    mounted = request.param == "tmpfs" and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True).returncode == 0
    if mounted:
        m = Medium(root, "tmpfs")
        # What the operator deletes to free space. It must hold what LMDB then takes from the
        # write-ahead files (up to two files of about wal_file.SWITCH_BYTES, 1 MiB; LMDB stores
        # an 8 KiB value in three 4 KiB pages), or LMDB's checkpoints fill the medium again
        # and the restart below finds no room for its own writes.
        ballast = root / "ballast"
        ballast.write_bytes(b"\0" * (2 << 20))
        m.free = lambda server: ballast.unlink()
        yield m
        subprocess.run(["umount", "-l", str(root)], check=True)
    else:
        m = Medium(root, "file-size limit")
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        m.limit = lambda server: resource.prlimit(
            server.proc.pid, resource.RLIMIT_FSIZE, (2 << 20, resource.RLIM_INFINITY))
        m.free = lambda server: resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, unlimited)
        yield m


def channel(endpoint: str) -> grpc.Channel:
    """A channel that takes a range of every value written (more than grpc's 4 MiB default)."""
    return grpc.insecure_channel(endpoint, options=[("grpc.max_receive_message_length", 64 << 20)])


def health(server) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def scrape(server) -> dict[tuple[str, tuple], float]:
    """/metrics: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_full_disk_fails_writes_keeps_reads_and_recovers(medium, tmp_path):
    server = KvstoreProcess(medium.root / "d", extra_args=["--transport", "h2"])  # for /health
    server.log_path = tmp_path / "kvstore.log"  # not on the small medium
    with server:
        medium.limit(server)
        with channel(server.endpoint) as ch:
            kv, maintenance = rpc.KVStub(ch), rpc.MaintenanceStub(ch)
            acked: dict[bytes, int] = {}
            for i in range(2000):  # 16 MB: more than the medium takes
                key = b"/full/%05d" % i
                try:
                    acked[key] = kv.Put(pb.PutRequest(key=key, value=VALUE), timeout=10).header.revision
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                    assert e.details() == "etcdserver: mvcc: database space exceeded"
                    break
            else:
                pytest.fail(f"the medium ({medium.kind}) never filled")
            assert len(acked) > 10
            with pytest.raises(grpc.RpcError) as again:  # still full: still refused
                kv.Put(pb.PutRequest(key=b"/full/again", value=VALUE), timeout=10)
            assert again.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            status = maintenance.Status(pb.StatusRequest(), timeout=5)
            assert [e.split()[1] for e in status.errors] == ["alarm:NOSPACE"]
            assert status.errors[0] == f"memberID:{status.header.member_id} alarm:NOSPACE "
            assert health(server) == (503, {"health": "false", "reason": "ALARM NOSPACE"})
            metrics = scrape(server)
            assert metrics["etcd_server_proposals_failed_total", ()] >= 1  # the log refused it
            assert metrics["grpc_server_handled_total", (
                ("grpc_code", "ResourceExhausted"), ("grpc_method", "Put"),
                ("grpc_service", "etcdserverpb.KV"), ("grpc_type", "unary"))] == 2
            # reads go on, and see every acknowledged write
            got = kv.Range(pb.RangeRequest(key=b"/full/", range_end=b"/full0"), timeout=10)
            assert {x.key: x.mod_revision for x in got.kvs} == acked

            medium.free(server)
            rev = kv.Put(pb.PutRequest(key=b"/full/after", value=b"v"), timeout=10).header.revision
            assert rev == max(acked.values()) + 1  # the failed writes took no revision
            assert not maintenance.Status(pb.StatusRequest(), timeout=5).errors
            assert health(server)[0] == 200
            acked[b"/full/after"] = rev
    assert "Traceback" not in server.log()
    with server:  # a restart has every acknowledged write
        with channel(server.endpoint) as ch:
            got = rpc.KVStub(ch).Range(pb.RangeRequest(key=b"/full/", range_end=b"/full0"), timeout=10)
            assert {x.key: x.mod_revision for x in got.kvs} == acked
            assert all(x.value == VALUE for x in got.kvs if x.key != b"/full/after")
