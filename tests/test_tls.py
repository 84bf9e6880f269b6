"""TLS on the client URL (https://) as etcd's flags have it, with real processes and real
clients (etcdctl, grpcio, urllib, curl, Python's ssl for handshakes it alone can restrict), and
real etcd 3.4 beside kvstore where the two can be compared:

  - start-up refusals, in etcd's words (etcd 3.4's own for --cipher-suites; etcd 3.5's source
    for --tls-min-version/--tls-max-version, which 3.4 lacks);
  - --client-cert-auth: no certificate, one from another CA, a revoked one (--client-crl-file)
    refused; --trusted-ca-file alone requires certificates too, as on etcd 3.4;
  - --cipher-suites: a client offering only a suite outside the list fails its handshake;
    --tls-min-version TLS1.3 refuses a TLS 1.2 client; --tls-max-version TLS1.2 a TLS 1.3 one;
  - --auto-tls: etcd's self-signed certificate, serving etcdctl --insecure-skip-tls-verify;
  - /health, /metrics, /version and the JSON gateway over TLS on the same port, with ALPN
    http/1.1 and with no ALPN at all;
  - the grpcio transport's TLS;
  - the interceptor gets the verified certificate's common name (both transports, in process):
    under --client-cert-auth only, and never from the gateway.

The certificates are made once for the module (cryptography, in process).
"""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

import kvstore
from etcdctl import Etcdctl
from kvstore.api import rpc_pb2 as pb, rpc_pb2_grpc as rpc
from kvstore.server.services.interceptor import CallInterceptor
from procs import REPO, EtcdProcess, KvstoreProcess, channel, free_port

pytestmark = pytest.mark.h2_transport  # each test names its transport: run once

AES128 = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


# -- certificates ------------------------------------------------------------------------------

def make_pki(d: Path) -> dict[str, Path]:
    """A CA; a server certificate (RSA, for the ECDHE_RSA suites) for 127.0.0.1 and localhost;
    client certificates alice and revoked (CN=revoked, in the CA's CRL), and rogue (CN=alice,
    from another CA); the CRL as PEM and DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    out: dict[str, Path] = {}

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert, key) -> None:
        out[stem] = d / f"{stem}.pem"
        out[stem].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{stem}.key"] = d / f"{stem}.key"
        out[f"{stem}.key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def issue(cn, key, issuer, issuer_key, *, ca=False, usage=None, san=None):
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    cas = {}
    for ca in ("ca", "other-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cas[ca] = (issue(ca, key, name(ca), key, ca=True), key)
        write(ca, *cas[ca])
    ca_cert, ca_key = cas["ca"]
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("server", issue("127.0.0.1", server_key, ca_cert.subject, ca_key,
                          usage=ExtendedKeyUsageOID.SERVER_AUTH,
                          san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                               x509.DNSName("localhost")]), server_key)
    for stem, cn, ca in (("alice", "alice", "ca"), ("revoked", "revoked", "ca"),
                         ("rogue", "alice", "other-ca")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(cn, key, cas[ca][0].subject, cas[ca][1], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        write(stem, cert, key)
        if stem == "revoked":
            revoked_serial = cert.serial_number
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
           .last_update(now - datetime.timedelta(minutes=5))
           .next_update(now + datetime.timedelta(days=2))
           .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                    .serial_number(revoked_serial).revocation_date(now).build())
           .sign(ca_key, hashes.SHA256()))
    out["crl"] = d / "ca.crl"
    out["crl"].write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    out["crl.der"] = d / "ca.crl.der"
    out["crl.der"].write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_flags(pki, *extra: str) -> list[str]:
    return ["--cert-file", str(pki["server"]), "--key-file", str(pki["server.key"]), *extra]


def kvstore_tls(d: Path, pki, *flags: str, transport: str = "h2",
                client: str | None = None) -> KvstoreProcess:
    """kvstore on https://, checked at start with the test CA (and ``client``'s certificate)."""
    p = KvstoreProcess(d, extra_args=["--transport", transport, *server_flags(pki, *flags)],
                       tls=None)
    p.root_ca = pki["ca"]
    if client:
        p.client_cert = (pki[client], pki[f"{client}.key"])
    return p


