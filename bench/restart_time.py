"""Restart time with a large state: how long `kvstore serve` and etcd take to serve again.

Builds a data dir with the embedded library (LMDB log): --keys keys of --value-size bytes,
written in batches of --batch concurrent puts, then a snapshot (`Store.snapshot()`), then
--tail more puts that stay in the log (the replay part of a restart).

The same state for etcd (unless --no-etcd): right after kvstore's snapshot, the store's
Maintenance.Snapshot stream (an etcd 3.4 bbolt db, as `etcdctl snapshot save` writes it) goes
to a file; `etcdctl snapshot restore` makes an etcd data dir of it; Debian's etcd is started on
it once and given the same --tail puts (same keys, values, batches), which stay in its WAL, then
stopped. Both then hold the same keys and revisions, and each restart replays a --tail-entry
log: kvstore applies its LMDB log's tail on the snapshot; etcd reads its WAL (the backend
already holds those entries, so it applies none) and rebuilds its in-memory index from the
bbolt db's key bucket.

Then, --runs times each, alternating, it starts `kvstore serve` and etcd on their data dirs and
measures the wall time from the process start until a Status call succeeds, and the server's
RSS at that moment; it prints each side's best (min) time and kvstore/etcd. Both data dirs are
in the same temp dir (the medium is printed), written back (sync) before the first start, and
in the page cache when the servers read them. All on 127.0.0.1; the data dirs are removed at
the end unless --keep.

    python3 bench/restart_time.py [--keys 1000000] [--value-size 256] [--tail 50000]

Issue 16's goal: 1M keys served again in at most 3 s and at most 0.5x etcd's time.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import kvstore  # noqa: E402
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402
from kvstore.mvcc.core import COMPILED  # noqa: E402
from procs import EtcdProcess, free_port  # noqa: E402


def tail_keys(keys: int, tail: int) -> range:
    return range(keys, keys + tail)


def key(i: int) -> bytes:
    return b"/registry/k/%09d" % i


async def build(data_dir: Path, keys: int, value_size: int, tail: int, batch: int,
                etcd_db: Path | None) -> None:
    """kvstore's data dir; with ``etcd_db``, the etcd db file of its state as of its snapshot
    (before the tail), as `etcdctl snapshot save` writes it."""
    store = await kvstore.Store.open("lmdb", data_dir, snapshot_count=10**12)
    value = b"v" * value_size
    t0 = time.perf_counter()
    try:
        async def put_range(start: int, stop: int) -> None:
            for lo in range(start, stop, batch):
                await asyncio.gather(*(store.put(pb.PutRequest(key=key(i), value=value))
                                       for i in range(lo, min(stop, lo + batch))))

        await put_range(0, keys)
        t1 = time.perf_counter()
        await store.snapshot()
        t2 = time.perf_counter()
        if etcd_db is not None:
            with create(etcd_db) as f:
                async for raw in store.etcd_snapshot():
                    f.write(pb.SnapshotResponse.FromString(raw).blob)  # the db, then its SHA-256
                size = f.tell()
            print(f"etcd db of the snapshot's state: {size / 2**20:,.0f} MiB "
                  f"in {time.perf_counter() - t2:.1f} s", flush=True)
        await put_range(keys, keys + tail)  # new keys: the log tail replayed at start
        print(f"built: {keys:,} keys in {t1 - t0:.1f} s, snapshot in {t2 - t1:.1f} s, "
              f"{tail:,} more in the log tail; revision {store.mvcc.current_rev:,}", flush=True)
    finally:
        await store.close()


def create(path: Path):
    return open(path, "wb")


def etcd_server(data_dir: Path) -> EtcdProcess:
    return EtcdProcess(data_dir)


def build_etcd(db: Path, data_dir: Path, keys: int, value_size: int, tail: int,
               batch: int) -> int:
    """etcd's data dir: the db restored, then the same tail of puts, left in its WAL; returns
    the revision."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    server = etcd_server(data_dir)
    peer = f"http://127.0.0.1:{server.peer_port}"
    t0 = time.perf_counter()
    subprocess.run(["etcdctl", "snapshot", "restore", str(db), "--data-dir", str(data_dir),
                    "--name", "ref", "--initial-cluster", f"ref={peer}",
                    "--initial-advertise-peer-urls", peer],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t1 = time.perf_counter()
    value = b"v" * value_size
    with server, grpc.insecure_channel(server.endpoint) as ch:
        kv = rpc.KVStub(ch)
        for lo in range(keys, keys + tail, batch):
            futures = [kv.Put.future(pb.PutRequest(key=key(i), value=value), timeout=60)
                       for i in range(lo, min(keys + tail, lo + batch))]
            for f in futures:
                f.result()
        rev = rpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=10).header.revision
    print(f"etcd: restored in {t1 - t0:.1f} s, {tail:,} more puts in its WAL in "
          f"{time.perf_counter() - t1:.1f} s; revision {rev:,}", flush=True)
    return rev


