"""The data dir's refusals as an operator meets them: ``kvstore serve`` on a damaged dir exits
non-zero with one line naming the file and what is wrong (no traceback, no SIGBUS, nothing
served), ``kvstore check`` reports it, ``kvstore snapshot status`` reads a snapshot file."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib

import pytest

import datadir_damage as damage
from kvstore.server import snapshot_status
from procs import REPO, free_port


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return damage.build(tmp_path_factory.mktemp("pristine") / "d")


def kvstore(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvstore", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def serve(d) -> subprocess.CompletedProcess:
    url = f"http://127.0.0.1:{free_port()}"
    return kvstore("serve", "--data-dir", str(d), "--listen-client-urls", url)


@pytest.mark.parametrize("name", list(damage.DAMAGES))
def test_serve_refuses_a_damaged_data_dir_in_one_line(name, pristine, tmp_path):
    hurt, says = damage.DAMAGES[name]
    d = damage.copy(pristine, tmp_path / "d")
    hurt(d)
    run = serve(d)  # a server that started would not come back within the timeout
    assert run.returncode == 1, run  # not 135 (SIGBUS), not a traceback's 1 either:
    assert "Traceback" not in run.stderr and "ready to serve" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"kvstore: {d}") and re.search(says, lines[0]), lines[0]

    checked = kvstore("check", "--data-dir", str(d))
    assert checked.returncode == 1, checked
    fails = [line for line in checked.stdout.splitlines() if line.startswith("FAIL")]
    assert fails == [f"FAIL  {lines[0].removeprefix('kvstore: ')}"]
    assert checked.stdout.splitlines()[-1] == "damaged: 1 problem"


def test_check_passes_an_intact_data_dir_and_refuses_a_missing_one(pristine, tmp_path):
    checked = kvstore("check", "--data-dir", str(pristine))
    assert checked.returncode == 0, checked
    out = checked.stdout.splitlines()
    assert out[0] == f"data dir {pristine}" and out[-1] == "intact"
    assert all(line.startswith("ok    ") for line in out[1:-1]) and len(out) == 6
    missing = kvstore("check", "--data-dir", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr


def test_snapshot_status_as_etcdctl_prints_it(pristine, tmp_path):
    snap = damage.snapshot_file(pristine)
    data = snap.read_bytes()
    simple = kvstore("snapshot", "status", str(snap))
    assert simple.returncode == 0, simple
    hash_, revision, keys, size = simple.stdout.strip().split(", ")
    assert int(hash_, 16) == zlib.crc32(data)
    assert 0 < int(keys) <= int(revision) <= damage.PUTS + 1
    assert re.fullmatch(r"\d+(\.\d)? kB", size)
    as_json = json.loads(kvstore("snapshot", "status", str(snap), "-w", "json").stdout)
    assert as_json == {"hash": zlib.crc32(data), "revision": int(revision),
                       "totalKey": int(keys), "totalSize": len(data)}
    table = kvstore("snapshot", "status", str(snap), "-w", "table").stdout.splitlines()
    assert [h.strip() for h in table[1].split("|")[1:-1]] == ["HASH", "REVISION", "TOTAL KEYS",
                                                               "TOTAL SIZE"]
    widths = [len(h) for h in table[1].split("|")[1:-1]]
    assert table[3].split("|")[1:-1] == [f" {c.rjust(w - 2)} " for c, w in
                                         zip([hash_, revision, keys, size], widths)]

    damaged = tmp_path / "damaged.snap"
    damaged.write_bytes(data[:-1])
    refused = kvstore("snapshot", "status", str(damaged))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"kvstore snapshot status: {damaged}: no snapshot trailer "
                                      f"at the end (truncated, or not a kvstore snapshot of this "
                                      f"version)")


def test_snapshot_status_table_is_drawn_as_etcdctls():
    # etcdctl 3.4's `snapshot status -w table` of a snapshot whose hash has seven hex digits:
    # an odd gap puts the header's extra space on the right, and every cell aligns right.
    etcdctl_printed = """\
+---------+----------+------------+------------+
|  HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |
+---------+----------+------------+------------+
| ea4e0cf |       34 |         37 |      25 kB |
+---------+----------+------------+------------+"""
    assert snapshot_status.table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
                                 ["ea4e0cf", "34", "37", "25 kB"]) == etcdctl_printed
