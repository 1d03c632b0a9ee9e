"""The simulator's certificate authority: merchant API certificates and the server certificate.

WeChat issues each merchant an "API certificate" (CN = mch_id) and answers CA_ERROR when a call
comes without it, with someone else's, with a foreign one or with an expired one
(docs/protocol.md §1.6). The simulator's TLS layer accepts any certificate; `check_client_cert`
decides, at step 4 of §6.2, against the simulator's clock.

Keys are ECDSA P-256: a merchant's key is made in about a millisecond (RSA-2048 takes tens), and
every TLS stack the clients use speaks it. Certificates are valid 2000–2099 unless told otherwise,
so they work at any simulated date and at the real one.

>>> ca = SimCA.create()
>>> cert, key = ca.issue_client_cert("1900000109")
>>> ca.check_client_cert(der_of(cert), "1900000109", datetime(2024, 3, 15, tzinfo=UTC)) is None
True
"""

from __future__ import annotations

import ipaddress
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hongbao.sim import exceptions as msg

__all__ = ["SimCA", "der_of", "fingerprint"]

_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
_NOT_AFTER = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
_CACHE_LIMIT = 4096
_CERT_FILE = "ca.pem"
_KEY_FILE = "ca-key.pem"


def der_of(cert_pem: bytes | str) -> bytes:
    """The DER bytes of a PEM certificate (what a TLS peer presents)."""
    data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate, lowercase hex."""
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Seen:
    """What matters about a presented certificate, computed once per distinct DER."""

    __slots__ = ("cn", "not_after", "not_before", "ours")

    def __init__(self, ours: bool, cn: str | None, not_before: datetime, not_after: datetime):
        self.ours = ours
        self.cn = cn
        self.not_before = not_before
        self.not_after = not_after


class SimCA:
    """A self-signed CA that issues merchant and server certificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self._cert = cert
        self.ca_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
        self._seen: dict[bytes, _Seen] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimCA(subject={self._cert.subject.rfc4514_string()!r})"

    @classmethod
    def create(cls) -> SimCA:
        """A fresh CA held in memory."""
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hongbao simulator"),
                x509.NameAttribute(NameOID.COMMON_NAME, "hongbao simulator CA"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER)
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
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load_or_create(cls, directory: Path) -> SimCA:
        """The CA kept in `directory` (`ca.pem` + `ca-key.pem`), created there on first use."""
        cert_path, key_path = directory / _CERT_FILE, directory / _KEY_FILE
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} does not hold an EC private key")
            return cls(key, cert)
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls.create()
        # The key file is written owner-only from the start, never world-readable for a moment.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_key_pem(ca._key))
        cert_path.write_bytes(ca.ca_pem)
        return ca

    def _issue(
        self,
        subject: x509.Name,
        extensions: list[tuple[x509.ExtensionType, bool]],
        not_before: datetime,
        not_after: datetime,
    ) -> tuple[bytes, bytes]:
        key = _new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

    def issue_server_cert(self, hosts: list[str]) -> tuple[bytes, bytes]:
        """(cert_pem, key_pem) for the simulator's HTTPS server: 127.0.0.1, localhost + `hosts`."""
        names: list[x509.GeneralName] = []
        seen: set[str] = set()
        for host in ["127.0.0.1", "localhost", *hosts]:
            if host in seen:
                continue
            seen.add(host)
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        common_name = hosts[0] if hosts else "localhost"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(
            subject,
            [
                (x509.SubjectAlternativeName(names), False),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            ],
            _NOT_BEFORE,
            _NOT_AFTER,
        )

    def issue_client_cert(
        self,
        mch_id: str,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[bytes, bytes]:
        """(cert_pem, key_pem) of a merchant API certificate with CN = `mch_id`."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hongbao simulator merchant"),
                x509.NameAttribute(NameOID.COMMON_NAME, mch_id),
            ]
        )
        return self._issue(
            subject,
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
            not_before or _NOT_BEFORE,
            not_after or _NOT_AFTER,
        )

    def p12_for(self, cert_pem: bytes, key_pem: bytes, password: str | None = None) -> bytes:
        """The `apiclient_cert.p12` of a certificate; the password defaults to its CN (mch_id)."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("key_pem must hold an EC private key issued by this CA")
        cn = _common_name(cert) or ""
        secret = (password if password is not None else cn).encode("utf-8")
        return pkcs12.serialize_key_and_certificates(
            cn.encode("utf-8"),
            key,
            cert,
            None,
            serialization.BestAvailableEncryption(secret),
        )

    def _inspect(self, der: bytes) -> _Seen | None:
        with self._lock:
            seen = self._seen.get(der)
        if seen is not None:
            return seen
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return None
        try:
            cert.verify_directly_issued_by(self._cert)
            ours = True
        except (ValueError, TypeError, InvalidSignature):
            ours = False
        seen = _Seen(ours, _common_name(cert), cert.not_valid_before_utc, cert.not_valid_after_utc)
        with self._lock:
            if len(self._seen) >= _CACHE_LIMIT:
                self._seen.clear()
            self._seen[der] = seen
        return seen

    def check_client_cert(self, der: bytes | None, mch_id: str, now: datetime) -> str | None:
        """None if `der` is a valid API certificate of `mch_id` at `now`, else the CA_ERROR text."""
        if not der:
            return msg.CA_MISSING
        seen = self._inspect(der)
        if seen is None or not seen.ours:
            return msg.CA_INVALID
        if not seen.not_before <= now <= seen.not_after:
            return msg.CA_EXPIRED
        if seen.cn != mch_id:
            return msg.CA_INVALID
        return None


def _common_name(cert: x509.Certificate) -> str | None:
    attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
