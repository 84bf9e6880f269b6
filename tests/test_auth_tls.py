"""Client certificates as users (--client-cert-auth): the certificate's common name is the user,
with no password, as etcd takes it. etcdctl with --cert/--key against kvstore and a real etcd
3.4 on the same flags, outputs and errors compared; a token wins over the certificate; the JSON
gateway does not take the certificate's name (etcd's grpc-gateway neither)."""
from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest

from etcdctl import Differential, Etcdctl
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc
from procs import EtcdProcess, KvstoreProcess, channel

pytestmark = [pytest.mark.timeout(300), pytest.mark.h2_transport]  # TLS is the h2 transport's


def _openssl(d: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> dict[str, Path]:
    """A CA; a server certificate for 127.0.0.1; client certificates for root and alice; and
    one for root signed by another CA."""
    for ca in ("ca", "other-ca"):
        _openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                 f"/CN={ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    (d / "server.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    (d / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn, ca, ext in (("server", "127.0.0.1", "ca", "server.cnf"),
                              ("root", "root", "ca", "client.cnf"),
                              ("alice", "alice", "ca", "client.cnf"),
                              ("rogue", "root", "other-ca", "client.cnf")):
        _openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout",
                 f"{name}.key", "-out", f"{name}.csr")
        _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.pem")
    return {name: d / name for name in ("ca", "server", "root", "alice", "rogue")}


def tls_args(pki) -> list[str]:
    return ["--cert-file", str(pki["server"]) + ".pem", "--key-file", str(pki["server"]) + ".key",
            "--trusted-ca-file", str(pki["ca"]) + ".pem", "--client-cert-auth", "--bcrypt-cost", "4"]


def cert(pki, name: str) -> tuple[Path, Path]:
    return Path(str(pki[name]) + ".pem"), Path(str(pki[name]) + ".key")


class As:
    """etcdctl as the holder of one certificate."""

    def __init__(self, ctl: Etcdctl | Differential, pki, name: str):
        self.ctl, self.flags = ctl, ["--cacert", str(pki["ca"]) + ".pem",
                                     "--cert", str(pki[name]) + ".pem", "--key", str(pki[name]) + ".key"]

    def ok(self, *args):
        return self.ctl.ok(*self.flags, *args)

    def fail(self, *args):
        return self.ctl.fail(*self.flags, *args)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    d = tmp_path_factory.mktemp("mtls")
    pki = make_pki(d)
    kv = KvstoreProcess(d / "kv", extra_args=["--transport", "h2", *tls_args(pki)])
    etcd = EtcdProcess(d / "etcd", extra_args=tls_args(pki))
    for p in (kv, etcd):
        p.root_ca = Path(str(pki["ca"]) + ".pem")
        p.client_cert = cert(pki, "root")
    with kv, etcd:
        yield pki, kv, etcd


def test_the_certificates_common_name_is_the_user(servers):
    pki, kv, etcd = servers
    ctl = Differential(Etcdctl(kv.url), Etcdctl(etcd.url))
    root, alice = As(ctl, pki, "root"), As(ctl, pki, "alice")
    root.ok("user", "add", "root:rootpw")
    root.ok("role", "add", "root")
    root.ok("user", "grant-role", "root", "root")
    root.ok("role", "add", "app")
    root.ok("role", "grant-permission", "app", "readwrite", "--prefix", "app/")
    root.ok("put", "app/a", "1")
    root.ok("put", "secret", "s")
    root.ok("auth", "enable")
    alice.fail("get", "app/a")  # a certificate for a user that does not exist
    root.ok("user", "add", "alice", "--no-password")
    root.ok("user", "grant-role", "alice", "app")
    alice.ok("get", "app/a")
    alice.ok("put", "app/b", "2")
    alice.fail("get", "secret")
    alice.fail("user", "list")
    root.ok("user", "list")  # root's certificate: root, no password
    root.ok("get", "secret")
    # a token wins over the certificate
    alice.fail("--user", "root:wrong", "get", "secret")
    alice.ok("--user", "root:rootpw", "get", "secret")
    root.ok("auth", "disable")


def test_a_certificate_from_another_ca_is_refused(servers):
    pki, kv, _ = servers
    with channel(kv.endpoint, Path(str(pki["ca"]) + ".pem"), cert(pki, "rogue")) as ch:
        with pytest.raises(grpc.RpcError) as e:
            rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"k"), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with channel(kv.endpoint, Path(str(pki["ca"]) + ".pem")) as ch:  # no certificate at all
        with pytest.raises(grpc.RpcError) as e:
            rpc_pb2_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"k"), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_health_and_the_gateway_over_tls_with_a_client_certificate(servers):
    """/health and the JSON gateway share the TLS port; the gateway would not take the
    certificate's name for a user, so with auth on it refuses a request that brings one, as
    etcd's does."""
    pki, kv, etcd = servers
    answers = []
    for p in (kv, etcd):
        ctx = ssl.create_default_context(cafile=str(pki["ca"]) + ".pem")
        ctx.load_cert_chain(*cert(pki, "root"))
        with urllib.request.urlopen(f"{p.url}/health", context=ctx, timeout=5) as r:
            health = json.loads(r.read())
        ctl = As(Etcdctl(p.url), pki, "root")
        if "root" not in ctl.ok("user", "list").stdout.split():  # (run alone: a fresh server)
            ctl.ok("user", "add", "root:rootpw")
            ctl.ok("role", "add", "root")
            ctl.ok("user", "grant-role", "root", "root")
        ctl.ok("auth", "enable")
        req = urllib.request.Request(f"{p.url}/v3/kv/range", data=b'{"key":"YXBwL2E="}')
        try:
            urllib.request.urlopen(req, context=ctx, timeout=5)
            gateway = None
        except urllib.error.HTTPError as e:
            body = e.read()
            gateway = (e.code, json.loads(body)["error"] if body.startswith(b"{") else body)
        ctl.ok("auth", "disable")
        answers.append((health, gateway))
    # (/health: etcd 3.5's answer, with a reason; 3.4's has none)
    assert answers[0][0]["health"] == answers[1][0]["health"] == "true"
    assert answers[0][1] == answers[1][1] == (
        400, b"CommonName of client sending a request against gateway will be ignored and not "
             b"used as expected\n")
