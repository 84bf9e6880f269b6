"""The client port's TLS from etcd's flags (etcd's transport.TLSInfo for client URLs):
certificate and key (or ``--auto-tls``'s own, self_cert.py), ``--trusted-ca-file``,
``--client-cert-auth``, ``--client-crl-file``, ``--cipher-suites`` by Go's names, and etcd 3.5's
``--tls-min-version`` / ``--tls-max-version``.

What etcd refuses, refused here with its words, before anything listens:
  - a TLS version other than TLS1.2 or TLS1.3; a minimum above the maximum; cipher suites
    with TLS 1.3 only (Go cannot configure TLS 1.3's suites; neither can Python's ssl);
  - a cipher suite name Go does not know (Go's tls.CipherSuites and InsecureCipherSuites, and
    the two legacy CHACHA20 names; case and spaces count, and an empty name is unknown);
  - on an https:// URL, a suite list without an HTTP/2-required AES-128-GCM suite (Go's
    http2.ConfigureServer refuses it; etcd 3.4 dies of it as it starts listening).

What etcd does that one might not expect, and we do too:
  - ``--trusted-ca-file`` alone requires client certificates (etcd's TLSInfo.ServerConfig:
    RequireAndVerifyClientCert when a CA is given or --client-cert-auth is on); only
    ``--client-cert-auth`` makes a certificate's common name its holder's user name;
  - ``--client-cert-auth`` without a CA verifies client certificates against the system's CAs
    (Go's ClientCAs nil);
  - ``--auto-tls`` without a certificate replaces the whole client TLS configuration with the
    self-signed one: the trusted CA, --client-cert-auth and the CRL are dropped (etcd's
    ClientSelfCert assigns a fresh TLSInfo). Logged as a warning here; etcd says nothing.

The suites restrict TLS 1.2 only, as in Go: a TLS 1.3 client is served with TLS 1.3's suites.
"""
from __future__ import annotations

import json
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)


class TLSConfigError(ValueError):
    pass


