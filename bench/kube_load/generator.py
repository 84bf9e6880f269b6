"""One generator process (of --procs): its share of the keys and of every stream's rate, sent
on an open-loop schedule, and what came back (Tally), for the coordinator over a pipe."""
from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import time
import traceback
from array import array
from collections import Counter, deque

from etcd_side_by_side import log
from kvstore.api import rpc_pb2 as pb
from kvstore.partition.kube import kube_map

from .aioclient import aio_connect
from .clients import Pool, call_once
from .h2client import h2_connect
from .wire import (
    LEASE_GRANT,
    PUT,
    RANGE,
    TXN,
    WATCH,
    create_compare,
    delete_op,
    ld,
    mod_compare,
    mod_compare_head,
    put_op,
    range_failure,
)
from .workload import (
    BASE,
    EVENT_PREFIX,
    LEASE_PREFIX,
    POD_PREFIX,
    STREAMS,
    event_key,
    lease_key,
    pod_key,
)


class Tally:
    """What one stream's requests scheduled in a measured window came to."""
    __slots__ = ("lat", "lag", "ok", "errors", "skipped", "conflicts", "pending", "kinds")

    def __init__(self):
        self.lat = array("d")  # seconds from the scheduled send time to the answer
        self.lag = array("d")  # seconds from the scheduled send time to the actual send
        self.ok = self.errors = self.skipped = self.conflicts = self.pending = 0
        self.kinds: Counter = Counter()

    def dump(self) -> dict:
        return {"lat": self.lat.tobytes(), "lag": self.lag.tobytes(), "ok": self.ok,
                "errors": self.errors, "skipped": self.skipped, "conflicts": self.conflicts,
                "unfinished": self.pending, "kinds": dict(self.kinds)}


