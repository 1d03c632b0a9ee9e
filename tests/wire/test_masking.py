"""The one secret masker: logs, the ledger's audit trail and the dashboard all go through it."""

from __future__ import annotations

import pytest

from hongbao.wire.masking import MASK, is_secret, mask


@pytest.mark.parametrize(
    "name",
    [
        "sign",
        "paySign",
        "key",
        "api_key",
        "sandbox_signkey",
        "key_password",
        "p12_password",
        "SECRET",
    ],
)
def test_signatures_keys_secrets_and_passwords_are_secret(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name", ["mch_billno", "re_openid", "nonce_str", "total_amount", "err_code"]
)
def test_the_fields_of_a_packet_are_not(name: str) -> None:
    assert not is_secret(name)


def test_secrets_are_masked_at_any_depth_and_nothing_else_changes() -> None:
    data = {
        "mch_billno": "1900000109202403150000000001",
        "sign": "B84CAAD3B6FBFAAF341AE6482694309A",
        "nested": {"api_key": "k" * 32, "amount": 100},
        "hblist": [{"openid": "o1", "paySign": "X"}, "plain"],
    }

    masked = mask(data)

    assert masked == {
        "mch_billno": "1900000109202403150000000001",
        "sign": MASK,
        "nested": {"api_key": MASK, "amount": 100},
        "hblist": [{"openid": "o1", "paySign": MASK}, "plain"],
    }
    assert data["sign"] == "B84CAAD3B6FBFAAF341AE6482694309A"  # a copy: the input is kept
