"""TLS on the client URL (https://, ALPN h2) with real clients: etcdctl, grpcio, urllib."""
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import REPO, KvstoreProcess


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem")
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certs(d)
    with KvstoreProcess(d / "kv", extra_args=["--transport", "h2"], tls=(ca, cert, key)) as server:
        yield server, ca, grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())


def test_grpcio_over_tls(tls_server):
    server, _, creds = tls_server
    with grpc.secure_channel(server.endpoint, creds) as ch:
        kv = rpc.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"tls", value=b"x" * 100_000))
        assert kv.Range(pb.RangeRequest(key=b"tls")).kvs[0].value == b"x" * 100_000


def test_etcdctl_over_tls(tls_server):
    server, ca, _ = tls_server
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    base = ["etcdctl", "--endpoints", server.url, "--cacert", str(ca)]
    r = subprocess.run(base + ["put", "k", "v"], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "OK\n", r.stderr
    r = subprocess.run(base + ["get", "k", "--print-value-only"], env=env, capture_output=True,
                       text=True, timeout=20)
    assert r.stdout == "v\n"
    r = subprocess.run(["etcdctl", "--endpoints", server.url, "put", "k", "v"], env=env,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0  # an unknown CA is refused


def test_health_over_https_with_alpn_http11(tls_server):
    server, ca, _ = tls_server
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"{server.url}/health", context=ctx, timeout=5) as r:
        assert json.loads(r.read()) == {"health": "true", "reason": ""}


def test_https_url_without_cert_is_refused(tmp_path):
    r = subprocess.run(["python3", "-m", "kvstore", "serve", "--data-dir", str(tmp_path / "d"),
                        "--listen-client-urls", "https://127.0.0.1:1"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1
    assert "TLS key/cert (--cert-file, --key-file) must be provided" in r.stderr


def test_kvstore_client_over_tls(tls_server, tmp_path):
    """kvstore.client with etcdctl's --cacert (ALPN h2); an unknown CA is refused."""
    import asyncio
    import ssl as ssl_module

    from kvstore.client import TLSConfig, connect

    server, ca, _ = tls_server

    async def main():
        async with await connect(server.url, TLSConfig(cacert=str(ca))) as client:
            await client.put(pb.PutRequest(key=b"tls-client", value=b"v" * 70_000))
            got = await client.range(pb.RangeRequest(key=b"tls-client"))
            assert got.kvs[0].value == b"v" * 70_000
        with pytest.raises(ssl_module.SSLCertVerificationError):
            await connect(server.url)  # the system's CAs do not know the test CA

    asyncio.run(main())


def test_kvstore_load_over_tls(tls_server, tmp_path):
    from kvstore.server.cli import main as kvstore_main

    server, ca, _ = tls_server
    out = tmp_path / "tls.json"
    assert kvstore_main(["load", "put", "--endpoints", server.url, "--cacert", str(ca), "--total", "200",
                         "--clients", "4", "--quiet", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["runs"][0]["ops"]["put"]["ok"] == 200


# -- etcd's TLS flags --------------------------------------------------------------------------

def _client_context(ca: Path, *, max_version=None, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def _handshake(port: int, ctx: ssl.SSLContext) -> str | None:
    """The TLS version agreed, or None if the server refused the handshake."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()
    except (ssl.SSLError, ConnectionResetError):
        return None


def test_cipher_suites_restrict_tls12_by_gos_names(tmp_path):
    ca, cert, key = make_certs(tmp_path)
    args = ["--transport", "h2", "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    with KvstoreProcess(tmp_path / "kv", extra_args=args, tls=(ca, cert, key)) as server:
        tls12 = ssl.TLSVersion.TLSv1_2
        assert _handshake(server.port, _client_context(ca, max_version=tls12,
                                                       ciphers="ECDHE-RSA-AES256-GCM-SHA384")) is None
        assert _handshake(server.port, _client_context(ca, max_version=tls12,
                                                       ciphers="ECDHE-RSA-AES128-GCM-SHA256")) == "TLSv1.2"
        # as in Go, TLS 1.3's suites are not configurable: a TLS 1.3 client gets in
        assert _handshake(server.port, _client_context(ca)) == "TLSv1.3"


def test_tls_min_version_refuses_older_clients(tmp_path):
    ca, cert, key = make_certs(tmp_path)
    with KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2", "--tls-min-version", "TLS1.3"],
                        tls=(ca, cert, key)) as server:
        assert _handshake(server.port, _client_context(ca, max_version=ssl.TLSVersion.TLSv1_2)) is None
        assert _handshake(server.port, _client_context(ca)) == "TLSv1.3"


@pytest.mark.parametrize("args,exit_code,says", [
    (["--cipher-suites", "TLS_NO_SUCH_SUITE"], 2, "unexpected TLS cipher suite 'TLS_NO_SUCH_SUITE'"),
    (["--tls-min-version", "TLS1.1"], 2, "unexpected TLS version 'TLS1.1' (must be one of: TLS1.2, TLS1.3)"),
    (["--tls-min-version", "TLS1.3", "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], 1,
     "cipher suites cannot be configured when only TLS1.3 or greater is supported"),
    (["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"], 1,
     "min version (TLS1.3) is greater than max version (TLS1.2)"),
])
def test_tls_flags_refused_as_etcd_refuses_them(tmp_path, args, exit_code, says):
    ca, cert, key = make_certs(tmp_path)
    r = subprocess.run(["python3", "-m", "kvstore", "serve", "--data-dir", str(tmp_path / "d"),
                        "--listen-client-urls", "https://127.0.0.1:1", "--cert-file", str(cert),
                        "--key-file", str(key), *args], capture_output=True, text=True, timeout=30,
                       cwd=str(REPO))
    assert r.returncode == exit_code and says in r.stderr, r.stderr


def test_auto_tls_serves_with_a_certificate_of_its_own(tmp_path):
    """--auto-tls: a self-signed certificate for the listen host in <data-dir>/fixtures/client
    (etcdctl trusts it with --cacert, as with etcd's), the same one after a restart; /health,
    /metrics and the JSON gateway over HTTP/2 (curl's choice over https) as well as gRPC."""
    server = KvstoreProcess(tmp_path / "kv", extra_args=["--transport", "h2", "--auto-tls"])
    server.root_ca = tmp_path / "kv" / "fixtures" / "client" / "cert.pem"  # once it exists
    cert_path = server.root_ca
    with server:
        pem = cert_path.read_bytes()
        env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
        base = ["etcdctl", "--endpoints", server.url, "--cacert", str(cert_path)]
        assert subprocess.run(base + ["put", "k", "v"], env=env, capture_output=True, text=True,
                              timeout=20).stdout == "OK\n"
        curl = ["curl", "-s", "--http2", "--cacert", str(cert_path), "-w", "\n%{http_version}"]
        health = subprocess.run(curl + [f"{server.url}/health"], capture_output=True, text=True, timeout=20)
        assert health.stdout.splitlines() == ['{"health":"true","reason":""}', "2"]
        got = subprocess.run(curl + [f"{server.url}/v3/kv/range", "-d", '{"key":"aw=="}'],
                             capture_output=True, text=True, timeout=20).stdout.splitlines()
        assert got[1] == "2" and json.loads(got[0])["kvs"][0]["value"] == "dg=="
        metrics = subprocess.run(curl + [f"{server.url}/metrics"], capture_output=True, text=True,
                                 timeout=20).stdout
        assert "etcd_server_has_leader 1" in metrics
    with server:  # a restart keeps its certificate
        assert cert_path.read_bytes() == pem
