"""A kill -9 crash loop: acknowledged writes must survive, revisions never go backwards, and the
history clients saw must be linearizable.

One kvstore server on its embedded default log (LMDB) in a data dir, with a small
``--snapshot-count`` so that snapshots are written and the log trimmed all the time. Clients
load it without pause:

* writers put unique keys (``cl/<writer>/<seq>``), alone or two in a Txn, and remember what
  was acknowledged and with which revision;
* recorders put, read, compare-and-swap and delete a few shared keys, each op recorded in a
  linearizability History (tests/linearizability.py); an op cut off by the kill has an unknown
  outcome. They start no op while the server is known to be down (writers do, and fail
  until it is back), which keeps the unknown outcomes to the ops the
  kill really cut off; every ``key_epoch`` cycles they move to fresh keys, which keeps each
  key's history small enough to search in a soak of hundreds of cycles.

A watch of the whole keyspace runs throughout (tests/watch_checker.py), resumed after each
restart from the revision after the last one it delivered.

Each cycle the server is SIGKILLed at a random moment (some cycles also once while it is still
starting), restarted on the same data dir and port, and checked at once: its revision is at
least the highest any client was ever answered with, and every write acknowledged since the
last check is there with the acknowledged revision; every ``full_every`` cycles and at the end,
every write ever acknowledged. At the end: each Txn with an unknown outcome is all there or not
at all; the recorded history is checked (``check``); and the watch, all its resumed parts
together, must have delivered an event at every revision, each acknowledged write's events at
its revision and every other revision's those of a write whose outcome is unknown, with the
watch checker's guarantees on each part (order, no duplicates, a Txn's events in one response,
progress notifications never ahead of events).

Run by tests/test_crash_loop.py for a few cycles; a soak runs hundreds::

    make soak                      # SOAK_CYCLES=200 by default
    python tests/crash_loop.py --cycles 500 --data-dir /tmp/soak
"""
from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))         # the tests' helpers
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's kvstore

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc  # noqa: E402
from linearizability import History, cas_outcome, check  # noqa: E402
from procs import KvstoreProcess, wait_for_grpc  # noqa: E402
from watch_checker import CheckedStream, WatchChecker, WriteLog  # noqa: E402

CLIENT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
                  ("grpc.max_reconnect_backoff_ms", 200), ("grpc.max_receive_message_length", -1)]
# what a call cut off by a kill, or made while the server is down, may end with
CONNECTION_ERRORS = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                     grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


class ServerDidNotStart(RuntimeError):
    pass


class Server(KvstoreProcess):
    """A kvstore process that can be killed before it serves."""

    def spawn(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env(), cwd=str(self.data_dir.parent))

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        wait_for_grpc(self.endpoint, self.proc, timeout)


@dataclass
class Stats:
    cycles: int = 0
    kills: int = 0
    kills_while_starting: int = 0
    acknowledged: int = 0            # writes (a put, or a Txn of two puts) acknowledged
    lost: int = 0                    # acknowledged writes missing or at another revision
    backwards: int = 0               # restarts at a revision below one already answered
    torn: int = 0                    # Txns with an unknown outcome found half applied
    unknown: int = 0                 # writes failed: cut off by a kill, or sent while it was down
    max_revision: int = 0
    leftover_tmp: int = 0            # *.tmp files in the data dir after the last clean stop
    data_dir_bytes: int = 0
    history_ops: int = 0
    watch_events: int = 0
    watch_resumes: int = 0
    watch_problems: list[str] = field(default_factory=list)
    linearizable: bool | None = None
    linearizability_report: str = ""
    errors: Counter = field(default_factory=Counter)  # unexpected error codes of calls
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.backwards and not self.torn and not self.errors
                and not self.problems and not self.watch_problems and self.linearizable is not False)

    def summary(self) -> str:
        lines = [
            f"cycles (kill -9 + restart)        {self.cycles}",
            f"kills, of which while starting    {self.kills}, {self.kills_while_starting}",
            f"writes acknowledged               {self.acknowledged}",
            f"writes lost                       {self.lost}",
            f"revisions gone backwards          {self.backwards}",
            f"writes failed (unknown) / torn Txn {self.unknown} / {self.torn}",
            f"final revision                    {self.max_revision}",
            f"data dir, *.tmp files left in it  {self.data_dir_bytes / 1e6:.1f} MB, {self.leftover_tmp}",
            f"history ops, linearizable         {self.history_ops}, {self.linearizable}",
            f"watch: events, resumes, problems  {self.watch_events}, {self.watch_resumes}, "
            f"{len(self.watch_problems)}",
            f"unexpected call errors            {dict(self.errors) or 0}",
            f"time                              {self.seconds:.1f} s",
        ]
        if self.problems:
            lines += ["problems:", *(f"  {p}" for p in self.problems[:20])]
        if self.watch_problems:
            lines += ["watch problems:", *(f"  {p}" for p in self.watch_problems[:20])]
        if self.linearizable is False:
            lines += [self.linearizability_report[:4000]]
        return "\n".join(lines)


