"""What the tests of kvstore load's scenarios share: one kvstore and one etcd per module, a run
of the load command in this process, and the errors it counted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvstore.server.cli import main as kvstore_main
from procs import SERVER_KINDS, EtcdProcess, KvstoreProcess


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request, tmp_path_factory):
    """A real kvstore, then a real etcd: every test of the module runs against each."""
    kind = KvstoreProcess if request.param == "kvstore" else EtcdProcess
    with kind(tmp_path_factory.mktemp(request.param) / "data") as s:
        yield s


def run_load(*args: str, out: Path) -> dict:
    """kvstore load ARGS in this process (its workers are processes of their own); the run."""
    assert kvstore_main(["load", *args, "--quiet", "--out", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["ended"] == "completed"
    return run


def errors(run: dict) -> dict:
    """The errors of each op that had any, by code name."""
    return {label: op["errors"] for label, op in run["ops"].items() if op["errors"]}
