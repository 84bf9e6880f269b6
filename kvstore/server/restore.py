"""``kvstore restore FILE --data-dir D``: an etcd snapshot (``etcdctl snapshot save``'s file, or
an etcd db) into a new kvstore data dir (store/etcd_restore.py does it). A damaged file or a
data dir in use is refused with one line, exit code 1."""
from __future__ import annotations

import argparse
import sys

from ..log import DataDirInUse
from ..store.etcd_restore import RestoreRefused, restore


def add_restore_parser(sub) -> None:
    p = sub.add_parser("restore", help="restore an etcd snapshot into a new kvstore data dir")
    p.add_argument("file", help="an etcd snapshot (etcdctl snapshot save) or etcd db file")
    p.add_argument("--data-dir", required=True, help="the new data dir (must not exist, or be empty)")


def main(args: argparse.Namespace) -> int:
    try:
        r = restore(args.file, args.data_dir)
    except (RestoreRefused, DataDirInUse, OSError) as e:
        print(f"kvstore restore: {args.file}: {e}", file=sys.stderr)
        return 1
    hash_note = "hash checked" if r.hash_checked else "no hash to check"
    print(f"restored {args.file} into {args.data_dir}: revision {r.revision}, {r.keys} keys "
          f"({r.revisions} revisions), {r.leases} leases, compacted at {r.compact_revision} "
          f"({hash_note})")
    return 0