class Generator:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.w, self.n = cfg["worker"], cfg["procs"]
        self.map = kube_map("127.0.0.1", cfg["port"]) if cfg["partitioned"] else None
        self.single_url = f"http://127.0.0.1:{cfg['port']}"
        self.pools: dict[str, Pool] = {}
        self.flight = {s: [0] for s in STREAMS}  # requests in flight, per stream
        self.cap = cfg["max_inflight"]
        self.monotonic = time.monotonic
        self.TxnResponse = pb.TxnResponse
        # leases: this process's share of the node keys
        value = b"k8s\x00" + random.Random(1).randbytes(cfg["lease_value"] - 4)
        vfield = ld(0x12, value)
        self.hb_keys = [lease_key(i) for i in range(self.w, cfg["lease_keys"], self.n)]
        self.hb_rev = [0] * len(self.hb_keys)
        self.hb_head = [mod_compare_head(k) for k in self.hb_keys]
        self.hb_tail = [put_op(k, vfield) + range_failure(k) for k in self.hb_keys]
        self.hb_next = 0
        # pods
        self.pod_value = ld(0x12, b"k8s\x00" + random.Random(2).randbytes(cfg["pod_value"] - 4))
        self.pod_idle: deque[tuple[bytes, int]] = deque()  # live pods with no write in flight
        self.pod_next = self.w
        self.pod_op = 0
        self.pod_acked = 0  # successful pod writes (each is one watch event)
        # events
        self.ev_value = ld(0x12, b"k8s\x00" + random.Random(3).randbytes(cfg["event_value"] - 4))
        self.ev_next = self.w
        self.lease_id = 0
        self.lease_at = 0.0
        self.granting = False
        self.grants = self.grant_errors = 0
        # the watch (worker 0)
        self.watch_events = 0
        self.watch_error: str | None = None

    def url_for(self, key: bytes) -> str:
        if self.map is None:
            return self.single_url
        return self.map.partition_for(key).url

    def pool_for(self, key: bytes) -> Pool:
        return self.pools[self.url_for(key)]

    # -- set-up --------------------------------------------------------------------------------

    async def connect(self) -> dict:
        connect = h2_connect if self.cfg["client"] == "raw" else aio_connect
        urls = sorted({self.url_for(p) for p in (LEASE_PREFIX, POD_PREFIX, EVENT_PREFIX)})
        deadline = time.monotonic() + 60
        for url in urls:
            conns = []
            while len(conns) < self.cfg["conns"]:
                try:
                    conns.append(await connect(url))
                except (TimeoutError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            self.pools[url] = Pool(conns)
            probe = pb.RangeRequest(key=b"/registry/probe").SerializeToString()
            while True:  # a fresh etcd answers "no leader" until it elected itself
                status, body = await call_once(conns[0], RANGE, probe)
                if status == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not ready: status {status} {body}")
                await asyncio.sleep(0.2)
        if self.w == 0:
            await self.open_watch()
        return {"endpoints": urls}

    async def open_watch(self) -> None:
        created = asyncio.get_running_loop().create_future()
        req = pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=POD_PREFIX, range_end=POD_PREFIX[:-1] + b"0", prev_kv=True)).SerializeToString()
        parse = pb.WatchResponse.FromString

        def on_message(body: bytes) -> None:
            r = parse(body)
            self.watch_events += len(r.events)
            if r.created and not created.done():
                created.set_result(None)
            if r.canceled:
                self.watch_error = f"watch canceled: {r.cancel_reason}"

        def ended(status, reason) -> None:
            self.watch_error = f"watch ended: status {status} {reason}"
            if not created.done():
                created.set_exception(RuntimeError(self.watch_error))
        self.pool_for(POD_PREFIX).next().stream(WATCH, req, on_message, ended)
        await asyncio.wait_for(created, 10)

    async def prepare(self) -> dict:
        """This process's share of the lease keys and the initial pods; the first event lease."""
        sem = asyncio.Semaphore(256)
        errors: Counter = Counter()

        async def put_lease(i: int) -> None:
            key = self.hb_keys[i]
            msg = ld(0x0A, key) + ld(0x12, b"k8s\x00" + b"\x01" * (self.cfg["lease_value"] - 4))
            async with sem:
                status, body = await call_once(self.pool_for(key).next(), PUT, msg)
            if status:
                errors[f"lease key: {status} {body}"] += 1
            else:
                self.hb_rev[i] = pb.PutResponse.FromString(body).header.revision

        async def create_pod() -> None:
            key = pod_key(self.pod_next)
            self.pod_next += self.n
            async with sem:
                status, body = await call_once(self.pool_for(key).next(), TXN,
                                               create_compare(key) + put_op(key, self.pod_value))
            if status:
                errors[f"pod: {status} {body}"] += 1
                return
            r = pb.TxnResponse.FromString(body)
            if r.succeeded:
                self.pod_acked += 1
                self.pod_idle.append((key, r.header.revision))
        await asyncio.gather(*(put_lease(i) for i in range(len(self.hb_keys))))
        my_pods = len(range(self.w, self.cfg["pods"], self.n))
        await asyncio.gather(*(create_pod() for _ in range(my_pods)))
        await self.grant_lease()
        if errors or not self.lease_id:
            raise RuntimeError(f"prepare failed: {dict(errors)} lease {self.lease_id}")
        return {"lease_keys": len(self.hb_keys), "pods": len(self.pod_idle)}

    def grant_lease(self) -> asyncio.Future:
        """Asks for a new event lease; the one in use serves until it is granted."""
        self.granting = True
        done = asyncio.get_running_loop().create_future()
        msg = pb.LeaseGrantRequest(TTL=3600).SerializeToString()

        def granted(status, body) -> None:
            self.granting = False
            if status == 0:
                self.lease_id = pb.LeaseGrantResponse.FromString(body).ID
                self.lease_at = time.monotonic()
                self.grants += 1
            else:
                self.grant_errors += 1
            done.set_result(None)
        self.pool_for(EVENT_PREFIX).next().unary(LEASE_GRANT, msg, granted)
        return done

    # -- the streams ---------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return sum(f[0] for f in self.flight.values())

    def send(self, flight: list[int], pool: Pool, path: bytes, msg: bytes, t: float,
             tally: Tally | None, handle) -> None:
        """Sends a request of a stream (its in-flight count: flight[0]) scheduled at t;
        handle(status, body) -> conflict (the Else branch)."""
        if flight[0] >= self.cap:
            if tally is not None:
                tally.skipped += 1
            return
        flight[0] += 1
        monotonic = self.monotonic
        if tally is not None:
            tally.pending += 1
            tally.lag.append(monotonic() - t)

        def done(status, body) -> None:
            flight[0] -= 1
            try:
                conflict = handle(status, body)
            except Exception as e:  # noqa: BLE001 - a bad answer is an error of that request
                status, body, conflict = -1, f"bad answer: {e!r}", False
            if tally is not None:
                tally.pending -= 1
                if status == 0:
                    tally.lat.append(monotonic() - t)
                    tally.ok += 1
                    tally.conflicts += conflict
                else:
                    tally.errors += 1
                    tally.kinds[f"{status} {str(body)[:80]}"] += 1
        pool.next().unary(path, msg, done)

    def heartbeat(self, t: float, tally: Tally | None) -> None:
        i = self.hb_next
        self.hb_next = (i + 1) % len(self.hb_keys)
        msg = mod_compare(self.hb_head[i], self.hb_rev[i]) + self.hb_tail[i]

        def handle(status, body) -> bool:
            if status:
                return False
            r = self.TxnResponse.FromString(body)
            if r.succeeded:
                self.hb_rev[i] = r.header.revision
                return False
            kvs = r.responses[0].response_range.kvs
            self.hb_rev[i] = kvs[0].mod_revision if kvs else 0
            return True
        self.send(self.flight["leases"], self.pool_for(self.hb_keys[i]), TXN, msg, t, tally, handle)

    def pod_write(self, t: float, tally: Tally | None) -> None:
        op = self.pod_op
        self.pod_op = (op + 1) % 5  # create, update x3, delete
        if op == 0 or not self.pod_idle:
            key = pod_key(self.pod_next)
            self.pod_next += self.n
            msg = create_compare(key) + put_op(key, self.pod_value)

            def handle(status, body) -> bool:
                if status:
                    return False
                r = self.TxnResponse.FromString(body)
                if r.succeeded:
                    self.pod_acked += 1
                    self.pod_idle.append((key, r.header.revision))
                return not r.succeeded
        elif op < 4:
            key, rev = self.pod_idle.popleft()
            msg = mod_compare(mod_compare_head(key), rev) + put_op(key, self.pod_value) + range_failure(key)

            def handle(status, body) -> bool:
                if status:
                    return False  # its state is unknown: it leaves the churn
                r = self.TxnResponse.FromString(body)
                if r.succeeded:
                    self.pod_acked += 1
                    self.pod_idle.append((key, r.header.revision))
                    return False
                kvs = r.responses[0].response_range.kvs
                if kvs:
                    self.pod_idle.append((key, kvs[0].mod_revision))
                return True
        else:
            key, rev = self.pod_idle.popleft()
            msg = mod_compare(mod_compare_head(key), rev) + delete_op(key)

            def handle(status, body) -> bool:
                if status:
                    return False
                r = self.TxnResponse.FromString(body)
                self.pod_acked += r.succeeded
                return not r.succeeded
        self.send(self.flight["pods"], self.pool_for(key), TXN, msg, t, tally, handle)

    def event(self, t: float, tally: Tally | None) -> None:
        if not self.granting and time.monotonic() - self.lease_at >= self.cfg["lease_reuse"]:
            self.grant_lease()
        key = event_key(self.ev_next)
        self.ev_next += self.n
        msg = create_compare(key) + put_op(key, self.ev_value, self.lease_id)

        def handle(status, body) -> bool:
            return status == 0 and not self.TxnResponse.FromString(body).succeeded
        self.send(self.flight["events"], self.pool_for(key), TXN, msg, t, tally, handle)

    async def step(self, scale: float, t0: float, ramp: float, measure: float, drain: float) -> dict:
        """Issues every stream on its schedule: a linear ramp from 0 over [t0, t0 + ramp], then
        the full rate for `measure` seconds, of which the requests are counted."""
        issue = {"leases": self.heartbeat, "pods": self.pod_write, "events": self.event}
        rates = {s: BASE[s] * scale / self.n for s in STREAMS}
        tallies = {s: Tally() for s in STREAMS}
        # Each process's schedule is offset by its share of an interval, so together they are
        # evenly spaced.
        offset = {s: self.w / (rates[s] * self.n) for s in STREAMS}
        issued = dict.fromkeys(STREAMS, 0)
        start, end = t0 + ramp, t0 + ramp + measure

        def due_by(s: str, dt: float) -> int:  # requests of s scheduled in [t0, t0 + dt)
            r, x = rates[s], dt - offset[s]
            if x <= 0:
                return 0
            if x < ramp:
                return math.ceil(r * x * x / (2 * ramp))
            return math.ceil(r * ramp / 2 + r * (x - ramp))

        def when(s: str, k: int) -> float:  # the scheduled time of request k of s
            r = rates[s]
            half = r * ramp / 2
            x = math.sqrt(2 * ramp * k / r) if k < half else ramp + (k - half) / r
            return t0 + offset[s] + x

        monotonic = time.monotonic
        tick = self.cfg["tick"]
        await asyncio.sleep(max(0.0, t0 - monotonic()))
        while True:
            now = monotonic()
            horizon = min(now, end) - t0
            for s in STREAMS:
                due = due_by(s, horizon)
                k = issued[s]
                if k < due:
                    fire, tally = issue[s], tallies[s]
                    for j in range(k, due):
                        t = when(s, j)
                        fire(t, tally if t >= start else None)
                    issued[s] = due
            if now >= end:
                break
            await asyncio.sleep(tick)
        stop = end + drain
        while monotonic() < stop:  # noqa: ASYNC110 - polls the answers still due, with a deadline
            if not self.inflight:  # the next step starts with no backlog (if it can)
                break
            await asyncio.sleep(0.01)
        return {"streams": {s: t.dump() for s, t in tallies.items()}, "pod_acked": self.pod_acked,
                "watch_events": self.watch_events, "watch_error": self.watch_error,
                "grants": self.grants, "grant_errors": self.grant_errors, "inflight": self.inflight}

    async def serve(self, pipe) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd, *a = await loop.run_in_executor(None, pipe.recv)
            try:
                if cmd == "connect":
                    out = await self.connect()
                elif cmd == "prepare":
                    out = await self.prepare()
                elif cmd == "step":
                    out = await self.step(*a)
                elif cmd == "counts":
                    out = {"watch_events": self.watch_events, "watch_error": self.watch_error,
                           "pod_acked": self.pod_acked}
                else:
                    for pool in self.pools.values():
                        for c in pool.conns:
                            c.close()
                    pipe.send({})
                    return
            except Exception:  # noqa: BLE001 - reported to the coordinator, which fails the setup
                out = {"error": traceback.format_exc()}
            pipe.send(out)


def generator_main(pipe, cfg: dict) -> None:
    if cfg["nice"]:
        try:  # before any thread starts: threads inherit it
            os.setpriority(os.PRIO_PROCESS, 0, cfg["nice"])
        except OSError as e:
            log(f"generator {cfg['worker']}: cannot set its nice value to {cfg['nice']}: {e}")
    with contextlib.suppress(ImportError):
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(Generator(cfg).serve(pipe))
