"""``kvstore migrate`` from a real etcd (Debian's etcd-server), while writes go on.

The source gets what a revision stream can hold: puts, Txns that touch several keys at one
revision, deletes, ranges deleted at once, leases granted, revoked and expiring, and
compactions. ``kvstore migrate`` copies it and follows it (stopped and resumed once, through a
lost connection, through a compaction that overtakes it), then catches up with the writes
stopped: the cut-over. A kvstore served on the copy must then hold every key as etcd does at
the same revision (value, create and mod revisions, version, lease), and a client watching
from a revision on etcd must see the same events, once each, watching on from it on kvstore.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kvstore.api import kv_pb2, rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.migrate import MARKER
from procs import REPO, EtcdProcess, KvstoreProcess, channel

pytestmark = [pytest.mark.skipif(not EtcdProcess.available(), reason="needs Debian's etcd-server"),
              pytest.mark.transport_free]  # the source is etcd; the copy is served once or twice


def migrate(*args, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kvstore", "migrate", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          stdin=subprocess.DEVNULL)  # no terminal: nothing prompts


def start_migrate(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kvstore", "migrate", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out, err


class Writer:
    """Kubernetes-like writes on the source, on a thread, until stopped: creates, updates,
    deletes, multi-key Txns, keys on leases (some revoked, some left to expire)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(30)
        assert not self.errors, self.errors

    def _run(self) -> None:
        try:
            with channel(self.endpoint) as ch:
                kv, lease = rpc.KVStub(ch), rpc.LeaseStub(ch)
                i = 0
                while not self.done.is_set():
                    write_round(kv, lease, i)
                    i += 1
                    self.writes += 1
        except BaseException as e:  # the test reads it after join
            self.errors.append(e)


def write_round(kv, lease, i: int) -> None:
    key = f"/registry/pods/ns{i % 7}/p{i % 50}".encode()
    kv.Put(pb.PutRequest(key=key, value=b"spec-%d" % i), timeout=10)
    if i % 5 == 0:  # one revision, three keys
        kv.Txn(pb.TxnRequest(
            compare=[pb.Compare(key=key, target=pb.Compare.VERSION, result=pb.Compare.GREATER,
                                version=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/registry/events/e%d" % i,
                                                            value=b"ev")),
                     pb.RequestOp(request_put=pb.PutRequest(key=key, value=b"status-%d" % i)),
                     pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                         key=b"/registry/events/e%d" % (i - 5)))]), timeout=10)
    if i % 11 == 0:
        kv.DeleteRange(pb.DeleteRangeRequest(key=key), timeout=10)
    if i % 13 == 0:  # a lease with keys: revoked later, or left to expire (TTL 2 s)
        ttl = 2 if i % 26 == 0 else 60
        lease_id = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=10).ID
        for j in range(3):
            kv.Put(pb.PutRequest(key=b"/registry/leases/l%d-%d" % (i, j), value=b"holder",
                                 lease=lease_id), timeout=10)
        if i % 39 == 0:
            lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease_id), timeout=10)
    if i % 17 == 0:  # a lease that never gets a key, revoked: no event says so
        lease_id = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=10).ID
        lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=lease_id), timeout=10)


def seed(endpoint: str, rounds: int = 200) -> int:
    """Writes, with a compaction halfway; returns the revision."""
    with channel(endpoint) as ch:
        kv, lease = rpc.KVStub(ch), rpc.LeaseStub(ch)
        for i in range(rounds):
            write_round(kv, lease, i)
            if i == rounds // 2:
                rev = kv.Range(pb.RangeRequest(key=b"/"), timeout=10).header.revision
                kv.Compact(pb.CompactionRequest(revision=rev - 20), timeout=10)
        return kv.Range(pb.RangeRequest(key=b"/"), timeout=10).header.revision


def all_keys(endpoint: str, revision: int = 0) -> tuple[int, list]:
    with channel(endpoint) as ch:
        resp = rpc.KVStub(ch).Range(pb.RangeRequest(key=b"\0", range_end=b"\0", revision=revision),
                                    timeout=10)
    return resp.header.revision, [(kv.key, kv.value, kv.create_revision, kv.mod_revision,
                                   kv.version, kv.lease) for kv in resp.kvs]


