"""The client port's TLS, from etcd's flags: certificate and key (or ``--auto-tls``'s own), the
trusted CA and ``--client-cert-auth``, ``--cipher-suites`` by Go's names, and
``--tls-min-version`` / ``--tls-max-version`` (etcd 3.5's).

As in Go, the cipher suites restrict TLS 1.2 and below: TLS 1.3's suites are not configurable.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path


class TLSConfigError(ValueError):
    pass


# Go's crypto/tls names -> OpenSSL's (those Go's tls.CipherSuites and InsecureCipherSuites list)
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
}
TLS_VERSIONS = {"TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}


def parse_cipher_suites(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in CIPHER_SUITES:
            raise TLSConfigError(f"unexpected TLS cipher suite {name!r}")
    return names


def parse_tls_version(text: str) -> str:
    if text and text not in TLS_VERSIONS:
        raise TLSConfigError(f"unexpected TLS version {text!r} (must be one of: TLS1.2, TLS1.3)")
    return text


@dataclass
class TLSOptions:
    cert_file: str | None = None
    key_file: str | None = None
    trusted_ca_file: str | None = None
    client_cert_auth: bool = False
    auto_tls: bool = False
    cipher_suites: list[str] = field(default_factory=list)
    min_version: str = ""  # "": TLS 1.2, as etcd's default
    max_version: str = ""  # "": the highest both sides have

    def check(self) -> None:
        """etcd's refusals of a combination (at start, before anything listens)."""
        lo, hi = self.min_version, self.max_version
        if lo and hi and TLS_VERSIONS[lo] > TLS_VERSIONS[hi]:
            raise TLSConfigError(f"min version ({lo}) is greater than max version ({hi})")
        if self.cipher_suites and lo == "TLS1.3":
            raise TLSConfigError("cipher suites cannot be configured when only TLS1.3 or greater "
                                 "is supported")

    @property
    def has_cert(self) -> bool:
        return bool(self.cert_file and self.key_file)

    def self_signed(self, data_dir: str, hosts: list[str]) -> None:
        """``--auto-tls`` without a certificate: one of our own for the listen hosts, as etcd
        makes it (self-signed, a year, in <data-dir>/fixtures/client), kept across restarts;
        clients trust it by itself (etcdctl --cacert cert.pem). ECDSA P-256 with SHA-256
        where etcd's is P-521 with SHA-512: gRPC's BoringSSL clients refuse the latter."""
        out = Path(data_dir) / "fixtures" / "client"
        cert, key = out / "cert.pem", out / "key.pem"
        if not (cert.exists() and key.exists()):
            out.mkdir(parents=True, exist_ok=True)
            cert_pem, key_pem = _self_signed_certificate(hosts)
            key.touch(mode=0o600)
            key.write_bytes(key_pem)
            cert.write_bytes(cert_pem)
        self.cert_file, self.key_file = str(cert), str(key)

    def context(self) -> ssl.SSLContext | None:
        """The server's TLS context (ALPN h2, and http/1.1 for /health, /metrics and the JSON
        gateway), or None without a certificate."""
        if not (self.cert_file and self.key_file):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        ctx.minimum_version = TLS_VERSIONS.get(self.min_version, ssl.TLSVersion.TLSv1_2)
        if self.max_version:
            ctx.maximum_version = TLS_VERSIONS[self.max_version]
        if self.cipher_suites:
            usable = [CIPHER_SUITES[n] for n in self.cipher_suites]
            try:
                ctx.set_ciphers(":".join(usable))
            except ssl.SSLError:
                raise TLSConfigError(f"none of the cipher suites {self.cipher_suites} is "
                                     f"available in this OpenSSL") from None
        if self.trusted_ca_file:
            ctx.load_verify_locations(self.trusted_ca_file)
        if self.client_cert_auth:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def _self_signed_certificate(hosts: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
