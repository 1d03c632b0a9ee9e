"""The simulator's CA: merchant certificates, p12 files, the server certificate, CA_ERROR texts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from cryptography.x509.oid import NameOID

from hongbao.sim.ca import SimCA, der_of

NOW = datetime(2024, 3, 15, 2, 0, tzinfo=UTC)


def test_client_certificate_is_issued_to_the_mch_id_and_accepted() -> None:
    ca = SimCA.create()
    cert_pem, _ = ca.issue_client_cert("1900000109")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "1900000109"
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_pem))
    assert ca.check_client_cert(der_of(cert_pem), "1900000109", NOW) is None


def test_each_way_a_certificate_can_be_wrong_has_its_text() -> None:
    ca = SimCA.create()
    mine, _ = ca.issue_client_cert("1900000109")
    foreign, _ = SimCA.create().issue_client_cert("1900000109")
    expired, _ = ca.issue_client_cert(
        "1900000109", not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=NOW.replace(day=1)
    )
    assert (
        ca.check_client_cert(None, "1900000109", NOW)
        == "CA证书出错，请登录微信支付商户平台下载证书"
    )
    assert ca.check_client_cert(der_of(foreign), "1900000109", NOW) == "商户API证书校验出错"
    assert ca.check_client_cert(b"garbage", "1900000109", NOW) == "商户API证书校验出错"
    assert ca.check_client_cert(der_of(expired), "1900000109", NOW) == "证书已过期"
    assert ca.check_client_cert(der_of(mine), "1900000110", NOW) == "商户API证书校验出错"


def test_validity_is_judged_at_the_given_time() -> None:
    ca = SimCA.create()
    cert, _ = ca.issue_client_cert(
        "1900000109",
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 12, 31, tzinfo=UTC),
    )
    assert ca.check_client_cert(der_of(cert), "1900000109", NOW) is None
    later = datetime(2025, 1, 1, tzinfo=UTC)
    assert ca.check_client_cert(der_of(cert), "1900000109", later) == "证书已过期"


def test_p12_opens_with_the_mch_id_as_password() -> None:
    ca = SimCA.create()
    cert_pem, key_pem = ca.issue_client_cert("1900000109")
    key, cert, _ = pkcs12.load_key_and_certificates(ca.p12_for(cert_pem, key_pem), b"1900000109")
    assert cert is not None
    assert key is not None
    assert cert.public_bytes(Encoding.DER) == der_of(cert_pem)


def test_server_certificate_names_loopback_and_the_given_hosts() -> None:
    ca = SimCA.create()
    cert_pem, _ = ca.issue_server_cert(["sim.example"])
    san = (
        x509.load_pem_x509_certificate(cert_pem)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "sim.example"}
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_load_or_create_keeps_the_same_ca(tmp_path: Path) -> None:
    first = SimCA.load_or_create(tmp_path)
    cert, _ = first.issue_client_cert("1900000109")
    second = SimCA.load_or_create(tmp_path)
    assert second.ca_pem == first.ca_pem == (tmp_path / "ca.pem").read_bytes()
    assert second.check_client_cert(der_of(cert), "1900000109", NOW) is None
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
