"""What the ledger accepts as a payout's frozen send parameters (pure: no database)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest

from hongbao.ids import BillNoError
from hongbao.ledger.records import freeze_params
from hongbao.ledger.rows import to_json

PARAMS: dict[str, Any] = {
    "mch_billno": "1900000109202611270000000001",
    "mch_id": "1900000109",
    "wxappid": "wx2421b1c4370ec43b",
    "send_name": "商户",
    "re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
    "total_amount": 100,
    "total_num": 1,
    "wishing": "Happy New Year",
    "client_ip": "192.168.0.1",
    "act_name": "Spring",
    "remark": "Thanks",
    "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
}


def test_a_good_set_is_copied_in_its_order() -> None:
    frozen = freeze_params(PARAMS)
    assert frozen == PARAMS
    assert list(frozen) == list(PARAMS)
    assert frozen is not PARAMS


@pytest.mark.parametrize("name", ["sign", "key", "api_key", "paySign", "secret", "wecom_secret"])
def test_a_signature_or_key_is_never_stored(name: str) -> None:
    with pytest.raises(ValueError, match=f"must not contain \\['{name}'\\]"):
        freeze_params({**PARAMS, name: "x"})


@pytest.mark.parametrize(
    "name", ["mch_id", "mch_billno", "re_openid", "total_amount", "total_num", "nonce_str"]
)
@pytest.mark.parametrize("gone", [None, "", "absent"])
def test_every_key_field_is_required(name: str, gone: str | None) -> None:
    params = {k: v for k, v in PARAMS.items() if k != name}
    if gone != "absent":
        params[name] = gone
    elif name == "total_num":
        # A WeCom packet (sendworkwxredpack) has no total_num: it is one packet.
        assert freeze_params(params) == params
        return
    with pytest.raises(ValueError, match=f"lack \\['{name}'\\]"):
        freeze_params(params)


def test_a_wecom_packet_keeps_its_workwx_sign() -> None:
    params = {k: v for k, v in PARAMS.items() if k not in ("total_num", "send_name")}
    params["workwx_sign"] = "5D6809139B3D35A0985CBB5A9F0155B8"
    assert freeze_params(params)["workwx_sign"] == "5D6809139B3D35A0985CBB5A9F0155B8"


@pytest.mark.parametrize("value", [True, 1.5, b"bytes", None, ["list"]])
def test_a_value_must_be_str_or_int(value: object) -> None:
    with pytest.raises(ValueError, match="parameter scene_id must be str or int, not"):
        freeze_params({**PARAMS, "scene_id": value})


def test_a_str_enum_is_a_str() -> None:
    class Scene(StrEnum):
        PRODUCT_1 = "PRODUCT_1"

    assert freeze_params({**PARAMS, "scene_id": Scene.PRODUCT_1})["scene_id"] == "PRODUCT_1"


@pytest.mark.parametrize("name", ["total_amount", "total_num"])
def test_counts_and_amounts_are_positive(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be positive"):
        freeze_params({**PARAMS, name: 0})


def test_the_bill_number_is_checked() -> None:
    with pytest.raises(BillNoError, match="only letters and digits"):
        freeze_params({**PARAMS, "mch_billno": "1900000109-20261127"})


def test_stored_json_is_compact_ordered_and_keeps_chinese() -> None:
    text = to_json(freeze_params(PARAMS))
    assert text is not None
    assert text.startswith('{"mch_billno":"1900000109202611270000000001","mch_id":')
    assert '"send_name":"商户"' in text
    assert " " not in text.replace("Happy New Year", "")
    assert to_json(None) is None
