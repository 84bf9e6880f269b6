"""``kvstore check --data-dir D``: an offline verifier of a stopped member's data dir, after
etcd's and bbolt's ``check``.

It reads everything a start would, and more: the meta and its checksum, the snapshot (every
checksum, then decoded whole), every record of the log (its checksum, its place right after the
one before, every entry in it decoded), and whether the log and the snapshot agree as recovery
needs them to. Each finding is one line; the exit status is 1 when anything is wrong. It takes
the data dir's lock, so it refuses a dir a running member uses.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from ..log import DataDirCorrupt, DataDirInUse
from ..log.lmdb import LmdbLog
from ..log.storage import DirStorage
from ..store import entry, recovery, snapshot

BATCH = 1024
T = TypeVar("T")


class Report:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.problems = 0

    def ok(self, what: str) -> None:
        print(f"ok    {what}", file=self.out)

    def fail(self, what: str) -> None:
        self.problems += 1
        print(f"FAIL  {what}", file=self.out)

    def opened(self, make: Callable[[Path], T], data_dir: Path) -> T | None:
        """``make(data_dir)``, or None once its refusal to open is reported."""
        try:
            return make(data_dir)
        except DataDirCorrupt as e:
            self.fail(str(e))
            return None


def add_check_parser(sub) -> None:
    c = sub.add_parser("check", help="verify a stopped member's data dir (offline)")
    c.add_argument("--data-dir", required=True, help="the data dir to verify")


def main(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(f"kvstore check: {data_dir}: no such directory", file=sys.stderr)
        return 2
    report = Report()
    print(f"data dir {data_dir}")
    try:
        asyncio.run(check(data_dir, report))
    except DataDirInUse as e:
        print(f"kvstore check: {e}", file=sys.stderr)
        return 2
    if report.problems:
        print(f"damaged: {report.problems} problem{'s' if report.problems > 1 else ''}")
        return 1
    print("intact")
    return 0


async def check(data_dir: Path, report: Report) -> None:
    storage = report.opened(DirStorage, data_dir)
    if storage is None:
        return
    try:
        stop = recovery.last_stop(storage)
        ids = storage.get_meta("ids")  # cluster id, member id (identity.py)
        member = f"member {int.from_bytes(ids[8:16], 'big'):x}" if ids else "no member yet"
        report.ok(f"meta: {member}, snapshot recorded at log index {storage.recorded_snapshot()}, "
                  f"last clean stop at log index {stop.applied_index}, revision {stop.revision}")
        snapshot_index = check_snapshot(storage, report)
        if snapshot_index is not None:
            await check_log(data_dir, snapshot_index, stop, report)
    finally:
        await storage.close()


def check_snapshot(storage: DirStorage, report: Report) -> int | None:
    """The newest snapshot's index (0: none), or None if it is missing or damaged."""
    try:
        with storage.open_snapshot() as found:
            if found is None:
                report.ok("no snapshot (none recorded)")
                return 0
            index, data = found
            name = storage.snapshot_name(index)
            try:
                parsed = snapshot.parse(data)
            except snapshot.SnapshotCorrupt as e:
                report.fail(f"{name}: {e}")
                return None
            size = len(data)
    except DataDirCorrupt as e:
        report.fail(str(e))
        return None
    keys = sum(1 for _ in parsed.mvcc.index.all())
    report.ok(f"{name}: log index {index}, revision {parsed.mvcc.current_rev}, {keys} keys, "
              f"{len(parsed.leases)} leases, {size} bytes, checksums intact")
    return index


async def check_log(data_dir: Path, snapshot_index: int, stop: recovery.Stop,
                    report: Report) -> None:
    log_file = data_dir / "log" / "data.mdb"
    if not log_file.exists():
        if snapshot_index or stop.applied_index:  # what a start would say (it makes a new one)
            report.fail(str(recovery.no_records(str(log_file), max(snapshot_index,
                                                                   stop.applied_index))))
        else:
            report.ok(f"{log_file}: none yet")
        return
    log = report.opened(partial(LmdbLog, read_only=True), data_dir)
    if log is None:
        return
    try:
        first, last = log.held()
        scanned = scan(log, first, last, report)
        if scanned:
            report.ok(f"{log.name}: records {first} to {last}, each checksum intact, each entry "
                      f"decoded" if first <= last else f"{log.name}: no records")
        try:
            recovery.check_log_covers(log, snapshot_index, stop)
        except DataDirCorrupt as e:
            report.fail(str(e))
        else:
            if first <= last:
                report.ok(f"the log continues the snapshot: it holds records {first} to {last}, "
                          f"the snapshot covers through {snapshot_index}")
    finally:
        await log.close()


def scan(log: LmdbLog, first: int, last: int, report: Report) -> bool:
    """Reads every record: checksums, continuity, entries. False after a problem."""
    expected = first
    while expected <= last:
        try:
            batch = log.read(expected, BATCH)
        except DataDirCorrupt as e:
            report.fail(str(e))
            return False
        for index, record in batch:
            if index != expected:
                report.fail(f"{log.name}: record {index} follows {expected - 1}: records "
                            f"{expected} to {index - 1} are missing")
                return False
            try:
                for kind, body in entry.record_entries(record):
                    entry.decode_request(kind, body)
            except Exception as e:  # whatever a damaged entry makes the decoder raise
                report.fail(f"{log.name}: record {index} does not decode: {e!r}")
                return False
            expected += 1
        if not batch:
            report.fail(f"{log.name}: records {expected} to {last} are missing")
            return False
    return True
