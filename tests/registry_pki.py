"""A throw-away certificate authority and registry server certificate for tests.

Importable as `registry_pki` from every test (tests/ is on sys.path). Made with `cryptography`,
the library community.crypto's modules and filters use on the controller, in memory: nothing is
written unless the caller writes it, and every call makes new keys, so no private key is ever
committed (scripts/detect-private-key) and none is known to the leak scan in advance. A test
that uses one scans its own outputs for it (`secret_lines`).

    ca = make_ca()
    server = make_server_certificate(ca, "172.17.0.3")        # SAN IP:172.17.0.3
    server.certificate_pem, server.key_pem, ca.certificate_pem
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM text (the key unencrypted, PKCS#8)."""

    certificate_pem: str
    key_pem: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(name: str = "mmo-voxel test registry CA", days: int = 2) -> Issued:
    """A self-signed CA (basicConstraints CA:TRUE, keyCertSign), valid from an hour ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(_cert_pem(cert), _key_pem(key), cert, key)


def make_server_certificate(
    ca: Issued, *names: str, days: int = 2, not_after: dt.datetime | None = None
) -> Issued:
    """A TLS server certificate signed by `ca` for `names` (IP addresses become IP SANs, the
    rest DNS SANs); `not_after` in the past gives an expired one."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = dt.datetime.now(dt.UTC)
    end = not_after or now + dt.timedelta(days=days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, end) - dt.timedelta(hours=1))
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(_cert_pem(cert), _key_pem(key), cert, key)


def secret_lines(pem: str) -> list[str]:
    """The lines of a PEM private key that are secret (the base64 body, not the armor lines):
    what `scripts/leak-scan --secrets-file` is given to find the key in any output."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def forget_on_this_machine(registry: str) -> None:
    """What registry_trust wrote here, removed by hand (when the role's own absent failed)."""
    name = "mmo-voxel-registry-" + re.sub(r"[^A-Za-z0-9.-]", "_", registry) + ".crt"
    for directory in ("/etc/docker/certs.d", "/etc/containers/certs.d"):
        shutil.rmtree(Path(directory) / registry, ignore_errors=True)
    store = Path("/usr/local/share/ca-certificates") / name
    if store.exists():
        store.unlink()
        subprocess.run(["update-ca-certificates", "--fresh"], capture_output=True, check=False)