def leases(endpoint: str) -> set[int]:
    with channel(endpoint) as ch:
        return {s.ID for s in rpc.LeaseStub(ch).LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases}


def hash_kv(endpoint: str, revision: int) -> tuple[int, int]:
    with channel(endpoint) as ch:
        h = rpc.MaintenanceStub(ch).HashKV(pb.HashKVRequest(revision=revision), timeout=30)
    return h.hash, h.compact_revision


def test_migrate_while_writes_go_on_then_cut_over(tmp_path):
    data_dir = tmp_path / "kv"
    with EtcdProcess(tmp_path / "etcd") as etcd:
        seed(etcd.endpoint)
        with Writer(etcd.endpoint) as writer:
            follower = start_migrate("--from", etcd.url, "--data-dir", data_dir)
            time.sleep(4)
            out, _ = stop(follower)  # stopped while the writes go on ...
            assert "copied" in out and "stopped at revision" in out, out
            assert (data_dir / MARKER).exists()
            time.sleep(1)
            follower = start_migrate("--from", etcd.url, "--data-dir", data_dir)  # ... resumed
            time.sleep(3)
            out, _ = stop(follower)
            assert "copied" not in out and "following" in out, out
        assert writer.writes > 50
        time.sleep(4)  # the last TTL-2 lease expires on the source: deletes, no write of ours
        # The cut-over: writes to the source stopped, the copy catches up.
        done = migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up")
        assert done.returncode == 0, done.stderr
        source_rev, source_keys = all_keys(etcd.endpoint)
        assert f"caught up at revision {source_rev}" in done.stdout, done.stdout
        source_hash = hash_kv(etcd.endpoint, source_rev)
        source_leases = leases(etcd.endpoint)
        verified = migrate("verify", "--from", etcd.url, "--data-dir", data_dir)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "0 differences" in verified.stdout

        with KvstoreProcess(data_dir) as kv:
            rev, keys = all_keys(kv.endpoint)
            assert rev == source_rev
            assert keys == source_keys  # value, create/mod revisions, version, lease
            assert len(keys) > 50 and any(k[5] for k in keys)  # some on leases
            assert hash_kv(kv.endpoint, rev) == source_hash  # the same history, compacted alike
            assert leases(kv.endpoint) == source_leases
            older = rev - 30  # not only the newest state: an older revision too
            assert all_keys(kv.endpoint, older) == all_keys(etcd.endpoint, older)
            served = migrate("verify", "--from", etcd.url, "--to", kv.url)
            assert served.returncode == 0, served.stdout


def watch_events(endpoint: str, start: int, until: int) -> list[tuple]:
    """Every event from ``start`` through ``until``: (revision, type, key, value, version)."""
    got: list[tuple] = []
    with channel(endpoint) as ch:
        requests = iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(
            key=b"\0", range_end=b"\0", start_revision=start))])
        stream = rpc.WatchStub(ch).Watch(requests, timeout=20)
        try:
            for resp in stream:
                for ev in resp.events:
                    got.append((ev.kv.mod_revision, ev.type, ev.kv.key, ev.kv.value, ev.kv.version))
                if got and got[-1][0] >= until:
                    break
        finally:
            stream.cancel()
    return got