class CrashLoop:
    def __init__(self, data_dir: Path, cycles: int, *, seed: int = 0, writers: int = 4,
                 recorders: int = 4, keys: int = 4, key_epoch: int = 10, snapshot_count: int = 200,
                 uptime: tuple[float, float] = (0.3, 1.5), kill_while_starting: float = 0.15,
                 full_every: int = 10, history_timeout: float = 300.0, backend: str = "lmdb",
                 log=print):
        self.server = Server(Path(data_dir), backend=backend,
                             extra_args=["--snapshot-count", str(snapshot_count)])
        self.cycles = cycles
        self.rng = random.Random(seed)
        self.n_writers, self.n_recorders, self.n_keys = writers, recorders, keys
        self.key_epoch = key_epoch          # recorders move to fresh keys every this many cycles
        self.uptime = uptime
        self.kill_while_starting = kill_while_starting
        self.full_every = full_every
        self.history_timeout = history_timeout
        self.log = log
        self.stats = Stats()
        self.history = History()
        self.writes = WriteLog()            # every write, for the watch
        self.watch_parts: list[WatchChecker] = []
        self.streams: list[CheckedStream] = []
        # writer -> [(keys, revision)] acknowledged, in key order; and Txns of unknown outcome
        self.acked: list[list[tuple[tuple[bytes, ...], int]]] = [[] for _ in range(writers)]
        self.verified = [0] * writers       # how many of each writer's acknowledged are checked
        self.unknown_txns: list[tuple[bytes, ...]] = []
        self._lost: set[bytes] = set()     # the first key of each write found lost
        self.max_seen = 0                   # the highest revision any client was answered with
        self.up = asyncio.Event()           # recorders pause while the server is known down
        self.cycle = 0
        self._stop = False

    # -- clients -----------------------------------------------------------------------------
    def _seen(self, rev: int) -> None:
        if rev > self.max_seen:
            self.max_seen = rev

    def _error(self, e: grpc.aio.AioRpcError) -> None:
        if e.code() not in CONNECTION_ERRORS:
            self.stats.errors[f"{e.code().name}: {e.details()}"] += 1

    async def _writer(self, i: int, kv) -> None:
        rng = random.Random(self.rng.random())
        seq = 0
        while not self._stop:
            seq += 1
            if rng.random() < 0.3:
                keys: tuple[bytes, ...] = (b"cl/%02d/%09d/a" % (i, seq), b"cl/%02d/%09d/b" % (i, seq))
            else:
                keys = (b"cl/%02d/%09d" % (i, seq),)
            w = self.writes.call([("put", k, k) for k in keys])
            try:
                if len(keys) == 1:
                    r = await kv.Put(pb.PutRequest(key=keys[0], value=keys[0]), timeout=5)
                else:
                    r = await kv.Txn(pb.TxnRequest(success=[
                        pb.RequestOp(request_put=pb.PutRequest(key=k, value=k)) for k in keys]), timeout=5)
            except grpc.aio.AioRpcError as e:
                self._error(e)
                self.writes.unknown(w)
                self.stats.unknown += 1
                if len(keys) > 1:
                    self.unknown_txns.append(keys)
                await asyncio.sleep(0.02)
                continue
            self._seen(r.header.revision)
            self.writes.ok(w, r.header.revision, [])
            self.acked[i].append((keys, r.header.revision))
            self.stats.acknowledged += 1

    async def _recorder(self, c: int, kv) -> None:
        rng = random.Random(self.rng.random())
        h = self.history
        while not self._stop:
            await self.up.wait()
            key = b"lz/%d/%d" % (self.cycle // self.key_epoch, rng.randrange(self.n_keys))
            kind = rng.choice(["put", "get", "get", "cas", "delete"])
            t = w = None
            try:
                if kind == "put":
                    value = b"%d-%d" % (c, rng.randrange(10**9))
                    t = h.call(c, "put", key, value=value)
                    w = self.writes.call([("put", key, value)])
                    r = await kv.Put(pb.PutRequest(key=key, value=value), timeout=5)
                    h.ok(t, revision=r.header.revision)
                    self.writes.ok(w, r.header.revision, [])
                elif kind == "get":
                    t = h.call(c, "get", key)
                    r = await kv.Range(pb.RangeRequest(key=key), timeout=5)
                    got = r.kvs[0] if r.kvs else None
                    h.ok(t, revision=r.header.revision, value=got.value if got else None,
                         mod_revision=got.mod_revision if got else 0)
                elif kind == "cas":  # kube's update: If mod_revision == seen Then Put Else Range
                    seen = await kv.Range(pb.RangeRequest(key=key), timeout=5)
                    self._seen(seen.header.revision)
                    expected = seen.kvs[0].mod_revision if seen.kvs else 0
                    value = b"%d-%d" % (c, rng.randrange(10**9))
                    t = h.call(c, "cas", key, value=value, expected=expected)
                    w = self.writes.call([("put", key, value)])
                    r = await kv.Txn(pb.TxnRequest(
                        compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=expected)],
                        success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value))],
                        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))]), timeout=5)
                    h.ok(t, **cas_outcome(r))
                    if r.succeeded:
                        self.writes.ok(w, r.header.revision, [])
                    else:
                        self.writes.rejected(w)
                else:
                    t = h.call(c, "delete", key)
                    w = self.writes.call([("delete", key, b"")])
                    r = await kv.DeleteRange(pb.DeleteRangeRequest(key=key), timeout=5)
                    h.ok(t, revision=r.header.revision, deleted=r.deleted)
                    self.writes.ok(w, r.header.revision, [[key] if r.deleted else []])
                self._seen(r.header.revision)
            except grpc.aio.AioRpcError as e:
                self._error(e)
                if t is not None:  # a cas whose first read failed was never called
                    h.unknown(t)
                if w is not None:
                    self.writes.unknown(w)
                await asyncio.sleep(0.02)

    # -- checks ------------------------------------------------------------------------------
    async def _verify(self, kv, full: bool) -> None:
        """Acknowledged writes since the last check (all of them if ``full``) are present with
        the revision they were acknowledged with."""
        for i, acked in enumerate(self.acked):
            start = 0 if full else self.verified[i]
            todo = acked[start:]
            if not todo:
                continue
            first = todo[0][0][0]
            r = await kv.Range(pb.RangeRequest(key=first, range_end=b"cl/%02d0" % i, keys_only=True),
                               timeout=60, wait_for_ready=True)
            have = {got.key: got.mod_revision for got in r.kvs}
            for keys, rev in todo:
                for k in keys:
                    if have.get(k) != rev:
                        if keys[0] in self._lost:
                            break  # found lost before
                        self._lost.add(keys[0])
                        self.stats.lost += 1
                        if len(self.stats.problems) < 20:
                            self.stats.problems.append(
                                f"cycle {self.cycle}: acknowledged {k!r} at revision {rev}, found "
                                f"{'nothing' if k not in have else f'revision {have[k]}'}")
                        break  # count a write once
            self.verified[i] = max(self.verified[i], start + len(todo))

    async def _check_restart(self, kv) -> None:
        r = await kv.Range(pb.RangeRequest(key=b"cl/"), timeout=30, wait_for_ready=True)
        rev = r.header.revision
        if rev < self.max_seen:
            self.stats.backwards += 1
            self.stats.problems.append(f"cycle {self.cycle}: restarted at revision {rev}, below "
                                       f"{self.max_seen} already answered")
        self._seen(rev)
        await self._verify(kv, full=self.cycle % self.full_every == 0)

    async def _check_torn(self, kv) -> None:
        for keys in self.unknown_txns:
            revs = []
            for k in keys:
                r = await kv.Range(pb.RangeRequest(key=k), timeout=30, wait_for_ready=True)
                revs.append(r.kvs[0].mod_revision if r.kvs else 0)
            if len(set(revs)) != 1:
                self.stats.torn += 1
                self.stats.problems.append(f"Txn {keys} half applied: mod revisions {revs}")

    # -- the watch ---------------------------------------------------------------------------
    async def _rewatch(self) -> None:
        """(Re)starts the watch of every key from the revision after the last it delivered."""
        if self.streams:
            await self.streams[-1].close()
        start = self.watch_parts[-1].covered + 1 if self.watch_parts else 2
        stream = CheckedStream(self.server.endpoint, f"watch {len(self.streams)}")
        self.streams.append(stream)
        self.watch_parts.append(await stream.watch(b"\x00", b"\x00", start))

    async def _progress_pinger(self) -> None:
        while not self._stop:
            await asyncio.sleep(0.25)
            stream = self.streams[-1] if self.streams else None
            if stream is not None and stream.ended is None:
                try:
                    await stream.progress()
                except Exception:  # the stream broke meanwhile (a kill): its reader says so
                    pass

    async def _check_watch(self, upto: int) -> None:
        stream = self.streams[-1]
        try:
            await stream.settle(upto)
        except AssertionError as e:
            self.stats.watch_problems.append(str(e))
        await stream.close()
        problems = [*(v for s in self.streams for v in s.checker.violations),
                    *(v for w in self.watch_parts for v in w.violations)]
        problems += self.writes.validate(*self.watch_parts, upto=upto)
        self.stats.watch_problems += problems
        self.stats.watch_events = sum(len(w.events) for w in self.watch_parts)
        self.stats.watch_resumes = len(self.watch_parts) - 1

    # -- the loop ----------------------------------------------------------------------------
    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.rng.random() < self.kill_while_starting:
            self.server.spawn()
            await asyncio.sleep(self.rng.uniform(0.0, 0.8))
            await loop.run_in_executor(None, self.server.kill)
            self.stats.kills += 1
            self.stats.kills_while_starting += 1
        self.server.spawn()
        try:
            await loop.run_in_executor(None, self.server.wait_ready)
        except Exception as e:
            raise ServerDidNotStart(f"the server did not come back after cycle {self.cycle}: {e}\n"
                                    f"log:\n{self.server.log()}") from e

    async def run(self) -> Stats:
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        await self._start()
        channels = [grpc.aio.insecure_channel(self.server.endpoint, options=CLIENT_OPTIONS)
                    for _ in range(2)]
        load_kv, check_kv = (rpc.KVStub(ch) for ch in channels)
        tasks = [asyncio.create_task(self._writer(i, load_kv)) for i in range(self.n_writers)]
        tasks += [asyncio.create_task(self._recorder(c, load_kv)) for c in range(self.n_recorders)]
        tasks.append(asyncio.create_task(self._progress_pinger()))
        self.up.set()
        try:
            await self._rewatch()
            for cycle in range(1, self.cycles + 1):
                self.cycle = cycle
                await asyncio.sleep(self.rng.uniform(*self.uptime))
                self.up.clear()
                await loop.run_in_executor(None, self.server.kill)
                self.stats.kills += 1
                await self._start()
                await self._check_restart(check_kv)
                await self._rewatch()
                self.stats.cycles += 1
                self.up.set()
                if self.cycle % 10 == 0:
                    self.log(f"cycle {self.cycle}: {self.stats.acknowledged} acknowledged, "
                             f"{self.stats.lost} lost, revision {self.max_seen}, "
                             f"{time.monotonic() - t0:.0f} s")
            await asyncio.sleep(self.uptime[0])
            self._stop = True
            self.up.set()
            await asyncio.gather(*tasks)
            await self._verify(check_kv, full=True)
            await self._check_torn(check_kv)
            r = await check_kv.Range(pb.RangeRequest(key=b"cl/"), timeout=30, wait_for_ready=True)
            self.stats.max_revision = r.header.revision
            await self._check_watch(r.header.revision)
        except ServerDidNotStart as e:  # a finding: no further checks are possible
            self.stats.problems.append(str(e))
            self.stats.seconds = time.monotonic() - t0
            return self.stats
        finally:
            self._stop = True
            self.up.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for stream in self.streams:
                await stream.close()
            for ch in channels:
                await ch.close()
            self.server.stop()
        files = [f for f in self.server.data_dir.rglob("*") if f.is_file()]
        self.stats.data_dir_bytes = sum(f.stat().st_size for f in files)
        self.stats.leftover_tmp = sum(f.name.endswith(".tmp") for f in files)
        if "Traceback" in self.server.log_path.read_text(errors="replace"):
            self.stats.problems.append(f"a traceback in the server's log ({self.server.log_path})")
        self.stats.history_ops = len(self.history)
        result = await loop.run_in_executor(None, lambda: check(self.history, timeout=self.history_timeout))
        self.stats.linearizable = result.ok
        self.stats.linearizability_report = result.report()
        self.stats.seconds = time.monotonic() - t0
        return self.stats


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--data-dir", type=Path, help="default: a new temporary directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--recorders", type=int, default=4)
    p.add_argument("--snapshot-count", type=int, default=200)
    args = p.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="kvstore-soak-")) / "data"
    print(f"kill -9 soak: {args.cycles} cycles on {data_dir} (server log: {data_dir}.kvstore.log)",
          flush=True)
    loop = CrashLoop(data_dir, args.cycles, seed=args.seed, writers=args.writers,
                     recorders=args.recorders, snapshot_count=args.snapshot_count,
                     log=lambda m: print(m, flush=True))
    stats = asyncio.run(loop.run())
    print(stats.summary(), flush=True)
    return 0 if stats.ok else 1


if __name__ == "__main__":
    sys.exit(main())
