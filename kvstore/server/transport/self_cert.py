"""--auto-tls: a self-signed certificate as etcd's transport.SelfCert makes it.

In ``dir`` (etcd: <data-dir>/fixtures/client, mode 0700): cert.pem and key.pem (0600). Once
both exist they are used as they are, whatever the hosts now (etcd does the same). Otherwise: an
ECDSA P-521 key (SEC 1 PEM, "EC PRIVATE KEY"), a certificate signed by it with SHA-512, subject
and issuer O=etcd, a random 128-bit serial, valid for 365 days from now; key usage digital
signature and key encipherment (critical), extended key usage server auth, basic constraints
CA:FALSE (critical); subject alternative names: the host of every listen client URL, https://
or not, IP addresses as such and the rest as DNS names (etcd 3.4.23's fixtures compared with
``openssl x509 -text``).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path


def self_cert(dirpath: Path, hosts: list[str]) -> tuple[Path, Path]:
    """(cert.pem, key.pem) in ``dirpath``, made if either is missing."""
    cert_path, key_path = dirpath / "cert.pem", dirpath / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    for d in reversed([dirpath, *dirpath.parents]):  # (Go's MkdirAll: 0700 at every level made)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    cert_pem, key_pem = _make(hosts)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path


def _make(hosts: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP521R1())
    ips: list[x509.GeneralName] = []
    dns: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            ips.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(x509.DNSName(host))
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(key.public_key())
               .serial_number(int.from_bytes(os.urandom(16)) or 1)
               .not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_encipherment=True, content_commitment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=False,
                   crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if dns or ips:  # (Go writes DNS names before IP addresses)
        builder = builder.add_extension(x509.SubjectAlternativeName(dns + ips), critical=False)
    cert = builder.sign(key, hashes.SHA512())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))
