import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import EtcdProcess, KvstoreProcess  # noqa: E402


@pytest.fixture
def kvstore_server(tmp_path):
    """A real kvstore server process on the embedded default (LMDB log)."""
    with KvstoreProcess(tmp_path / "kv") as server:
        yield server


@pytest.fixture
def etcd_server(tmp_path):
    """A real etcd (Debian's etcd-server) on loopback."""
    with EtcdProcess(tmp_path / "etcd") as server:
        yield server
