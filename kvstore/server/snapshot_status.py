"""``kvstore snapshot status FILE``: what a snapshot file holds, after ``etcdctl snapshot
status`` (the same columns and ``--write-out`` formats), once every checksum in it holds."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..store import snapshot_file


def add_snapshot_parser(sub) -> None:
    snap = sub.add_parser("snapshot", help="inspect snapshot files")
    ops = snap.add_subparsers(dest="snapshot_command", required=True)
    status = ops.add_parser("status", help="the hash, revision, keys and size of a snapshot file")
    status.add_argument("file")
    status.add_argument("-w", "--write-out", choices=("simple", "table", "json"), default="simple")


def human_bytes(n: int) -> str:
    """go-humanize's Bytes, as etcdctl prints sizes: SI units, 2.1 MB, 83 MB."""
    if n < 10:
        return f"{n} B"
    exp = min(int(math.floor(math.log(n, 1000))), 6)
    value = math.floor(n / 1000 ** exp * 10 + 0.5) / 10
    unit = ("B", "kB", "MB", "GB", "TB", "PB", "EB")[exp]
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def _go_center(text: str, width: int) -> str:
    """tablewriter's Pad: an odd gap puts its extra space on the right (Python's center
    may put it on the left)."""
    gap = width - len(text)
    left = gap // 2
    return " " * left + text + " " * (gap - left)


def table(header: list[str], row: list[str]) -> str:
    """One row as etcdctl's tablewriter draws its DBStatus: headers centred, every cell
    aligned right (ALIGN_RIGHT), one space of padding each side."""
    widths = [max(len(h), len(c)) for h, c in zip(header, row)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    heads = "|" + "|".join(f" {_go_center(h, w)} " for h, w in zip(header, widths)) + "|"
    cells = "|" + "|".join(f" {c.rjust(w)} " for c, w in zip(row, widths)) + "|"
    return "\n".join([line, heads, line, cells, line])


def main(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        st = snapshot_file.status(path.read_bytes())
    except (OSError, snapshot_file.SnapshotCorrupt) as e:
        print(f"kvstore snapshot status: {path}: {getattr(e, 'strerror', None) or e}", file=sys.stderr)
        return 1
    row = [f"{st.hash:x}", str(st.revision), str(st.total_keys), human_bytes(st.total_size)]
    if args.write_out == "json":
        print(json.dumps({"hash": st.hash, "revision": st.revision, "totalKey": st.total_keys,
                          "totalSize": st.total_size}, separators=(",", ":")))
    elif args.write_out == "table":
        print(table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], row))
    else:
        print(", ".join(row))
    return 0
