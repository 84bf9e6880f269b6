"""No acknowledgement leaves before its write is durable: proved on a real server's system calls.

The LMDB log appends each record to a write-ahead file and syncs it (one write, one fdatasync),
and acknowledges the record only after that sync; LMDB takes the records later, in checkpoints.
``strace -f`` records every thread's writes, syncs and sends; ack_trace.py checks the order for
every write, under concurrent load and when idle.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from ack_trace import Call, Durability, parse
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess

TRACED = "openat,close,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,msync,sendto,sendmsg"


class TracedKvstore(KvstoreProcess):
    """kvstore serve under strace -f: every thread's writes, syncs and sends, timed."""

    def __init__(self, data_dir: Path, trace: Path):
        super().__init__(data_dir)
        self.trace = trace

    def command(self) -> list[str]:
        return ["strace", "-f", "-qq", "-ttt", "-T", "-yy", "-s", "65536", "-e", f"trace={TRACED}",
                "-e", "signal=none", "-o", str(self.trace), *super().command()]

    def stop(self) -> None:
        """SIGTERM to the server itself (strace would detach and leave it running), then strace
        ends with it."""
        if self.proc and self.proc.poll() is None:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            for pid in children:
                os.kill(int(pid), signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for pid in children:
                    os.kill(int(pid), signal.SIGKILL)
                self.proc.wait(10)


def marker(i: int) -> str:
    return f"ACKMARK{i:06d}Z"


async def marked_write(stub, i: int) -> None:
    """A Txn that puts the marker and reads it back: its response carries the marker."""
    key = b"ack/%d" % i
    resp = await stub.Txn(pb.TxnRequest(success=[
        pb.RequestOp(request_put=pb.PutRequest(key=key, value=marker(i).encode())),
        pb.RequestOp(request_range=pb.RangeRequest(key=key))]))
    assert resp.succeeded and resp.responses[1].response_range.kvs[0].value == marker(i).encode()


async def load(endpoint: str, concurrent: int, idle: int) -> list[str]:
    async with grpc.aio.insecure_channel(endpoint) as ch:
        stub = rpc.KVStub(ch)
        for i in range(concurrent // 16):  # batches: group commit, one meta page per record
            await asyncio.gather(*(marked_write(stub, i * 16 + j) for j in range(16)))
        await asyncio.gather(*(marked_write(stub, concurrent + j) for j in range(40)))
        for j in range(idle):  # alone: only the idle sync covers the meta page
            await marked_write(stub, concurrent + 40 + j)
            await asyncio.sleep(0.02)
    return [marker(i) for i in range(concurrent + 40 + idle)]


def test_every_acknowledgement_follows_the_sync_of_its_record(tmp_path):
    trace = tmp_path / "server.strace"
    with TracedKvstore(tmp_path / "kv", trace) as server:
        markers = asyncio.run(load(server.endpoint, concurrent=160, idle=10))
    with open(trace, errors="replace") as f:
        durability = Durability.of(parse(f))
    assert durability.wal_writes and durability.wal_syncs
    assert durability.violations(markers) == []
    # every record was made durable in a write-ahead file first, and later went to LMDB's file
    for m in markers:
        first = min((c for c in (*durability.wal_writes, *durability.data_writes) if m in c.text),
                    key=lambda c: c.start)
        assert first in durability.wal_writes, m
    assert any(markers[0] in c.text for c in durability.data_writes)  # a checkpoint took it


# The checker itself, on made-up traces: it must catch an early acknowledgement.

DATA = "7</d/log/data.mdb>"
SOCK = "9<TCP:[127.0.0.1:2379->127.0.0.1:5000]>"


def _trace(*calls: str) -> list[str]:
    return [f"100 {1000 + i * 0.001:.6f} {c} <0.000100>\n" for i, c in enumerate(calls)]


def _check(*calls: str) -> list[str]:
    return Durability.of(parse(_trace(*calls))).violations(["M1"])


WRITE = f'pwrite64({DATA}, "..M1..", 4096, 65536) = 4096'
META = f'pwrite64({DATA}, "meta", 120, 32) = 120'
SYNC = f"fdatasync({DATA}) = 0"
SEND = f'sendto({SOCK}, "..M1..", 40, 0, NULL, 0) = 40'
WAL = "6</d/log/wal.1>"
WAL_WRITE = f'pwrite64({WAL}, "..M1..", 64, 128) = 64'
WAL_SYNC = f"fdatasync({WAL}) = 0"
OTHER_WAL_SYNC = "fdatasync(5</d/log/wal.0>) = 0"


@pytest.mark.inprocess
def test_checker_accepts_an_ack_after_the_sync_of_its_write_ahead_record():
    assert _check(WAL_WRITE, WAL_SYNC, SEND) == []
    assert _check(WAL_WRITE, WAL_SYNC, SEND, WRITE, SYNC, META, SYNC) == []  # checkpoint later


@pytest.mark.inprocess
def test_checker_refuses_an_ack_before_its_write_ahead_record_is_synced():
    assert "was synced never" in _check(WAL_WRITE, SEND)[0]
    assert "was synced at" in _check(WAL_WRITE, SEND, WAL_SYNC)[0]
    assert "was synced never" in _check(WAL_WRITE, OTHER_WAL_SYNC, SEND)[0]  # the other file
    assert "was synced never" in _check(WAL_SYNC, WAL_WRITE, SEND)[0]  # a sync before it


@pytest.mark.inprocess
def test_checker_accepts_an_ack_after_the_sync_that_covers_the_meta_page():
    assert _check(WRITE, SYNC, META, SYNC, SEND) == []


@pytest.mark.inprocess
def test_checker_refuses_an_ack_before_the_meta_page_is_synced():
    # synced pages, meta page written: LMDB's commit returned, but a crash would undo it
    assert "was synced never" in _check(WRITE, SYNC, META, SEND)[0]
    assert "was synced at" in _check(WRITE, SYNC, META, SEND, SYNC)[0]


@pytest.mark.inprocess
def test_checker_refuses_an_ack_before_the_record_is_written_or_synced():
    assert "was synced at" in _check(SEND, WRITE, SYNC, META, SYNC)[0]  # written after
    assert "never written" in _check(SEND)[0]
    assert "no meta page" in _check(WRITE, SEND)[0]
    assert "never acknowledged" in _check(WRITE, SYNC, META, SYNC)[0]


@pytest.mark.inprocess
def test_checker_counts_a_write_on_an_o_dsync_descriptor_as_its_own_sync():
    opened = 'openat(AT_FDCWD, "/d/log/data.mdb", O_RDWR|O_DSYNC|O_CLOEXEC) = 8</d/log/data.mdb>'
    meta_dsync = 'pwrite64(8</d/log/data.mdb>, "meta", 120, 32) = 120'
    assert _check(opened, WRITE, SYNC, meta_dsync, SEND) == []
    assert _check(WRITE, SYNC, meta_dsync, SEND) != []  # not opened O_DSYNC: no sync


@pytest.mark.inprocess
def test_a_meta_write_split_by_another_thread_is_still_a_meta_write():
    """strace splits a call another thread interrupts: the offset is on the first half."""
    lines = _trace(WRITE, SYNC)
    lines += [f'100 1000.010000 pwrite64({DATA}, "meta", 120, 32 <unfinished ...>\n',
              f'200 1000.010100 sendto({SOCK}, "x", 1, 0, NULL, 0) = 1 <0.000010>\n',
              "100 1000.010200 <... pwrite64 resumed>) = 120 <0.000300>\n",
              f"100 1000.011000 fdatasync({DATA}) = 0 <0.000500>\n",
              f'200 1000.012000 sendto({SOCK}, "..M1..", 40, 0, NULL, 0) = 40 <0.000010>\n']
    durability = Durability.of(parse(lines))
    assert [c.offset for c in durability.meta_writes] == [32]
    assert durability.violations(["M1"]) == []


@pytest.mark.inprocess
def test_parse_joins_unfinished_and_resumed_calls():
    lines = ["100 1000.000000 fdatasync(7</d/log/data.mdb> <unfinished ...>\n",
             '200 1000.000500 sendto(9<TCP:[x]>, "M1", 2, 0, NULL, 0) = 2 <0.000010>\n',
             "100 1000.002000 <... fdatasync resumed>) = 0 <0.002000>\n"]
    calls = parse(lines)
    sync = next(c for c in calls if c.name == "fdatasync")
    assert isinstance(sync, Call) and sync.start == 1000.0 and sync.end == pytest.approx(1000.002)
    assert [c.name for c in calls] == ["fdatasync", "sendto"]
