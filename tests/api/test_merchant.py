"""`Merchant`: what a valid configuration is, and that the API key never shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import load_pem_x509_certificate
from pydantic import SecretStr

from hongbao.api.merchant import DEFAULT_CLIENT_IP, Merchant
from hongbao.errors import ConfigurationError
from tests.api.apikit import KEY, MCH_ID, merchant


@pytest.fixture(scope="module")
def issued() -> trustme.LeafCert:
    return trustme.CA().issue_cert("merchant.invalid", common_name=MCH_ID)


def test_a_plain_string_key_is_wrapped_and_hidden() -> None:
    configured = Merchant(mch_id=MCH_ID, api_key=KEY)  # type: ignore[arg-type]
    assert isinstance(configured.api_key, SecretStr)
    assert configured.api_key.get_secret_value() == KEY
    assert KEY not in repr(configured)
    assert configured.client_ip == DEFAULT_CLIENT_IP


@pytest.mark.parametrize("key", ["short", KEY + "x", KEY[:-1] + " "])
def test_the_key_must_be_32_printable_characters_and_is_never_echoed(key: str) -> None:
    with pytest.raises(ConfigurationError, match="32-character APIv2 key") as caught:
        Merchant(mch_id=MCH_ID, api_key=SecretStr(key))
    assert key not in str(caught.value)


@pytest.mark.parametrize("mch_id", ["", "19000001O9", "1900000109 "])
def test_mch_id_must_be_digits(mch_id: str) -> None:
    with pytest.raises(ConfigurationError, match="must be the merchant number"):
        Merchant(mch_id=mch_id, api_key=SecretStr(KEY))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"client_ip": "localhost"}, "client_ip 'localhost' is not an IPv4 address"),
        ({"appid": " wx1"}, "appid must not begin or end with whitespace"),
        ({"sub_mch_id": "1900000110"}, "SP mode needs both sub_mch_id and msgappid"),
        ({"consume_mch_id": "1900000111"}, "consume_mch_id is only meaningful in SP mode"),
        ({"base_url": "http://api.mch.weixin.qq.com"}, "base_url 'http://api"),
        ({"backup_url": "http://api2.mch.weixin.qq.com"}, "backup_url 'http://api2"),
    ],
)
def test_an_impossible_configuration_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        merchant(**changes)


def test_from_pem_files(tmp_path: Path, issued: trustme.LeafCert) -> None:
    cert, key = tmp_path / "apiclient_cert.pem", tmp_path / "apiclient_key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    configured = Merchant.from_pem_files(cert, key, mch_id=MCH_ID, api_key=KEY, appid="wx1")
    assert configured.certificate is not None
    assert configured.certificate.subject_common_name() == MCH_ID
    assert configured.appid == "wx1"


def test_from_p12_uses_the_mch_id_as_default_password(issued: trustme.LeafCert) -> None:
    p12 = pkcs12.serialize_key_and_certificates(
        b"apiclient",
        serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None),  # type: ignore[arg-type]
        load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()),
        None,
        serialization.BestAvailableEncryption(MCH_ID.encode()),
    )
    configured = Merchant.from_p12(p12, mch_id=MCH_ID, api_key=SecretStr(KEY))
    assert configured.certificate is not None
    assert configured.certificate.subject_common_name() == MCH_ID
    with pytest.raises(ConfigurationError, match="wrong password"):
        Merchant.from_p12(p12, mch_id=MCH_ID, api_key=KEY, password="not-it")