def client_context(pki, cert: str | None = None, *, ciphers: str | None = None,
                   tls_max: ssl.TLSVersion | None = None, tls_min: ssl.TLSVersion | None = None,
                   alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert:
        ctx.load_cert_chain(pki[cert], pki[f"{cert}.key"])
    if ciphers:
        ctx.set_ciphers(ciphers)
    if tls_max:
        ctx.maximum_version = tls_max
    if tls_min:
        ctx.minimum_version = tls_min
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def get_health(port: int, ctx: ssl.SSLContext) -> tuple[str, str | None]:
    """GET /health over HTTP/1.1 on a TLS connection made with ``ctx``: (the answer's status
    line, the ALPN protocol chosen). Raises OSError (ssl.SSLError among them) when the server
    refuses the handshake, or closes the connection after it (TLS 1.3 refuses a client's
    certificate once the client thinks the handshake is over)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            if not answer:
                raise ConnectionResetError("closed without an answer")
            return answer.split(b"\r\n", 1)[0].decode(), s.selected_alpn_protocol()


def refused(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        get_health(port, ctx)
    except OSError:
        return True
    return False


def served(port: int, ctx: ssl.SSLContext) -> bool:
    return get_health(port, ctx)[0] == "HTTP/1.1 200 OK"


def etcdctl_as(server, pki, cert: str | None = None) -> tuple[Etcdctl, list[str]]:
    flags = ["--cacert", str(pki["ca"])]
    if cert:
        flags += ["--cert", str(pki[cert]), "--key", str(pki[f"{cert}.key"])]
    return Etcdctl(server.url), flags


# -- a server with a certificate and nothing else -----------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    with kvstore_tls(tmp_path_factory.mktemp("tls") / "kv", pki) as server:
        yield server, pki["ca"], grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())


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
    r = subprocess.run(["etcdctl", "--endpoints", server.url, "--command-timeout", "1s", "put", "k", "v"],
                       env=env, capture_output=True, text=True, timeout=20)
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


# -- start-up refusals ----------------------------------------------------------------------------

# (flags, the error). Those etcd 3.4 has are also run on it, below; the --tls-*-version errors
# are etcd 3.5's (server/embed/config.go Validate, client/pkg/tlsutil GetTLSVersion).
REFUSALS = [
    (["--cipher-suites", "TLS_BOGUS"], 'unexpected TLS cipher suite "TLS_BOGUS"'),
    (["--cipher-suites", f"{AES128},"], 'unexpected TLS cipher suite ""'),
    (["--cipher-suites", AES128.lower()], f'unexpected TLS cipher suite "{AES128.lower()}"'),
    (["--cipher-suites", f"{AES128}, TLS_AES_128_GCM_SHA256"],
     'unexpected TLS cipher suite " TLS_AES_128_GCM_SHA256"'),
    (["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256"],
     "http2: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher "
     "(need at least one of TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
     "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)"),
    (["--tls-min-version", "TLS1.1"], 'unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)'),
    (["--tls-max-version", "tls1.3"], 'unexpected TLS version "tls1.3" (must be one of: TLS1.2, TLS1.3)'),
    (["--tls-min-version", "TLS1.3", "--tls-max-version", "TLS1.2"],
     "min version (TLS1.3) is greater than max version (TLS1.2)"),
    (["--tls-min-version", "TLS1.3", "--cipher-suites", AES128],
     "cipher suites cannot be configured when only TLS1.3 is enabled"),
]
ETCD_34_FLAGS = ("--cipher-suites",)


def _etcd_error(flags: list[str], d: Path) -> subprocess.Popen:
    client, peer = f"https://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    return subprocess.Popen(
        ["etcd", "--logger", "zap", "--data-dir", str(d), "--listen-client-urls", client,
         "--advertise-client-urls", client, "--listen-peer-urls", peer,
         "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")})


def test_flags_refused_as_etcd_refuses_them(tmp_path, pki):
    """Each refused at start with exit 1 and etcd's error (kvstore processes run side by side:
    the machine has two cores, and each mostly waits for Python to import)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    runs = []
    for i, (flags, _) in enumerate(REFUSALS):
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "kvstore", "serve", "--data-dir", str(tmp_path / f"kv{i}"),
             "--listen-client-urls", f"https://127.0.0.1:{free_port()}", *server_flags(pki, *flags)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    etcd_runs = {i: _etcd_error(server_flags(pki, *flags), tmp_path / f"etcd{i}")
                 for i, (flags, _) in enumerate(REFUSALS) if flags[0] in ETCD_34_FLAGS}
    for (flags, error), p in zip(REFUSALS, runs):
        _, err = p.communicate(timeout=60)
        assert (p.returncode, err) == (1, f"kvstore: {error}\n"), flags
    for i, p in etcd_runs.items():
        out, _ = p.communicate(timeout=60)
        fatal = [json.loads(line) for line in out.splitlines()
                 if line.startswith("{") and json.loads(line)["level"] == "fatal"]
        assert p.returncode == 1 and fatal[-1]["error"] == REFUSALS[i][1], out[-2000:]


