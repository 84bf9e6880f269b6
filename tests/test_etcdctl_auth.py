"""etcdctl's user, role and auth commands against kvstore and a real etcd 3.4, the same commands
to both, outputs and errors compared: permissions on single keys, prefixes and from-key ranges,
enable and disable, requests with ``--user name:password`` and ``--user name --password``.
Then auth state across a restart and a snapshot (kvstore alone)."""
from __future__ import annotations

import pytest

from etcdctl import Differential, Etcdctl
from procs import EtcdProcess, KvstoreProcess

pytestmark = pytest.mark.timeout(300)

COST = ["--bcrypt-cost", "4"]


@pytest.fixture(scope="module")
def ctl(tmp_path_factory):
    d = tmp_path_factory.mktemp("etcdctl-auth")
    with EtcdProcess(d / "etcd", extra_args=COST) as etcd, \
            KvstoreProcess(d / "kv", extra_args=COST) as kv:
        yield Differential(Etcdctl(kv.endpoint), Etcdctl(etcd.endpoint))


def test_users_and_roles(ctl):
    ctl.ok("user", "add", "root:rootpw")
    ctl.fail("user", "add", "root:again")
    ctl.ok("role", "add", "root")
    ctl.ok("user", "grant-role", "root", "root")
    ctl.ok("role", "add", "ops")
    ctl.fail("role", "add", "ops")
    ctl.ok("role", "grant-permission", "ops", "readwrite", "conf/db")
    ctl.ok("role", "grant-permission", "ops", "read", "--prefix", "svc/")
    ctl.ok("role", "grant-permission", "ops", "write", "--from-key", "tmp/")
    ctl.ok("role", "grant-permission", "ops", "readwrite", "logs/a", "logs/m")
    ctl.fail("role", "grant-permission", "nosuch", "read", "k")
    ctl.ok("role", "get", "ops")
    ctl.ok("role", "list")
    ctl.ok("role", "revoke-permission", "ops", "logs/a", "logs/m")
    ctl.fail("role", "revoke-permission", "ops", "logs/a", "logs/m")
    ctl.ok("role", "get", "ops")
    ctl.ok("user", "add", "dev:devpw")
    ctl.ok("user", "grant-role", "dev", "ops")
    ctl.fail("user", "grant-role", "dev", "nosuch")
    ctl.ok("user", "get", "dev")
    ctl.ok("user", "get", "dev", "--detail")
    ctl.ok("user", "list")
    ctl.ok("user", "add", "tmp:tmppw")
    ctl.ok("user", "passwd", "tmp", "--interactive=false", input="newpw\n")
    ctl.fail("user", "revoke-role", "tmp", "ops")
    ctl.ok("user", "delete", "tmp")
    ctl.fail("user", "delete", "tmp")
    ctl.fail("user", "get", "tmp")
    for key in ("conf/db", "svc/a", "svc/b", "tmp/x", "secret"):
        ctl.ok("put", key, "v")


def test_enable_and_requests_as_users(ctl):
    ctl.ok("auth", "enable")
    ctl.fail("get", "conf/db")  # no user: user name is empty
    ctl.fail("--user", "dev:wrong", "get", "conf/db")
    ctl.ok("--user", "dev:devpw", "get", "conf/db")
    ctl.ok("--user", "dev", "--password", "devpw", "get", "--prefix", "svc/")
    ctl.fail("--user", "dev:devpw", "get", "secret")
    ctl.fail("--user", "dev:devpw", "get", "--prefix", "s")
    ctl.fail("--user", "dev:devpw", "put", "svc/a", "w")  # read only
    ctl.ok("--user", "dev:devpw", "put", "tmp/y", "w")  # write from tmp/ on
    ctl.ok("--user", "dev:devpw", "put", "zzz", "w")
    ctl.fail("--user", "dev:devpw", "get", "tmp/y")  # write only
    ctl.fail("--user", "dev:devpw", "del", "--prefix", "svc/")
    ctl.fail("--user", "dev:devpw", "user", "list")
    ctl.fail("--user", "dev:devpw", "role", "add", "x")
    ctl.ok("--user", "root:rootpw", "user", "list")
    ctl.ok("--user", "root:rootpw", "get", "secret")
    ctl.ok("--user", "root:rootpw", "role", "revoke-permission", "ops", "conf/db")
    ctl.fail("--user", "dev:devpw", "get", "conf/db")
    ctl.fail("--user", "root:rootpw", "user", "delete", "root")
    ctl.fail("--user", "root:rootpw", "role", "delete", "root")
    ctl.fail("--user", "dev:devpw", "auth", "disable")
    ctl.ok("--user", "root:rootpw", "auth", "disable")
    ctl.ok("get", "secret")
    ctl.ok("auth", "enable")  # root is still there
    ctl.ok("--user", "root:rootpw", "get", "secret")


def test_auth_state_survives_a_restart_and_a_snapshot(tmp_path):
    with KvstoreProcess(tmp_path / "kv", extra_args=COST + ["--snapshot-count", "5"]) as kv:
        c = Etcdctl(kv.endpoint)
        c.ok("user", "add", "root:rootpw")
        c.ok("role", "add", "root")
        c.ok("user", "grant-role", "root", "root")
        c.ok("role", "add", "r")
        c.ok("role", "grant-permission", "r", "read", "--prefix", "a/")
        c.ok("user", "add", "u:upw")
        c.ok("user", "grant-role", "u", "r")
        c.ok("auth", "enable")
        c.ok("--user", "root:rootpw", "put", "a/1", "x")
        for i in range(8):  # past --snapshot-count: the auth state is in the snapshot
            c.ok("--user", "root:rootpw", "put", f"pad/{i}", "x")
        kv.stop()
        snapshots = list((tmp_path / "kv").rglob("snapshot-*.snap"))
        assert snapshots, sorted(p.name for p in (tmp_path / "kv").rglob("*"))
        kv.start()
        c.fail("get", "a/1")
        assert c.ok("--user", "u:upw", "get", "a/1").stdout == "a/1\nx\n"
        assert "permission denied" in c.fail("--user", "u:upw", "get", "pad/1").error
        assert c.fail("--user", "u:wrong", "get", "a/1").error.endswith(
            "authentication failed, invalid user ID or password")
        assert c.ok("--user", "root:rootpw", "role", "get", "r").stdout == (
            "Role r\nKV Read:\n\t[a/, a0) (prefix a/)\nKV Write:\n")
