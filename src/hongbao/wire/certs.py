"""The merchant API certificate (docs/protocol.md §1.6) and the TLS context that presents it.

WeChat hands merchants `apiclient_cert.p12` (password: the mch_id) and/or the PEM pair
`apiclient_cert.pem` + `apiclient_key.pem`. Both load into one `ClientCertificate`, which keeps
the certificate and an unencrypted key in memory only and never shows the key.

>>> cert = ClientCertificate.from_p12("apiclient_cert.p12", password="1900000109")  # doctest: +SKIP
>>> context = make_ssl_context(cert, ca_bundle=None)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import secrets
import ssl
import tempfile
from dataclasses import InitVar, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from hongbao.errors import ConfigurationError

__all__ = ["ClientCertificate", "make_ssl_context"]

_PUBLIC_DER = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate (PEM, leaf first, chain may follow) and its unencrypted PEM key.

    Constructing one checks that both parse and that the key belongs to the certificate.
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    _loaded_key: InitVar[PrivateKeyTypes | None] = None
    """`key_pem`'s key, when the caller has just loaded (and so validated) it: not loaded again.
    An RSA key's validation is tens of milliseconds of every start."""
    _der: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self, _loaded_key: PrivateKeyTypes | None) -> None:
        certificates = _load_certificates(self.cert_pem, "the certificate PEM")
        key = _load_key(self.key_pem, None, "the key PEM") if _loaded_key is None else _loaded_key
        _check_pair(certificates[0], key, "the certificate PEM")
        object.__setattr__(self, "_der", certificates[0].public_bytes(serialization.Encoding.DER))

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> ClientCertificate:
        """From PEM bytes; the key (PKCS#1 or PKCS#8, unencrypted) is normalised to PKCS#8.

        >>> ClientCertificate.from_pem(cert_pem, key_pem)  # doctest: +SKIP
        """
        certificates = _load_certificates(cert_pem, "the certificate PEM")
        return _build(certificates, _load_key(key_pem, None, "the key PEM"), "the certificate PEM")

    @classmethod
    def from_pem_files(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        key_password: str | None = None,
    ) -> ClientCertificate:
        """From `apiclient_cert.pem` + `apiclient_key.pem` (`key_password` if the key is encrypted).

        >>> ClientCertificate.from_pem_files(
        ...     "apiclient_cert.pem", "apiclient_key.pem"
        ... )  # doctest: +SKIP
        """
        certificates = _load_certificates(_read(cert_path), f"certificate file {cert_path}")
        key = _load_key(_read(key_path), key_password, f"key file {key_path}")
        return _build(certificates, key, f"certificate file {cert_path}")

    @classmethod
    def from_p12(
        cls, data_or_path: bytes | str | os.PathLike[str], password: str
    ) -> ClientCertificate:
        """From a PKCS#12 file (path) or its bytes; WeChat's password is the merchant's mch_id.

        >>> ClientCertificate.from_p12("apiclient_cert.p12", "1900000109")  # doctest: +SKIP
        """
        if isinstance(data_or_path, bytes):
            data, source = data_or_path, "the PKCS#12 data"
        else:
            data, source = _read(data_or_path), f"PKCS#12 file {data_or_path}"
        try:
            key, leaf, extra = pkcs12.load_key_and_certificates(data, password.encode("utf-8"))
        except ValueError:
            # cryptography cannot tell a wrong password from a cipher it cannot read. It reads
            # the legacy RC2-40 files WeChat used to issue, but an OpenSSL build without the
            # legacy provider does not, hence the hint.
            raise ConfigurationError(
                f"cannot open {source}: wrong password (WeChat's is the mch_id) or an "
                "unsupported legacy cipher; if the password is right, convert it with "
                "`openssl pkcs12 -legacy -in apiclient_cert.p12 -nodes -out both.pem` and load "
                "the PEM instead"
            ) from None
        if key is None or leaf is None:
            raise ConfigurationError(f"{source} must hold both a certificate and its private key")
        return _build([leaf, *extra], key, source)

    @property
    def der(self) -> bytes:
        """The leaf certificate in DER, as a server sees it."""
        return self._der

    def fingerprint_sha256(self) -> str:
        """Lowercase hex SHA-256 of the DER leaf certificate."""
        return hashlib.sha256(self._der).hexdigest()

    def subject_common_name(self) -> str | None:
        """The subject CN of the leaf certificate (WeChat puts the mch_id there), if any."""
        names = x509.load_der_x509_certificate(self._der).subject
        values = names.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(values[0].value) if values else None

    def __repr__(self) -> str:
        cn = self.subject_common_name()
        return f"ClientCertificate(cn={cn!r}, sha256={self.fingerprint_sha256()[:16]}…)"


