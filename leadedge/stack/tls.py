"""A local certificate authority and server certificates for the stack's TLS listeners.

Made once per stack directory: a CA (`ca.pem`, what clients trust) and, per server, a
key and a certificate for 127.0.0.1 and localhost signed by it, as PEM files. A user
name and a random password for the stack's logins are kept beside them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from leadedge.stack.base import STACK_USER

VALID_DAYS = 3650


@dataclass(frozen=True)
class ServerFiles:
    """A server's PEM files: its key, its certificate, and both in one (Kafka's keystore)."""

    key: Path
    certificate: Path
    key_and_certificate: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class LocalAuthority:
    """The stack's CA in `directory`, created on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def ca_file(self) -> Path:
        """What clients trust."""
        return self.directory / "ca.pem"

    def _ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_file = self.directory / "ca-key.pem"
        if key_file.exists() and self.ca_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key, x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        self.directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(tz=datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("leadedge local stack CA"))
            .issuer_name(_name("leadedge local stack CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .sign(key, hashes.SHA256())
        )
        _write(key_file, _key_pem(key))
        self.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return key, certificate

    def server(self, name: str) -> ServerFiles:
        """`name`'s key and certificate for 127.0.0.1 and localhost, made once."""
        files = ServerFiles(
            key=self.directory / f"{name}-key.pem",
            certificate=self.directory / f"{name}.pem",
            key_and_certificate=self.directory / f"{name}-keystore.pem",
        )
        if files.key.exists() and files.certificate.exists() and files.key_and_certificate.exists():
            return files
        ca_key, ca = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(tz=datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(f"leadedge local {name}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        chain = certificate.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
            serialization.Encoding.PEM
        )
        _write(files.key, _key_pem(key))
        files.certificate.write_bytes(chain)
        _write(files.key_and_certificate, _key_pem(key) + chain)
        return files


def stack_password(directory: Path) -> str:
    """The password of the stack's user `STACK_USER`, random, made once per stack directory."""
    path = directory / "login.json"
    if path.exists():
        return str(json.loads(path.read_text())["password"])
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    _write(path, json.dumps({"user": STACK_USER, "password": password}).encode())
    return password
