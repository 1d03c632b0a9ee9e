"""Loading the merchant certificate from PEM or PKCS#12, and the TLS context built from it."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from hongbao.errors import ConfigurationError
from hongbao.wire.certs import ClientCertificate, make_ssl_context
from tests.wire.tlsserver import MCH_ID, Pki

KEY_PASSWORD = "s3cret-key-pass"


def _key(pki: Pki) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pki.merchant.private_key_pem.bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _leaf(pki: Pki) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.merchant.cert_chain_pems[0].bytes())


def _p12(pki: Pki, password: str, cas: list[x509.Certificate] | None = None) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"apiclient",
        _key(pki),
        _leaf(pki),
        cas,
        serialization.BestAvailableEncryption(password.encode()),
    )


@pytest.fixture
def pem_files(pki: Pki, tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "apiclient_cert.pem", tmp_path / "apiclient_key.pem"
    cert.write_bytes(pki.merchant.cert_chain_pems[0].bytes())
    key.write_bytes(pki.merchant.private_key_pem.bytes())
    return cert, key


@pytest.fixture
def encrypted_key_file(pki: Pki, tmp_path: Path) -> Path:
    path = tmp_path / "apiclient_key.encrypted.pem"
    path.write_bytes(
        _key(pki).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return path


def test_pem_files_load(pem_files: tuple[Path, Path], pki: Pki) -> None:
    certificate = ClientCertificate.from_pem_files(*pem_files)

    assert certificate.der == _leaf(pki).public_bytes(serialization.Encoding.DER)
    assert certificate.subject_common_name() == MCH_ID
    assert certificate.fingerprint_sha256() == hashlib.sha256(certificate.der).hexdigest()


def test_encrypted_key_file_loads_with_its_password(
    pem_files: tuple[Path, Path], encrypted_key_file: Path, pki: Pki
) -> None:
    certificate = ClientCertificate.from_pem_files(pem_files[0], encrypted_key_file, KEY_PASSWORD)

    assert certificate == ClientCertificate.from_pem_files(*pem_files)
    assert b"ENCRYPTED" not in certificate.key_pem


def test_encrypted_key_without_its_password_names_the_file(
    pem_files: tuple[Path, Path], encrypted_key_file: Path
) -> None:
    with pytest.raises(ConfigurationError, match="is encrypted") as caught:
        ClientCertificate.from_pem_files(pem_files[0], encrypted_key_file)

    assert str(encrypted_key_file) in str(caught.value)


def test_wrong_key_password_names_the_file_but_not_the_password(
    pem_files: tuple[Path, Path], encrypted_key_file: Path
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ClientCertificate.from_pem_files(pem_files[0], encrypted_key_file, "wrong-password")

    assert str(encrypted_key_file) in str(caught.value)
    assert "wrong-password" not in _everything_said(caught.value)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_missing_file_is_named(pem_files: tuple[Path, Path], tmp_path: Path, which: str) -> None:
    missing = tmp_path / "nowhere.pem"
    cert, key = (missing, pem_files[1]) if which == "cert" else (pem_files[0], missing)

    with pytest.raises(ConfigurationError, match=r"nowhere\.pem"):
        ClientCertificate.from_pem_files(cert, key)


def test_unreadable_path_is_named(pem_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=str(tmp_path)):
        ClientCertificate.from_pem_files(tmp_path, pem_files[1])


def test_files_swapped_or_not_pem_are_refused(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    with pytest.raises(ConfigurationError, match="no PEM certificate"):
        ClientCertificate.from_pem_files(key, key)
    with pytest.raises(ConfigurationError, match="private key"):
        ClientCertificate.from_pem_files(cert, cert)


def test_key_of_another_certificate_is_refused(pki: Pki) -> None:
    stranger = pki.ca.issue_cert("stranger.invalid")

    with pytest.raises(ConfigurationError, match="does not belong"):
        ClientCertificate.from_pem(
            pki.merchant.cert_chain_pems[0].bytes(), stranger.private_key_pem.bytes()
        )


def test_direct_construction_checks_the_pair_too(pki: Pki) -> None:
    stranger = pki.ca.issue_cert("stranger.invalid")

    with pytest.raises(ConfigurationError, match="does not belong"):
        ClientCertificate(pki.merchant.cert_chain_pems[0].bytes(), stranger.private_key_pem.bytes())


def _inconsistent_key_pem(pki: Pki) -> bytes:
    """The merchant's RSA key with one CRT exponent wrong: it parses, yet signs wrongly."""
    numbers = _key(pki).private_numbers()
    broken = rsa.RSAPrivateNumbers(
        p=numbers.p,
        q=numbers.q,
        d=numbers.d,
        dmp1=numbers.dmp1 + 2,
        dmq1=numbers.dmq1,
        iqmp=numbers.iqmp,
        public_numbers=numbers.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    return broken.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_an_inconsistent_rsa_key_is_refused(pki: Pki, tmp_path: Path) -> None:
    cert_pem = pki.merchant.cert_chain_pems[0].bytes()
    key_file = tmp_path / "apiclient_key.pem"
    key_file.write_bytes(_inconsistent_key_pem(pki))
    cert_file = tmp_path / "apiclient_cert.pem"
    cert_file.write_bytes(cert_pem)

    with pytest.raises(ConfigurationError, match=str(key_file)):
        ClientCertificate.from_pem_files(cert_file, key_file)
    with pytest.raises(ConfigurationError, match="private key"):
        ClientCertificate(cert_pem, key_file.read_bytes())


def test_p12_from_bytes_and_from_path_with_the_mch_id_as_password(pki: Pki, tmp_path: Path) -> None:
    data = _p12(pki, MCH_ID)
    path = tmp_path / "apiclient_cert.p12"
    path.write_bytes(data)

    from_bytes = ClientCertificate.from_p12(data, MCH_ID)
    from_path = ClientCertificate.from_p12(path, MCH_ID)

    assert from_bytes == from_path
    assert from_path.subject_common_name() == MCH_ID
    assert from_path == pki.merchant_certificate


def test_p12_chain_is_kept_after_the_leaf(pki: Pki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes())

    certificate = ClientCertificate.from_p12(_p12(pki, MCH_ID, [ca]), MCH_ID)

    chain = x509.load_pem_x509_certificates(certificate.cert_pem)
    assert [c.subject for c in chain] == [_leaf(pki).subject, ca.subject]
    assert certificate.der == _leaf(pki).public_bytes(serialization.Encoding.DER)


def test_p12_with_the_wrong_password_explains_and_never_shows_it(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "apiclient_cert.p12"
    path.write_bytes(_p12(pki, MCH_ID))

    with pytest.raises(ConfigurationError) as caught:
        ClientCertificate.from_p12(path, "1900000999")

    message = str(caught.value)
    assert str(path) in message
    assert "openssl pkcs12 -legacy" in message
    assert "1900000999" not in _everything_said(caught.value)


def test_p12_without_a_key_is_refused(pki: Pki) -> None:
    data = pkcs12.serialize_key_and_certificates(
        b"apiclient", None, _leaf(pki), None, serialization.BestAvailableEncryption(b"pw")
    )

    with pytest.raises(ConfigurationError, match="both a certificate and its private key"):
        ClientCertificate.from_p12(data, "pw")


def test_legacy_rc2_p12_as_wechat_used_to_issue_loads(
    pem_files: tuple[Path, Path], tmp_path: Path
) -> None:
    # OpenSSL's -legacy export is RC2-40 for the certificate bag, 3DES for the key.
    legacy = tmp_path / "legacy.p12"
    cert, key = pem_files
    subprocess.run(
        [
            *("openssl", "pkcs12", "-export", "-legacy", "-passout", f"pass:{MCH_ID}"),
            *("-in", str(cert), "-inkey", str(key), "-out", str(legacy)),
        ],
        check=True,
        capture_output=True,
    )

    certificate = ClientCertificate.from_p12(legacy, MCH_ID)

    assert certificate.subject_common_name() == MCH_ID


def test_repr_shows_identity_but_no_key(pki: Pki) -> None:
    certificate = pki.merchant_certificate
    key_line = certificate.key_pem.decode().splitlines()[1]

    for text in (repr(certificate), str(certificate)):
        assert MCH_ID in text
        assert certificate.fingerprint_sha256()[:16] in text
        assert key_line not in text
        assert "PRIVATE" not in text


def test_context_always_verifies_the_server(pki: Pki) -> None:
    for context in (make_ssl_context(None, None), make_ssl_context(None, pki.ca_file)):
        assert context.verify_mode is ssl.VerifyMode.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_configured_bundle_is_the_only_trust_whatever_the_environment(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.other_ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.other_ca_file.parent))

    context = make_ssl_context(None, pki.ca_file)

    ca_der = x509.load_pem_x509_certificate(pki.ca.cert_pem.bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert context.get_ca_certs(binary_form=True) == [ca_der]


def test_ca_bundle_directory_is_accepted(pki: Pki, tmp_path: Path) -> None:
    # A hashed directory as `c_rehash` makes it; OpenSSL reads it lazily, so loading succeeds.
    context = make_ssl_context(None, tmp_path)

    assert context.verify_mode is ssl.VerifyMode.CERT_REQUIRED


def test_missing_or_broken_ca_bundle_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")

    for path in (tmp_path / "missing.pem", broken):
        with pytest.raises(ConfigurationError, match=path.name):
            make_ssl_context(None, path)


def test_key_reaches_ssl_only_encrypted_in_a_private_file_that_is_then_removed(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    load_cert_chain = ssl.SSLContext.load_cert_chain

    def recording(
        context: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None
    ) -> None:
        key = Path(keyfile)
        seen["dir_mode"] = stat.S_IMODE(key.parent.stat().st_mode)
        seen["key_mode"] = stat.S_IMODE(key.stat().st_mode)
        seen["key_text"] = key.read_bytes()
        load_cert_chain(context, certfile, keyfile, password)

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", recording)

    make_ssl_context(pki.merchant_certificate, pki.ca_file)

    assert (seen["dir_mode"], seen["key_mode"]) == (0o700, 0o600)
    assert seen["key_text"].startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert os.listdir(tmp_path) == []


def _everything_said(error: BaseException) -> str:
    """The message, repr and the whole chain of causes, as a log would show them."""
    parts = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)