def rss_mib(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(rest.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def medium(path: Path) -> str:
    """The file system type and mount point ``path`` is on (from /proc/mounts)."""
    best = ("?", "")
    real = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in mounts:
        fields = line.split()
        mount, fstype = fields[1], fields[2]
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best[1]):
            best = (fstype, mount)
    return f"{best[0]} (mounted at {best[1]})"


def time_to_serve(command: list[str], port: int, env: dict | None = None, cwd: Path = REPO,
                  timeout: float = 120.0) -> tuple[float, tuple[float, float], int]:
    """Wall time from the process start until a Status call succeeds, the RSS then and its
    peak so far (MiB), and the revision it reports."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("not serving")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    st = rpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=0.5)
                elapsed = time.perf_counter() - t0
                return elapsed, rss_mib(proc.pid), st.header.revision
            except grpc.RpcError:
                time.sleep(0.01)
    finally:
        proc.terminate()
        proc.wait(30)


def kvstore_serve(data_dir: Path, repo: Path = REPO) -> tuple[float, tuple[float, float], int]:
    """``repo``: the checkout whose kvstore is started (its extensions built in place)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo)
    return time_to_serve([sys.executable, "-m", "kvstore", "serve", "--data-dir", str(data_dir),
                          "--listen-client-urls", url, "--advertise-client-urls", url], port,
                         env, cwd=repo)


def etcd_serve(data_dir: Path) -> tuple[float, tuple[float, float], int]:
    server = etcd_server(data_dir)
    return time_to_serve(server.command(), server.port, server.env())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--tail", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3, help="starts of each server; the min is kept")
    p.add_argument("--no-etcd", action="store_true", help="kvstore alone")
    p.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                   help="also start the kvstore of another checkout (e.g. a worktree of main, "
                        "extensions built in place) on the same data dir: before and after")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    with_etcd = not a.no_etcd and shutil.which("etcd") is not None and shutil.which("etcdctl")
    if not a.no_etcd and not with_etcd:
        print("etcd or etcdctl not found: kvstore alone")
    work = Path(tempfile.mkdtemp(prefix="kvstore-restart-"))
    data_dir, etcd_dir, etcd_db = work / "data", work / "etcd", work / "etcd.db"
    try:
        asyncio.run(build(data_dir, a.keys, a.value_size, a.tail, a.batch,
                          etcd_db if with_etcd else None))
        if with_etcd:
            build_etcd(etcd_db, etcd_dir, a.keys, a.value_size, a.tail, a.batch)
            etcd_db.unlink()
        os.sync()  # nothing of the build left to write back while the servers start
        print(f"data dirs on {medium(work)}: {work}")
        runs: dict[str, list] = {"kvstore": [], "baseline": [], "etcd": []}
        for _ in range(a.runs):
            runs["kvstore"].append(kvstore_serve(data_dir))
            if a.baseline is not None:
                runs["baseline"].append(kvstore_serve(data_dir, a.baseline.resolve()))
            if with_etcd:
                runs["etcd"].append(etcd_serve(etcd_dir))
        compiled = "compiled" if COMPILED else "pure Python (KVSTORE_NO_EXT)"
        best = {}
        for name, where in (("kvstore", data_dir), ("baseline", data_dir), ("etcd", etcd_dir)):
            if not runs[name]:
                continue
            size = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
            times = ", ".join(f"{t:.2f}" for t, _, _ in runs[name])
            t, (rss, peak), rev = best[name] = min(runs[name])
            what = (f"{compiled}; snapshot + {a.tail:,}-entry log tail" if name == "kvstore"
                    else f"{a.baseline}, {compiled}" if name == "baseline"
                    else f"etcd {etcd_version()}; bbolt db + {a.tail:,}-entry WAL")
            print(f"{name}: serving after {t:.2f} s best of {len(runs[name])} ({times}) "
                  f"[{what}], revision {rev:,}, RSS {rss:,.0f} MiB (peak {peak:,.0f}), "
                  f"data dir {size / 2**20:,.0f} MiB")
        for name in ("baseline", "etcd"):
            if name in best:
                print(f"kvstore/{name}: {best['kvstore'][0] / best[name][0]:.2f} "
                      f"(RSS {best['kvstore'][1][0] / best[name][1][0]:.2f})")
    finally:
        if a.keep:
            print(f"data dirs kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def etcd_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out.startswith("etcd Version:") else "?"


if __name__ == "__main__":
    main()
