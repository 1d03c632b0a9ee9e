"""Payment notifications: only a genuine, unaltered one for this merchant becomes a Payment."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from hongbao.clock import CST
from hongbao.engine.notify_verify import (
    SUCCESS_REPLY,
    NotificationError,
    Rejection,
    fail_reply,
    verify_notification,
)
from hongbao.wire import xmlcodec
from hongbao.wire.sign import SignType, sign

KEY = "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"
OTHER_KEY = "0" * 32
MCH_ID = "1900000109"


def _fields(**changes: str | int) -> dict[str, str | int]:
    fields: dict[str, str | int] = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": "wx2421b1c4370ec43b",
        "mch_id": MCH_ID,
        "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
        "result_code": "SUCCESS",
        "openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
        "is_subscribe": "Y",
        "trade_type": "JSAPI",
        "bank_type": "CMC",
        "total_fee": 10000,
        "fee_type": "CNY",
        "cash_fee": 10000,
        "transaction_id": "42000012345202403151234567890123",
        "out_trade_no": "1415659990",
        "attach": "spring",
        "time_end": "20240315120000",
    }
    fields.update(changes)
    return fields


def _body(
    fields: dict[str, str | int],
    *,
    key: str = KEY,
    sign_type: SignType = "MD5",
    unsigned: dict[str, str | int] | None = None,
) -> bytes:
    signed = {**fields, "sign": sign(fields, key, sign_type)}
    return xmlcodec.dumps({**signed, **(unsigned or {})})


def _refused(body: bytes) -> NotificationError:
    with pytest.raises(NotificationError) as caught:
        verify_notification(body, mch_id=MCH_ID, api_key=KEY)
    return caught.value


def test_a_genuine_notification_gives_the_payment() -> None:
    payment = verify_notification(_body(_fields()), mch_id=MCH_ID, api_key=KEY)
    assert payment.transaction_id == "42000012345202403151234567890123"
    assert payment.total_fee == 10000
    assert payment.cash_fee == 10000
    assert payment.openid == "oxTWIuGaIt6gTKsQRLau2M0yL16E"
    assert payment.attach == "spring"
    assert payment.time_end == datetime(2024, 3, 15, 12, tzinfo=CST)
    assert payment.fields["is_subscribe"] == "Y"
    assert "sign" not in payment.fields


def test_the_key_may_be_a_secret_str() -> None:
    payment = verify_notification(_body(_fields()), mch_id=MCH_ID, api_key=SecretStr(KEY))
    assert payment.mch_id == MCH_ID


def test_a_notification_signed_with_another_key_is_refused() -> None:
    error = _refused(_body(_fields(), key=OTHER_KEY))
    assert error.rejection is Rejection.SIGNATURE
    assert "does not verify" in str(error)


def test_a_total_fee_altered_after_signing_is_refused() -> None:
    body = _body(_fields()).replace(b"<total_fee>10000<", b"<total_fee>1000000<")
    assert b"1000000" in body
    assert _refused(body).rejection is Rejection.SIGNATURE


def test_an_unknown_field_takes_part_in_the_signature() -> None:
    signed_with_extra = _body(_fields(promotion_detail="new field WeChat added"))
    payment = verify_notification(signed_with_extra, mch_id=MCH_ID, api_key=KEY)
    assert payment.fields["promotion_detail"] == "new field WeChat added"
    # The same field slipped in after signing breaks it: every received field counts.
    smuggled = _body(_fields(), unsigned={"promotion_detail": "added later"})
    assert _refused(smuggled).rejection is Rejection.SIGNATURE


def test_empty_fields_do_not_take_part_in_the_signature() -> None:
    fields = _fields()
    body = _body(fields).replace(b"</xml>", b"<device_info></device_info></xml>")
    assert verify_notification(body, mch_id=MCH_ID, api_key=KEY).fields["device_info"] == ""


def test_an_hmac_sha256_notification_verifies() -> None:
    fields = _fields(sign_type="HMAC-SHA256")
    payment = verify_notification(
        _body(fields, sign_type="HMAC-SHA256"), mch_id=MCH_ID, api_key=KEY
    )
    assert payment.total_fee == 10000
    # Signed with HMAC but claiming MD5 (no sign_type), or the other way round: refused.
    assert _refused(_body(_fields(), sign_type="HMAC-SHA256")).rejection is Rejection.SIGNATURE
    assert _refused(_body(fields, sign_type="MD5")).rejection is Rejection.SIGNATURE
    assert _refused(_body(fields, key=OTHER_KEY, sign_type="HMAC-SHA256")).rejection is (
        Rejection.SIGNATURE
    )


def test_an_explicit_md5_sign_type_verifies() -> None:
    payment = verify_notification(_body(_fields(sign_type="MD5")), mch_id=MCH_ID, api_key=KEY)
    assert payment.cash_fee == 10000


def test_an_unknown_sign_type_is_refused() -> None:
    error = _refused(_body(_fields(sign_type="SHA1")))
    assert error.rejection is Rejection.SIGN_TYPE
    assert "SHA1" in str(error)


def test_coupon_fields_are_signed_and_kept() -> None:
    coupons: dict[str, str | int] = {
        "coupon_fee": 500,
        "coupon_count": 2,
        "coupon_type_0": "CASH",
        "coupon_id_0": "10000",
        "coupon_fee_0": 300,
        "coupon_type_1": "NO_CASH",
        "coupon_id_1": "10001",
        "coupon_fee_1": 200,
        "settlement_total_fee": 9800,
    }
    body = _body(_fields(cash_fee=9500, **coupons))
    payment = verify_notification(body, mch_id=MCH_ID, api_key=KEY)
    assert payment.total_fee == 10000
    assert payment.cash_fee == 9500
    assert payment.fields["coupon_id_1"] == "10001"
    assert payment.fields["coupon_fee_0"] == "300"
    tampered = body.replace(b"<coupon_fee_1>200<", b"<coupon_fee_1>100<")
    assert _refused(tampered).rejection is Rejection.SIGNATURE


def test_a_missing_signature_is_refused() -> None:
    error = _refused(xmlcodec.dumps(_fields()))
    assert error.rejection is Rejection.SIGNATURE
    assert "missing" in str(error)


def test_a_notification_for_another_merchant_is_refused() -> None:
    # Same key, other mch_id: a merchant must not act on another's payments.
    error = _refused(_body(_fields(mch_id="1900000999")))
    assert error.rejection is Rejection.MERCHANT
    assert "1900000999" in str(error)


def test_a_communication_failure_is_not_a_payment() -> None:
    body = xmlcodec.dumps({"return_code": "FAIL", "return_msg": "签名失败"})
    assert _refused(body).rejection is Rejection.NOT_SUCCESS


def test_a_failed_payment_is_verified_and_reported_as_such() -> None:
    payment = verify_notification(
        _body(_fields(result_code="FAIL", err_code="ORDERNOTEXIST")), mch_id=MCH_ID, api_key=KEY
    )
    assert payment.result_code == "FAIL"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"openid": ""}, "missing field(s) openid"),
        ({"total_fee": "12.50"}, "total_fee '12.50' is not a whole number of fen"),
        ({"cash_fee": "abc"}, "cash_fee 'abc' is not a whole number of fen"),
        ({"time_end": "2024-03-15"}, "time_end"),
    ],
)
def test_a_signed_notification_with_bad_fields_is_refused(
    changes: dict[str, str], problem: str
) -> None:
    error = _refused(_body(_fields(**changes)))
    assert error.rejection is Rejection.FIELDS
    assert problem in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<root><a>1</a></root>",
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e "x">]><xml><a>&e;</a></xml>',
        b"<xml><hblist><hbinfo><a>1</a></hbinfo></hblist></xml>",
    ],
)
def test_malformed_or_unsafe_bodies_are_refused(body: bytes) -> None:
    assert _refused(body).rejection is Rejection.MALFORMED


def test_replies_are_the_documented_xml() -> None:
    assert SUCCESS_REPLY == (
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
        b"<return_msg><![CDATA[OK]]></return_msg></xml>"
    )
    assert (
        fail_reply("签名失败")
        == (
            "<xml><return_code><![CDATA[FAIL]]></return_code>"
            "<return_msg><![CDATA[签名失败]]></return_msg></xml>"
        ).encode()
    )


def test_a_refusal_replies_fail_without_any_secret() -> None:
    body = _body(_fields(), key=OTHER_KEY)
    error = _refused(body)
    reply = xmlcodec.loads(error.reply)
    assert reply["return_code"] == "FAIL"
    assert "signature" in str(reply["return_msg"])
    given_sign = str(xmlcodec.loads(body)["sign"])
    for text in (str(error), repr(error), error.reply.decode()):
        assert KEY not in text
        assert given_sign not in text
        assert sign(_fields(), KEY) not in text


_values = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20
).filter(lambda v: v.strip() == v)


_names = st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True).filter(
    lambda name: name not in ("sign", "sign_type")
)


@given(st.dictionaries(_names, _values, max_size=6))
def test_any_extra_fields_signed_verify_and_any_change_is_caught(
    extra: dict[str, str],
) -> None:
    fields = {**extra, **_fields()}
    body = _body(fields)
    assert verify_notification(body, mch_id=MCH_ID, api_key=KEY).fields.keys() >= extra.keys()
    for name, value in extra.items():
        if name in _fields():
            continue
        changed = _body({**fields, name: value + "x"})
        # Re-signed with the right key it verifies; the original signature over it does not.
        original_sign = str(xmlcodec.loads(body)["sign"])
        forged = xmlcodec.dumps({**fields, name: value + "x", "sign": original_sign})
        assert verify_notification(changed, mch_id=MCH_ID, api_key=KEY).fields[name] == value + "x"
        assert _refused(forged).rejection is Rejection.SIGNATURE
