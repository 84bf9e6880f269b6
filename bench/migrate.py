"""Migration from a real etcd: how fast the copy is, and how far the mirror lags under load.

1. Debian's etcd is started on a temp dir and loaded with --keys keys of --value-size bytes by
   etcd's own load generator (`benchmark put --sequential-keys`).
2. The copy, as `kvstore migrate` takes it (kvstore/migrate/copy.py): etcd's snapshot streamed,
   then restored into a new data dir. Printed: keys/s, and MB/s of the snapshot and of the keys
   and values it holds.
3. The mirror (kvstore/migrate/mirror.py) on that copy, in this process, while the load
   generator puts at --rate for --load-seconds onto the same keys. Every 100 ms the lag is
   sampled: etcd's revision (Maintenance.Status) less the mirror's applied revision. Printed:
   the lag's median, p99 and max, in revisions and in seconds at the rate; the time to catch up
   once the load stops; this process's CPU while it followed (the mirror, its store and log,
   the sampler).
4. With --verify, both sides compared key by key at the final revision (kvstore migrate verify).

    python bench/migrate.py [--keys 1000000] [--value-size 256] [--rate 5000] [--load-seconds 20]

All on 127.0.0.1; etcd's and the copy's data dirs in one temp dir (the medium is printed),
removed at the end unless --keep. The build (compiled or the pure-Python twins) is printed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from etcd_side_by_side import get_benchmark_binary  # noqa: E402
from kvstore.client import connect  # noqa: E402
from kvstore.migrate import Mirror, compare, copy_from, store_reads  # noqa: E402
from kvstore.mvcc.core import COMPILED  # noqa: E402
from kvstore.store.store import Store  # noqa: E402
from procs import EtcdProcess  # noqa: E402
from restart_time import medium  # noqa: E402

SAMPLE_EVERY = 0.1


def load(binary: str, endpoint: str, total: int, key_space: int, value_size: int,
         rate: int = 0, clients: int = 64) -> subprocess.Popen:
    cmd = [binary, "--endpoints", endpoint, "--clients", str(clients), "--conns", str(max(1, clients // 8)),
           "put", "--total", str(total), "--key-space-size", str(key_space),
           "--val-size", str(value_size)]
    cmd += ["--rate", str(rate)] if rate else ["--sequential-keys"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def percentile(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def run(args, binary: str, work: Path) -> None:
    etcd = EtcdProcess(work / "etcd", extra_args=["--quota-backend-bytes", str(8 << 30)])
    with etcd:
        t0 = time.perf_counter()
        out, _ = load(binary, etcd.endpoint, args.keys, args.keys, args.value_size).communicate()
        async with await connect(etcd.endpoint) as client:
            rev = (await client.status()).header.revision
        print(f"etcd loaded: {args.keys:,} keys x {args.value_size} B in "
              f"{time.perf_counter() - t0:.1f} s, revision {rev:,}", flush=True)

        copy_dir = work / "kv"
        async with await connect(etcd.endpoint) as client:
            t0 = time.perf_counter()
            restored = await copy_from(client, copy_dir, etcd.url)
            took = time.perf_counter() - t0
        snapshot_mb = _snapshot_size(copy_dir) / 1e6
        logical_mb = restored.keys * (8 + args.value_size) / 1e6
        print(f"copy: {restored.keys:,} keys at revision {restored.revision:,} in {took:.2f} s: "
              f"{restored.keys / took:,.0f} keys/s, {logical_mb / took:.1f} MB/s of keys and "
              f"values ({snapshot_mb:.0f} MB snapshot file written, {snapshot_mb / took:.1f} MB/s)",
              flush=True)

        store = await Store.open("lmdb", copy_dir, lease_expiry=False)
        try:
            await follow(args, binary, etcd, store)
        finally:
            await store.close()


def _snapshot_size(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("snapshot-*"))


async def follow(args, binary: str, etcd: EtcdProcess, store: Store) -> None:
    mirror = Mirror(store, lambda: connect(etcd.endpoint))
    follower = asyncio.ensure_future(mirror.run())
    lags: list[int] = []
    total = args.rate * args.load_seconds
    async with await connect(etcd.endpoint) as client:
        cpu0, t0 = time.process_time(), time.perf_counter()
        writer = load(binary, etcd.endpoint, total, args.keys, args.value_size, rate=args.rate,
                      clients=args.load_clients)
        while writer.poll() is None:
            source = (await client.status()).header.revision
            lags.append(max(0, source - mirror.applied))
            await asyncio.sleep(SAMPLE_EVERY)
        loaded = time.perf_counter() - t0
        final = (await client.status()).header.revision
        t1 = time.perf_counter()
        while mirror.applied < final:  # noqa: ASYNC110 - polled: the mirror has no event to wait on
            await asyncio.sleep(0.01)
        caught_up = time.perf_counter() - t1
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - t0
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        achieved = total / loaded
        print(f"mirror under load: {total:,} puts at --rate {args.rate} took {loaded:.1f} s "
              f"({achieved:,.0f}/s); lag sampled {len(lags)} times: median "
              f"{statistics.median(lags):,.0f}, p99 {percentile(lags, 0.99):,}, max {max(lags):,} "
              f"revisions (at {achieved:,.0f}/s: {statistics.median(lags) / achieved * 1000:.0f} ms, "
              f"{percentile(lags, 0.99) / achieved * 1000:.0f} ms, {max(lags) / achieved * 1000:.0f} ms); "
              f"caught up {caught_up * 1000:.0f} ms after the load stopped; CPU {cpu:.1f} s over "
              f"{wall:.1f} s ({cpu / wall * 100:.0f}% of a core)", flush=True)
        if args.verify:
            t0 = time.perf_counter()
            copy_range, copy_hash = store_reads(store)
            c = await compare(client.range, copy_range, final, client.hash_kv, copy_hash)
            print(f"verify at {final:,}: {c.keys:,} keys, {c.differences} differences; {c.hashes} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
            for line in c.shown:
                print("  " + line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--rate", type=int, default=5000, help="puts/s on etcd while the mirror follows")
    p.add_argument("--load-seconds", type=int, default=20)
    p.add_argument("--load-clients", type=int, default=64, help="the paced load's clients")
    p.add_argument("--verify", action="store_true", help="compare both sides at the end")
    p.add_argument("--dir", default=None, help="where the temp dir goes (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--benchmark-bin", default=None, help="etcd's benchmark tool (default: built "
                                                        "by shared/tools/build-etcd-benchmark.sh)")
    p.add_argument("--build-timeout", type=float, default=900)
    args = p.parse_args()
    binary = get_benchmark_binary(args)
    work = Path(tempfile.mkdtemp(prefix="kvstore-migrate-", dir=args.dir))
    print(f"build: {'compiled' if COMPILED else 'pure-Python twins'}; data dirs (etcd's and the "
          f"copy's) on {medium(work)}; etcd {_etcd_version()}", flush=True)
    try:
        asyncio.run(run(args, binary, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _etcd_version() -> str:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True,
                         env={**os.environ, "ETCD_UNSUPPORTED_ARCH": ""}).stdout
    return out.splitlines()[0].split()[-1] if out else "?"


if __name__ == "__main__":
    main()