def test_a_watch_goes_on_across_the_switch(tmp_path):
    data_dir = tmp_path / "kv"
    with EtcdProcess(tmp_path / "etcd") as etcd:
        start = seed(etcd.endpoint, rounds=60) - 25  # a client's watch began here on etcd
        copied = migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up")
        assert copied.returncode == 0, copied.stderr
        with channel(etcd.endpoint) as ch:  # more after the copy: the mirror's, not the copy's
            kv, lease = rpc.KVStub(ch), rpc.LeaseStub(ch)
            for i in range(60, 90):
                write_round(kv, lease, i)
        cut = migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up")
        assert cut.returncode == 0, cut.stderr
        last, _ = all_keys(etcd.endpoint)
        on_etcd = watch_events(etcd.endpoint, start, last)
        # What the client had when etcd went away: whole revisions, as watch responses hold.
        resumed_from = on_etcd[len(on_etcd) // 2][0]
        seen = [e for e in on_etcd if e[0] < resumed_from]
        with KvstoreProcess(data_dir) as kv:
            on_kvstore = watch_events(kv.endpoint, start, last)
            assert on_kvstore == on_etcd  # the same revisions, events and versions
            with channel(kv.endpoint) as ch:
                rpc.KVStub(ch).Put(pb.PutRequest(key=b"/after", value=b"switch"))
            later = watch_events(kv.endpoint, resumed_from, last + 1)
        assert seen + later == on_etcd + [(last + 1, kv_pb2.Event.PUT, b"/after", b"switch", 1)]
        assert len({(e[0], e[2]) for e in seen + later}) == len(seen + later)  # each once


def test_a_compaction_that_overtakes_the_mirror_means_a_new_copy(tmp_path):
    data_dir = tmp_path / "kv"
    with EtcdProcess(tmp_path / "etcd") as etcd:
        seed(etcd.endpoint, rounds=40)
        first = migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up")
        assert first.returncode == 0, first.stderr
        rev = seed(etcd.endpoint, rounds=40)
        with channel(etcd.endpoint) as ch:
            rpc.KVStub(ch).Compact(pb.CompactionRequest(revision=rev), timeout=10)
        again = migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up")
        assert again.returncode == 0, again.stderr
        assert "compacted its history through revision" in again.stderr
        assert "copying again" in again.stderr and "copied" in again.stdout
        verified = migrate("verify", "--from", etcd.url, "--data-dir", data_dir)
        assert verified.returncode == 0 and "0 differences" in verified.stdout, verified.stdout


def test_a_lost_connection_resumes_from_the_last_revision(tmp_path):
    data_dir = tmp_path / "kv"
    with EtcdProcess(tmp_path / "etcd") as etcd:
        seed(etcd.endpoint, rounds=30)
        follower = start_migrate("--from", etcd.url, "--data-dir", data_dir)
        try:
            time.sleep(3)
            etcd.stop()  # the source goes away under the mirror ...
            time.sleep(1.5)
            etcd.start()  # ... and comes back, with writes the mirror has not seen
            seed(etcd.endpoint, rounds=30)
            time.sleep(3)
        finally:
            _, err = stop(follower)
        assert "lost the source" in err or "cannot reach the source" in err, err
        cut = migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up")
        assert cut.returncode == 0, cut.stderr
        verified = migrate("verify", "--from", etcd.url, "--data-dir", data_dir)
        assert verified.returncode == 0, verified.stdout


def test_refusals(tmp_path):
    with EtcdProcess(tmp_path / "etcd") as etcd:
        used = tmp_path / "used"
        used.mkdir()
        (used / "something").write_text("x")
        r = migrate("--from", etcd.url, "--data-dir", used)
        assert r.returncode == 1 and r.stderr.strip() == f"kvstore migrate: data dir {used} is not empty"
        copied = tmp_path / "kv"
        assert migrate("--from", etcd.url, "--data-dir", copied, "--catch-up").returncode == 0
        other = "http://127.0.0.1:1"
        r = migrate("--from", other, "--data-dir", copied)
        assert r.returncode == 1
        assert f"is a copy of {etcd.url}, not of {other}" in r.stderr
        r = migrate("verify", "--from", etcd.url)
        assert r.returncode == 2


def test_verify_finds_a_difference(tmp_path):
    with EtcdProcess(tmp_path / "etcd") as etcd:
        seed(etcd.endpoint, rounds=20)
        data_dir = tmp_path / "kv"
        assert migrate("--from", etcd.url, "--data-dir", data_dir, "--catch-up").returncode == 0
        with KvstoreProcess(data_dir) as kv:
            with channel(kv.endpoint) as ch:  # one key changed, at one revision past etcd's
                rpc.KVStub(ch).Put(pb.PutRequest(key=b"/registry/pods/ns1/p1", value=b"other"))
            with channel(etcd.endpoint) as ch:  # etcd moves on too, elsewhere
                rpc.KVStub(ch).Put(pb.PutRequest(key=b"/elsewhere", value=b"x"))
            r = migrate("verify", "--from", etcd.url, "--to", kv.url)
        assert r.returncode == 1, r.stdout
        assert "3 differences" in r.stdout, r.stdout  # the two keys, and so HashKV
        assert "b'/registry/pods/ns1/p1': value differs" in r.stdout
        assert "b'/elsewhere': only in the source" in r.stdout
        assert "HashKV differs at revision" in r.stdout


def test_the_way_back_etcdctl_make_mirror_from_kvstore(tmp_path):
    """etcd's own mirror tool with kvstore as its source: what it copies (a paged read at one
    revision), then what it follows (a watch from the next), lands in a real etcd."""
    with KvstoreProcess(tmp_path / "kv") as kv, EtcdProcess(tmp_path / "etcd") as etcd:
        seed(kv.endpoint, rounds=120)  # more than one page of etcdctl's sync
        env = {"ETCDCTL_API": "3", "PATH": os.environ["PATH"]}
        mirror = subprocess.Popen(["etcdctl", "--endpoints", kv.endpoint, "make-mirror", etcd.url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            with channel(kv.endpoint) as ch:  # after the copy began: these come by the watch
                kvs = rpc.KVStub(ch)
                for i in range(20):
                    kvs.Put(pb.PutRequest(key=b"/later/%d" % i, value=b"v%d" % i), timeout=10)
                kvs.DeleteRange(pb.DeleteRangeRequest(key=b"/registry/pods/ns1/p1"), timeout=10)

            def values(endpoint):
                return {k[0]: k[1] for k in all_keys(endpoint)[1]}
            deadline = time.monotonic() + 30
            while values(etcd.endpoint) != values(kv.endpoint) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert values(etcd.endpoint) == values(kv.endpoint)
            assert b"/later/19" in values(etcd.endpoint)
        finally:
            mirror.terminate()
            mirror.communicate(timeout=10)


def test_a_source_on_tls_that_takes_root_by_its_certificate(tmp_path):
    """A kubeadm-like etcd: https://, client certificates required (--client-cert-auth), and
    here auth enabled too, so that a certificate's common name is its user. The copy and the
    mirror reach it with etcdctl's --cacert, --cert and --key; root's certificate may take the
    snapshot, a user's may not, and no certificate is no connection."""
    from test_auth_tls import cert, make_pki, tls_args

    pki = make_pki(tmp_path)
    ca = str(pki["ca"]) + ".pem"
    etcd = EtcdProcess(tmp_path / "etcd", extra_args=tls_args(pki))
    etcd.root_ca, etcd.client_cert = Path(ca), cert(pki, "root")
    as_root = ["--cacert", ca, "--cert", *map(str, cert(pki, "root"))]
    as_root.insert(4, "--key")
    with etcd:
        with channel(etcd.endpoint, etcd.root_ca, etcd.client_cert) as ch:
            kv, auth = rpc.KVStub(ch), rpc.AuthStub(ch)
            for i in range(40):
                kv.Put(pb.PutRequest(key=b"/registry/pods/ns/p%d" % i, value=b"v%d" % i), timeout=10)
            for user in ("root", "alice"):
                auth.UserAdd(pb.AuthUserAddRequest(name=user, password="pw"), timeout=10)
            auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
            auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)

        refused = migrate("--from", etcd.url, "--cacert", ca, "--data-dir", tmp_path / "none")
        assert refused.returncode == 1  # the server ends the handshake: no certificate
        assert refused.stderr.startswith(
            "kvstore migrate: UNAVAILABLE (14): the connection was lost: "), refused.stderr
        alice = migrate("--from", etcd.url, "--cacert", ca, "--cert", cert(pki, "alice")[0],
                        "--key", cert(pki, "alice")[1], "--data-dir", tmp_path / "alice")
        assert alice.returncode == 1, alice.stdout
        # etcd 3.4's Maintenance.Snapshot is root's alone; its error, as etcd words it
        assert alice.stderr.strip() == "kvstore migrate: UNKNOWN (2): auth: permission denied"
        assert not (tmp_path / "none" / MARKER).exists()
        assert not (tmp_path / "alice" / MARKER).exists()

        data_dir = tmp_path / "kv"
        follower = start_migrate("--from", etcd.url, *as_root, "--data-dir", data_dir)
        time.sleep(2)  # copied, and following
        with channel(etcd.endpoint, etcd.root_ca, etcd.client_cert) as ch:
            for i in range(20):  # over the watch, after the copy
                rpc.KVStub(ch).Put(pb.PutRequest(key=b"/registry/pods/ns/q%d" % i, value=b"w"),
                                   timeout=10)
        time.sleep(1)
        out, _ = stop(follower)
        assert "copied" in out and "following" in out, out
        done = migrate("--from", etcd.url, *as_root, "--data-dir", data_dir, "--catch-up")
        assert done.returncode == 0, done.stderr
        verified = migrate("verify", "--from", etcd.url, *as_root, "--data-dir", data_dir)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "compared 60 keys" in verified.stdout and "0 differences" in verified.stdout
        # served as etcd was (TLS, client certificates, auth as copied), verified through it
        kv = KvstoreProcess(data_dir, extra_args=["--transport", "h2", *tls_args(pki)])
        kv.root_ca, kv.client_cert = etcd.root_ca, etcd.client_cert
        with kv:
            root_cert, root_key = cert(pki, "root")
            served = migrate("verify", "--from", etcd.url, *as_root, "--to", kv.url,
                             "--dest-cacert", ca, "--dest-cert", root_cert, "--dest-key", root_key)
        assert served.returncode == 0, served.stdout + served.stderr
        assert "compared 60 keys" in served.stdout and "0 differences" in served.stdout


def test_a_source_with_auth_on_through_a_user_and_password(tmp_path):
    """etcdctl's --user: root's password takes the snapshot and follows the source (the watch
    and the calls beside it carry the token); a wrong password gets etcd's refusal, and a user
    without a password, with no terminal to ask on, is told how to give one."""
    with EtcdProcess(tmp_path / "etcd") as etcd:
        with channel(etcd.endpoint) as ch:
            kv, auth = rpc.KVStub(ch), rpc.AuthStub(ch)
            for i in range(30):
                kv.Put(pb.PutRequest(key=b"/registry/pods/ns/p%d" % i, value=b"v"), timeout=10)
            auth.UserAdd(pb.AuthUserAddRequest(name="root", password="secret"), timeout=10)
            auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
            auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)

        wrong = migrate("--from", etcd.url, "--user", "root:nope", "--data-dir", tmp_path / "w")
        assert (wrong.returncode, wrong.stderr.strip()) == (1, "kvstore migrate: INVALID_ARGUMENT "
                                                           "(3): etcdserver: authentication "
                                                           "failed, invalid user ID or password")
        unasked = migrate("--from", etcd.url, "--user", "root", "--data-dir", tmp_path / "w")
        assert unasked.returncode == 2
        assert unasked.stderr.strip() == ("kvstore migrate: --user root has no password: give "
                                          "--user root:PASSWORD or --password")
        assert not (tmp_path / "w" / MARKER).exists()

        data_dir = tmp_path / "kv"
        follower = start_migrate("--from", etcd.url, "--user", "root", "--password", "secret",
                                 "--data-dir", data_dir)
        time.sleep(2)  # copied, and following
        with channel(etcd.endpoint) as ch:
            token = rpc.AuthStub(ch).Authenticate(
                pb.AuthenticateRequest(name="root", password="secret"), timeout=10).token
            for i in range(20):  # over the watch, after the copy
                rpc.KVStub(ch).Put(pb.PutRequest(key=b"/registry/pods/ns/q%d" % i, value=b"w"),
                                   metadata=[("token", token)], timeout=10)
        time.sleep(1)
        out, _ = stop(follower)
        assert "copied" in out and "following" in out, out
        root = ("--user", "root:secret")
        done = migrate("--from", etcd.url, *root, "--data-dir", data_dir, "--catch-up")
        assert done.returncode == 0, done.stderr
        verified = migrate("verify", "--from", etcd.url, *root, "--data-dir", data_dir)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "compared 50 keys" in verified.stdout and "0 differences" in verified.stdout
        with KvstoreProcess(data_dir) as kv:  # served: the copy's auth is on, root's too
            refused = migrate("verify", "--from", etcd.url, *root, "--to", kv.url)
            served = migrate("verify", "--from", etcd.url, *root, "--to", kv.url,
                             "--dest-user", "root", "--dest-password", "secret")
        assert refused.returncode == 1, refused.stdout
        assert "user name is empty" in refused.stderr, refused.stderr
        assert served.returncode == 0, served.stdout + served.stderr
        assert "compared 50 keys" in served.stdout and "0 differences" in served.stdout