# Go's crypto/tls names (those etcd 3.4.23, built with Go 1.19, accepts: checked one by one
# against it) -> OpenSSL's; None: a TLS 1.3 suite, accepted and without effect, as in Go.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",  # etcd's alias
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",  # etcd's alias
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
# golang.org/x/net/http2 ConfigureServer: one of these, or no HTTP/2 over TLS
HTTP2_REQUIRED = ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
TLS_VERSIONS = {"TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}


def _q(text: str) -> str:
    """Go's %q (for what a command line holds)."""
    return json.dumps(text, ensure_ascii=False)


def split_cipher_suites(value: str | None) -> tuple[str, ...] | None:
    """--cipher-suites as etcd's StringsFlag splits it: not given, None; given, every
    comma-separated part as it is (``--cipher-suites ""`` is one empty, unknown, name)."""
    return None if value is None else tuple(value.split(","))


@dataclass(frozen=True)
class ClientTLS:
    cert_file: str | None = None
    key_file: str | None = None
    trusted_ca_file: str | None = None
    client_cert_auth: bool = False
    crl_file: str | None = None
    auto_tls: bool = False
    cipher_suites: tuple[str, ...] | None = None  # Go's names; None: OpenSSL's defaults
    min_version: str = ""  # "": TLS1.2, etcd's minimum
    max_version: str = ""  # "": the highest both ends speak

    @property
    def has_cert(self) -> bool:
        return bool(self.cert_file and self.key_file)

    @property
    def self_signed(self) -> bool:
        """--auto-tls makes the certificate: none was given (etcd: TLSInfo.Empty())."""
        return self.auto_tls and not (self.cert_file or self.key_file)

    @property
    def verifies_clients(self) -> bool:
        """Whether a client must present a certificate that verifies."""
        return bool(self.trusted_ca_file or self.client_cert_auth)

    def validate(self, serves_tls: bool) -> None:
        """etcd's refusals at start (module docstring), in etcd's order."""
        lo, hi = (parse_tls_version(v) for v in (self.min_version, self.max_version))
        if lo and hi and lo > hi:
            raise TLSConfigError(f"min version ({self.min_version}) is greater than max version "
                                 f"({self.max_version})")
        if lo == ssl.TLSVersion.TLSv1_3 and self.cipher_suites:
            raise TLSConfigError("cipher suites cannot be configured when only TLS1.3 is enabled")
        for name in self.cipher_suites or ():
            if name not in CIPHER_SUITES:
                raise TLSConfigError(f"unexpected TLS cipher suite {_q(name)}")
        if serves_tls and self.cipher_suites and not set(self.cipher_suites) & set(HTTP2_REQUIRED):
            raise TLSConfigError(
                "http2: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 "
                "cipher (need at least one of TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)")

    def validate_for_grpcio(self) -> None:
        """What grpcio's server credentials cannot do (its C core can, Python's API does not
        reach it): the h2 transport can."""
        if self.crl_file:
            raise TLSConfigError("--client-crl-file needs --transport h2 (grpcio's server "
                                 "credentials take no CRL)")
        if self.min_version not in ("", "TLS1.2") or self.max_version not in ("", "TLS1.3"):
            raise TLSConfigError("--transport grpcio serves TLS1.2 to TLS1.3: other "
                                 "--tls-min-version/--tls-max-version need --transport h2")
        if self.client_cert_auth and not self.trusted_ca_file and _system_ca_file() is None:
            raise TLSConfigError("--client-cert-auth without --trusted-ca-file on --transport "
                                 "grpcio: no system CA file to verify client certificates with")

    def as_served(self) -> ClientTLS:
        """What etcd serves with: with --auto-tls making the certificate, that certificate
        alone (etcd's ClientSelfCert assigns a fresh TLSInfo: no trusted CA, no client
        certificate auth, no CRL); otherwise these flags."""
        if not self.self_signed:
            return self
        return replace(self, trusted_ca_file=None, client_cert_auth=False, crl_file=None)

    def with_self_signed_cert(self, data_dir: str, hosts: list[str]) -> ClientTLS:
        """--auto-tls: etcd's SelfCert in <data-dir>/fixtures/client (made once, then reused),
        and the configuration etcd serves with it (as_served)."""
        from .self_cert import self_cert

        assert self.self_signed
        cert, key = self_cert(Path(data_dir) / "fixtures" / "client", hosts)
        if self.verifies_clients or self.crl_file:
            log.warning("--auto-tls: the self-signed certificate replaces the client TLS "
                        "configuration, as etcd's: --trusted-ca-file, --client-cert-auth and "
                        "--client-crl-file are ignored, clients are not asked for certificates")
        return replace(self.as_served(), cert_file=str(cert), key_file=str(key))

    # -- what the transports serve with --------------------------------------------------------

    def openssl_ciphers(self) -> str | None:
        """The TLS 1.2 suites as an OpenSSL cipher list, or None (OpenSSL's defaults)."""
        if not self.cipher_suites:
            return None
        names = (CIPHER_SUITES[n] for n in self.cipher_suites)
        return ":".join(dict.fromkeys(n for n in names if n))

    def ssl_context(self) -> ssl.SSLContext:
        """The h2 transport's: ALPN h2, and http/1.1 for /health, /metrics and the JSON
        gateway (also served to clients that offer no ALPN at all)."""
        assert self.cert_file and self.key_file, "no certificate (validated before)"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        ctx.minimum_version = parse_tls_version(self.min_version) or ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = parse_tls_version(self.max_version) or ssl.TLSVersion.MAXIMUM_SUPPORTED
        ciphers = self.openssl_ciphers()
        if ciphers:
            ctx.set_ciphers(ciphers)  # (an HTTP/2-required suite is among them: validated)
            taken = {c["name"] for c in ctx.get_ciphers()}
            missing = [n for n in self.cipher_suites or () if CIPHER_SUITES[n] not in taken
                       and CIPHER_SUITES[n] is not None]
            if missing:
                log.warning("cipher suites this OpenSSL does not offer, left out: %s",
                            ", ".join(missing))
        if self.verifies_clients:
            ctx.verify_mode = ssl.CERT_REQUIRED
            if self.trusted_ca_file:
                ctx.load_verify_locations(self.trusted_ca_file)
            else:  # --client-cert-auth alone: Go verifies against the system's roots
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
            if self.crl_file:
                _load_crl(ctx, self.crl_file)
        return ctx

    def grpc_credentials(self):
        """grpcio's server credentials (validate_for_grpcio first). Its cipher suites are
        process-wide, from GRPC_SSL_CIPHER_SUITES before grpc loads (grpcio_cipher_env)."""
        import grpc

        assert self.cert_file and self.key_file, "no certificate (validated before)"
        roots = None
        if self.verifies_clients:
            ca = self.trusted_ca_file or _system_ca_file()
            assert ca is not None, "validated before"
            roots = Path(ca).read_bytes()
        return grpc.ssl_server_credentials(
            [(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())],
            root_certificates=roots, require_client_auth=self.verifies_clients)

    def grpcio_cipher_env(self) -> dict[str, str]:
        """The environment grpcio takes --cipher-suites from (read once, as grpc starts)."""
        ciphers = self.openssl_ciphers()
        return {"GRPC_SSL_CIPHER_SUITES": ciphers} if ciphers else {}


def parse_tls_version(text: str) -> ssl.TLSVersion | None:
    """etcd's tlsutil.GetTLSVersion: "" (Go's choice), TLS1.2 or TLS1.3."""
    if not text:
        return None
    try:
        return TLS_VERSIONS[text]
    except KeyError:
        raise TLSConfigError(f"unexpected TLS version {_q(text)} (must be one of: TLS1.2, "
                             f"TLS1.3)") from None


def peer_common_name(cert: dict | None) -> str | None:
    """The subject's common name of a certificate as ssl's getpeercert() gives it (only once
    verified: an unverified one comes as {}), or None."""
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


def _system_ca_file() -> str | None:
    paths = ssl.get_default_verify_paths()
    for f in (paths.cafile, paths.openssl_cafile):
        if f and os.path.exists(f):
            return f
    return None


def _load_crl(ctx: ssl.SSLContext, crl_file: str) -> None:
    """The CRL, PEM or DER (Go's x509.ParseCRL takes either), checked for every client's own
    certificate. Unlike etcd, which compares serial numbers with the list as read on each
    connection, OpenSSL checks the list's signature by the client's CA, and reads it once."""
    data = Path(crl_file).read_bytes()
    if b"-----BEGIN X509 CRL-----" in data:
        ctx.load_verify_locations(cafile=crl_file)
    else:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            pem = x509.load_der_x509_crl(data).public_bytes(Encoding.PEM)
        except ValueError as e:
            raise TLSConfigError(f"cannot read the CRL {crl_file}: {e}") from None
        with tempfile.NamedTemporaryFile(suffix=".pem") as f:  # (OpenSSL reads CRLs from files)
            f.write(pem)
            f.flush()
            ctx.load_verify_locations(cafile=f.name)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