# -- client certificates ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    """--client-cert-auth with the test CA and its CRL (DER, as etcd takes either)."""
    flags = ["--trusted-ca-file", str(pki["ca"]), "--client-cert-auth",
             "--client-crl-file", str(pki["crl.der"])]
    with kvstore_tls(tmp_path_factory.mktemp("mtls") / "kv", pki, *flags, client="alice") as server:
        yield server


def test_client_cert_auth_takes_only_certificates_of_the_ca_not_revoked(mtls_server, pki):
    ctl, alice = etcdctl_as(mtls_server, pki, "alice")
    assert ctl.ok(*alice, "put", "mtls", "v").stdout == "OK\n"
    assert ctl.ok(*alice, "get", "mtls", "--print-value-only").stdout == "v\n"
    port = mtls_server.port
    assert served(port, client_context(pki, "alice"))
    assert refused(port, client_context(pki))  # no certificate
    assert refused(port, client_context(pki, "rogue"))  # another CA's, even with the right CN
    assert refused(port, client_context(pki, "revoked"))  # in the CRL
    with channel(mtls_server.endpoint, pki["ca"]) as ch:  # grpcio without a certificate
        with pytest.raises(grpc.RpcError) as e:
            rpc.KVStub(ch).Range(pb.RangeRequest(key=b"mtls"), timeout=3)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_http1_endpoints_over_tls_with_alpn_and_without(mtls_server, pki):
    """/health, /version, /metrics and the gateway on the TLS port, for a client that asks for
    http/1.1 by ALPN and one that offers no ALPN at all (urllib with a context of its own,
    curl --no-alpn)."""
    port = mtls_server.port
    ok = "HTTP/1.1 200 OK"
    assert get_health(port, client_context(pki, "alice", alpn=["http/1.1"])) == (ok, "http/1.1")
    assert get_health(port, client_context(pki, "alice")) == (ok, None)
    ctx = client_context(pki, "alice")
    base = mtls_server.url
    with urllib.request.urlopen(f"{base}/version", context=ctx, timeout=5) as r:
        assert set(json.loads(r.read())) == {"etcdserver", "etcdcluster"}
    with urllib.request.urlopen(f"{base}/metrics", context=ctx, timeout=5) as r:
        assert b"etcd_server_has_leader 1" in r.read()
    put = urllib.request.Request(f"{base}/v3/kv/put", data=b'{"key":"Z3c=","value":"MQ=="}')
    with urllib.request.urlopen(put, context=ctx, timeout=5) as r:
        assert "header" in json.loads(r.read())
    got = urllib.request.Request(f"{base}/v3/kv/range", data=b'{"key":"Z3c="}')
    with urllib.request.urlopen(got, context=ctx, timeout=5) as r:
        assert json.loads(r.read())["kvs"][0]["value"] == "MQ=="
    if shutil.which("curl"):
        cert = ["--cacert", str(pki["ca"]), "--cert", str(pki["alice"]), "--key", str(pki["alice.key"])]
        for alpn in (["--http1.1"], ["--http1.1", "--no-alpn"]):
            r = subprocess.run(["curl", "-sS", *cert, *alpn, f"{base}/health"],
                               capture_output=True, text=True, timeout=20)
            assert json.loads(r.stdout)["health"] == "true", r.stderr
        r = subprocess.run(["curl", "-sS", "--cacert", str(pki["ca"]), "--http1.1", f"{base}/health"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0  # no certificate


def test_trusted_ca_alone_requires_client_certificates_as_etcd(tmp_path, pki):
    """etcd 3.4 asks for and verifies client certificates once it has a CA, --client-cert-auth
    or not (its TLSInfo.ServerConfig): the same handshakes succeed and fail on both."""
    flags = ["--trusted-ca-file", str(pki["ca"])]
    kv = kvstore_tls(tmp_path / "kv", pki, *flags, client="alice")
    etcd = EtcdProcess(tmp_path / "etcd", extra_args=server_flags(pki, *flags))
    etcd.root_ca, etcd.client_cert = pki["ca"], (pki["alice"], pki["alice.key"])
    with kv, etcd:
        for server in (kv, etcd):
            assert served(server.port, client_context(pki, "alice")), server.name
            assert refused(server.port, client_context(pki)), server.name
            assert refused(server.port, client_context(pki, "rogue")), server.name


def test_crl_pem_or_der(pki):
    """--client-crl-file in either encoding (Go's x509.ParseCRL takes both): one CRL in the
    context's store, checked for each client's certificate."""
    from kvstore.server.transport.tls import ClientTLS

    for crl in (pki["crl"], pki["crl.der"]):
        ctx = ClientTLS(str(pki["server"]), str(pki["server.key"]), str(pki["ca"]), True,
                        str(crl)).ssl_context()
        assert ctx.cert_store_stats()["crl"] == 1
        assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF and ctx.verify_mode == ssl.CERT_REQUIRED


# -- cipher suites and versions ------------------------------------------------------------------------

def test_cipher_suites_restrict_tls12_as_on_etcd(tmp_path, pki):
    """--cipher-suites with one suite: a TLS 1.2 client offering another fails its handshake,
    one offering it succeeds, on kvstore and etcd alike; a TLS 1.3 client is served (the suites
    are TLS 1.2's), unless --tls-max-version TLS1.2 (etcd 3.5's flag: kvstore only)."""
    flags = ["--cipher-suites", AES128]
    kv = kvstore_tls(tmp_path / "kv", pki, *flags)
    kv12 = kvstore_tls(tmp_path / "kv12", pki, *flags, "--tls-max-version", "TLS1.2")
    etcd = EtcdProcess(tmp_path / "etcd", extra_args=server_flags(pki, *flags))
    etcd.root_ca = pki["ca"]
    tls12 = ssl.TLSVersion.TLSv1_2
    with kv, kv12, etcd:
        for server in (kv, kv12, etcd):
            port = server.port
            assert refused(port, client_context(pki, ciphers="ECDHE-RSA-AES256-GCM-SHA384", tls_max=tls12))
            assert refused(port, client_context(pki, ciphers="ECDHE-RSA-CHACHA20-POLY1305", tls_max=tls12))
            assert served(port, client_context(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256", tls_max=tls12))
        assert served(kv.port, client_context(pki, tls_min=ssl.TLSVersion.TLSv1_3))
        assert served(etcd.port, client_context(pki, tls_min=ssl.TLSVersion.TLSv1_3))
        assert refused(kv12.port, client_context(pki, tls_min=ssl.TLSVersion.TLSv1_3))
        ctl, flags = etcdctl_as(kv12, pki)
        assert ctl.ok(*flags, "put", "suite", "v").stdout == "OK\n"  # etcdctl speaks TLS 1.2 too


def test_tls13_only_refuses_a_tls12_client(tmp_path, pki):
    with kvstore_tls(tmp_path / "kv", pki, "--tls-min-version", "TLS1.3") as kv:
        assert refused(kv.port, client_context(pki, tls_max=ssl.TLSVersion.TLSv1_2))
        assert served(kv.port, client_context(pki))
        ctl, flags = etcdctl_as(kv, pki)
        assert ctl.ok(*flags, "put", "tls13", "v").stdout == "OK\n"


# -- --auto-tls ----------------------------------------------------------------------------------------

class AutoTLSProcess(KvstoreProcess):
    """kvstore --auto-tls, up once its /health answers over TLS (grpcio's BoringSSL cannot
    check it: it offers no P-521 signatures, and fails the same way on etcd's certificate)."""

    def start(self, timeout: float = 30.0) -> KvstoreProcess:
        self.root_ca = self.data_dir / "fixtures" / "client" / "cert.pem"  # https://
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env(), cwd=str(self.data_dir.parent))
        log.close()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if get_health(self.port, ctx)[0] == "HTTP/1.1 200 OK":
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"kvstore --auto-tls did not start; log:\n{self.log()}")


def test_auto_tls_serves_etcdctl_with_etcds_self_signed_certificate(tmp_path, pki):
    """With --auto-tls and no certificate: etcd's fixtures/client/{cert,key}.pem, for the hosts
    of the listen URLs; etcdctl --insecure-skip-tls-verify is served (with
    --insecure-transport=false, as etcdctl 3.4 needs it for etcd too), and so is a client that
    trusts the certificate itself. As etcd's, the self-signed configuration replaces the
    trusted CA and --client-cert-auth: clients are not asked for certificates."""
    d = tmp_path / "kv"
    fixtures = d / "fixtures" / "client"
    kv = AutoTLSProcess(d, extra_args=["--transport", "h2", "--auto-tls", "--client-cert-auth",
                                       "--trusted-ca-file", str(pki["ca"])])
    with kv:
        ctl = Etcdctl(kv.url)
        assert ctl.ok("--insecure-transport=false", "--insecure-skip-tls-verify",
                      "put", "auto", "tls").stdout == "OK\n"
        assert ctl.ok("--cacert", str(fixtures / "cert.pem"), "get", "auto",
                      "--print-value-only").stdout == "tls\n"
        assert "clients are not asked for certificates" in kv.log()
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = x509.load_pem_x509_certificate((fixtures / "cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == cert.issuer.rfc4514_string() == "O=etcd"
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp521r1"
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha512"
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 365
    assert (fixtures / "key.pem").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert stat.S_IMODE((fixtures / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(fixtures.stat().st_mode) == stat.S_IMODE(fixtures.parent.stat().st_mode) == 0o700
    # a restart keeps it
    before = (fixtures / "cert.pem").read_bytes()
    with kv:
        pass
    assert (fixtures / "cert.pem").read_bytes() == before


# -- the grpcio transport ---------------------------------------------------------------------------

def test_grpcio_transport_tls(tmp_path, pki):
    """--transport grpcio: client certificates required and verified, the suites restricted (through
    GRPC_SSL_CIPHER_SUITES, set before grpc loads); what grpcio cannot do is refused at start."""
    flags = ["--trusted-ca-file", str(pki["ca"]), "--client-cert-auth", "--cipher-suites", AES128]
    with kvstore_tls(tmp_path / "kv", pki, *flags, transport="grpcio", client="alice") as kv:
        ctl, alice = etcdctl_as(kv, pki, "alice")
        assert ctl.ok(*alice, "put", "grpcio", "tls").stdout == "OK\n"
        tls12 = ssl.TLSVersion.TLSv1_2

        def handshake(ctx: ssl.SSLContext) -> bool:
            ctx.set_alpn_protocols(["h2"])
            try:
                with socket.create_connection(("127.0.0.1", kv.port), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                        return bool(s.recv(9))  # the server's SETTINGS
            except OSError:
                return False

        alice = "alice"
        assert handshake(client_context(pki, alice, ciphers="ECDHE-RSA-AES128-GCM-SHA256", tls_max=tls12))
        assert not handshake(client_context(pki, alice, ciphers="ECDHE-RSA-AES256-GCM-SHA384", tls_max=tls12))
        assert not handshake(client_context(pki, tls_max=tls12))  # no certificate
        assert not handshake(client_context(pki, "rogue"))
    for flag, error in ((["--client-crl-file", str(pki["crl"])], "--client-crl-file needs --transport h2"),
                        (["--tls-min-version", "TLS1.3"], "other --tls-min-version/--tls-max-version need")):
        r = subprocess.run([sys.executable, "-m", "kvstore", "serve", "--transport", "grpcio",
                            "--data-dir", str(tmp_path / "x"), "--listen-client-urls",
                            f"https://127.0.0.1:{free_port()}", *server_flags(pki, *flag)],
                           capture_output=True, text=True, timeout=60, env=kv.env())
        assert r.returncode == 1 and error in r.stderr


# -- the certificate's common name reaches the interceptor (in process) ------------------------------

class RecordingInterceptor(CallInterceptor):
    def __init__(self, store):
        super().__init__(store)
        self.peer_cns: list[tuple[str, str | None]] = []

    def __call__(self, call_type, metadata, peer_cn=None):
        self.peer_cns.append((call_type, peer_cn))
        return super().__call__(call_type, metadata, peer_cn)


async def _serve_in_process(transport: str, tls):
    from kvstore.server.http import HttpEndpoints
    from kvstore.server.serve import transport_server
    from kvstore.server.services import all_services

    store = await kvstore.Store.open("memory")
    intercept = RecordingInterceptor(store)
    server = transport_server(transport)(all_services(store), 1 << 20, intercept=intercept,
                                         http1=HttpEndpoints(store).respond)
    port = server.listen("127.0.0.1", 0, tls)
    await server.start()
    if port is None:  # H2Server binds at start
        port = server._servers[0].sockets[0].getsockname()[1]
    return store, server, intercept, port


@pytest.mark.parametrize("transport", ["h2", "grpcio"])
@pytest.mark.parametrize("client_cert_auth", [True, False])
async def test_interceptor_gets_the_verified_certificates_common_name(pki, transport, client_cert_auth):
    """Under --client-cert-auth, every call (unary and stream) of a client with a certificate
    gets its CN; with --trusted-ca-file alone the certificate is required but names no one."""
    from kvstore.server.transport.tls import ClientTLS

    tls = ClientTLS(str(pki["server"]), str(pki["server.key"]), str(pki["ca"]), client_cert_auth)
    store, server, intercept, port = await _serve_in_process(transport, tls)
    try:
        creds = grpc.ssl_channel_credentials(pki["ca"].read_bytes(), pki["alice.key"].read_bytes(),
                                             pki["alice"].read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
            await rpc.KVStub(ch).Put(pb.PutRequest(key=b"cn", value=b"1"))
            await rpc.KVStub(ch).Range(pb.RangeRequest(key=b"cn"))
            watch = rpc.WatchStub(ch).Watch()
            await watch.write(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"cn")))
            assert (await watch.read()).created
            watch.cancel()
        want = "alice" if client_cert_auth else None
        assert intercept.peer_cns == [("unary", want), ("unary", want), ("stream", want)]
    finally:
        await server.stop(0.5)
        await store.close()


async def test_h2_reads_the_common_name_once_per_connection_and_the_gateway_passes_none(pki, monkeypatch):
    """The h2 transport reads the certificate as the connection opens, not per call; the JSON
    gateway's calls get None even from a client with a certificate (etcd ignores the CN of a
    grpc-gateway call)."""
    from kvstore.server.transport.h2 import server_connection
    from kvstore.server.transport.tls import ClientTLS

    reads = []
    real = server_connection.peer_common_name
    monkeypatch.setattr(server_connection, "peer_common_name", lambda c: reads.append(c) or real(c))
    tls = ClientTLS(str(pki["server"]), str(pki["server.key"]), str(pki["ca"]), True)
    store, server, intercept, port = await _serve_in_process("h2", tls)
    try:
        creds = grpc.ssl_channel_credentials(pki["ca"].read_bytes(), pki["alice.key"].read_bytes(),
                                             pki["alice"].read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
            for i in range(5):
                await rpc.KVStub(ch).Put(pb.PutRequest(key=b"cn", value=b"%d" % i))
        assert intercept.peer_cns == [("unary", "alice")] * 5 and len(reads) == 1
        intercept.peer_cns.clear()

        def gateway_range() -> dict:
            req = urllib.request.Request(f"https://127.0.0.1:{port}/v3/kv/range", data=b'{"key":"Y24="}')
            with urllib.request.urlopen(req, context=client_context(pki, "alice"), timeout=5) as r:
                return json.loads(r.read())

        assert (await asyncio.to_thread(gateway_range))["kvs"][0]["value"] == "NA=="
        assert intercept.peer_cns == [("unary", None)]
    finally:
        await server.stop(0.5)
        await store.close()


def test_health_metrics_and_the_gateway_over_http2(tls_server):
    """curl over https picks HTTP/2 by ALPN: /health, /metrics and the JSON gateway answer
    there too (transport/h2/http_stream.py), as etcd's Go server does."""
    server, ca, _ = tls_server
    curl = ["curl", "-s", "--http2", "--cacert", str(ca), "-w", "\n%{http_version}"]

    def get(path, *args):
        return subprocess.run(curl + [f"{server.url}{path}", *args], capture_output=True, text=True,
                              timeout=20).stdout.splitlines()

    assert get("/health") == ['{"health":"true","reason":""}', "2"]
    put = get("/v3/kv/put", "-d", '{"key":"aDI=","value":"dg=="}')
    assert put[-1] == "2" and "revision" in json.loads(put[0])["header"]
    got = get("/v3/kv/range", "-d", '{"key":"aDI="}')
    assert got[-1] == "2" and json.loads(got[0])["kvs"][0]["value"] == "dg=="
    metrics = get("/metrics")
    assert metrics[-1] == "2" and any(m.startswith("etcd_server_has_leader 1") for m in metrics)
