"""Restart time with a large state: how long `kvstore serve` takes to serve again.

Builds a data dir with the embedded library (LMDB log): --keys keys of --value-size bytes,
written in batches of --batch concurrent puts, then a snapshot (`Store.snapshot()`), then
--tail more puts that stay in the log (the replay part of a restart). Then starts
`kvstore serve` on that data dir and measures the wall time from the process start until a
Status call succeeds, and the server's RSS at that moment. All on 127.0.0.1; the data dir is
removed at the end unless --keep.

    python3 bench/restart_time.py [--keys 1000000] [--value-size 256] [--tail 50000]

Issue 5's goal: 1M keys served again within 10 s.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import kvstore  # noqa: E402
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402


async def build(data_dir: Path, keys: int, value_size: int, tail: int, batch: int) -> None:
    store = await kvstore.Store.open("lmdb", data_dir, snapshot_count=10**12)
    value = b"v" * value_size
    t0 = time.perf_counter()
    try:
        async def put_range(start: int, stop: int) -> None:
            for lo in range(start, stop, batch):
                await asyncio.gather(*(store.put(pb.PutRequest(key=b"/registry/k/%09d" % i, value=value))
                                       for i in range(lo, min(stop, lo + batch))))

        await put_range(0, keys)
        t1 = time.perf_counter()
        await store.snapshot()
        t2 = time.perf_counter()
        await put_range(keys, keys + tail)  # updates of new keys: the log tail replayed at start
        print(f"built: {keys:,} keys in {t1 - t0:.1f} s, snapshot in {t2 - t1:.1f} s, "
              f"{tail:,} more in the log tail; revision {store.mvcc.current_rev:,}", flush=True)
    finally:
        await store.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_serve(data_dir: Path, timeout: float = 120.0) -> tuple[float, float, int]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kvstore", "serve", "--data-dir", str(data_dir),
                             "--listen-client-urls", url, "--advertise-client-urls", url],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("not serving")
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    st = rpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=0.5)
                elapsed = time.perf_counter() - t0
                return elapsed, rss_mib(proc.pid), st.header.revision
            except grpc.RpcError:
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--tail", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvstore-restart-"))
    data_dir = work / "data"
    try:
        asyncio.run(build(data_dir, a.keys, a.value_size, a.tail, a.batch))
        size = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
        elapsed, rss, rev = time_to_serve(data_dir)
        print(f"restart: serving after {elapsed:.2f} s (snapshot + {a.tail:,}-entry log tail), "
              f"revision {rev:,}, RSS {rss:,.0f} MiB, data dir {size / 2**20:,.0f} MiB")
    finally:
        if a.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