def make_ssl_context(
    certificate: ClientCertificate | None, ca_bundle: str | os.PathLike[str] | None
) -> ssl.SSLContext:
    """A client TLS context: server verified (always), client certificate presented if given.

    `ca_bundle` (file or directory) is then the only trust: environment variables such as
    SSL_CERT_FILE or REQUESTS_CA_BUNDLE never replace or extend it. Without it, the system
    store is used (OpenSSL's default paths, which SSL_CERT_FILE / SSL_CERT_DIR may point
    elsewhere, as for every OpenSSL program).

    >>> context = make_ssl_context(None, ca_bundle=None)
    >>> context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    True
    """
    # PROTOCOL_TLS_CLIENT starts with CERT_REQUIRED and check_hostname on, and no trust at all.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _load_ca_bundle(context, ca_bundle)
    if certificate is not None:
        _load_certificate(context, certificate)
    return context


def _load_ca_bundle(context: ssl.SSLContext, ca_bundle: str | os.PathLike[str]) -> None:
    path = Path(ca_bundle)
    try:
        if path.is_dir():
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load CA bundle {path}: {exc}") from exc


def _load_certificate(context: ssl.SSLContext, certificate: ClientCertificate) -> None:
    # ssl can only load a key from a file. The file lives in a fresh directory that only this
    # user can enter (mkdtemp: 0700), is created 0600, holds the key encrypted under a one-time
    # random password that exists only in this process's memory, and is deleted as soon as
    # OpenSSL has read it. A crash in between leaves nothing usable on disk.
    password = secrets.token_hex(32)
    # The key was validated when the certificate was made; an RSA key's check is not cheap.
    key = serialization.load_pem_private_key(
        certificate.key_pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode("ascii")),
    )
    with tempfile.TemporaryDirectory(prefix="hongbao-cert-") as directory:
        cert_file = Path(directory, "cert.pem")
        key_file = Path(directory, "key.pem")
        _write_private(cert_file, certificate.cert_pem)
        _write_private(key_file, encrypted)
        try:
            context.load_cert_chain(cert_file, key_file, password=password)
        except ssl.SSLError as exc:
            raise ConfigurationError(f"TLS refused the client certificate: {exc}") from exc


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _load_certificates(data: bytes, source: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ConfigurationError(f"{source} holds no PEM certificate")
    return certificates


def _load_key(data: bytes, password: str | None, source: str) -> PrivateKeyTypes:
    secret = password.encode("utf-8") if password is not None else None
    try:
        return serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        # Raised for an encrypted key without a password, or a password for a plain key.
        hint = (
            "is encrypted: give its password (from_pem_files takes key_password)"
            if password is None
            else "is not encrypted, yet a password was given"
        )
        raise ConfigurationError(f"{source} {hint}") from None
    except ValueError:
        raise ConfigurationError(
            f"cannot load the private key from {source}: wrong password or not a PEM key"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise ConfigurationError(f"cannot load the private key from {source}: {exc}") from None


def _check_pair(leaf: x509.Certificate, key: PrivateKeyTypes, source: str) -> None:
    if leaf.public_key().public_bytes(*_PUBLIC_DER) != key.public_key().public_bytes(*_PUBLIC_DER):
        raise ConfigurationError(f"the private key does not belong to the certificate in {source}")


def _build(
    certificates: list[x509.Certificate], key: PrivateKeyTypes, source: str
) -> ClientCertificate:
    _check_pair(certificates[0], key, source)
    cert_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ClientCertificate(cert_pem, key_pem, key)
