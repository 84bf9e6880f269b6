"""TLS on the client URL (https://, ALPN h2) with real clients: etcdctl, grpcio, urllib."""
import json
import ssl
import subprocess
import urllib.request

import grpc
import pytest

from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from procs import KvstoreProcess


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
