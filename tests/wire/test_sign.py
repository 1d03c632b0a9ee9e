"""Signing against every test vector of docs/protocol.md §2.6, plus the rules of §2.1 as
properties."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.wire.sign import SignType, sign, string_to_sign, verify

OFFICIAL_KEY = "192006250b4c09247ec02edce69f6a2d"
KEY = "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"

V1_PARAMS = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
V1_STRING = (
    "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100"
    "&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
)

# V3 in the order of the spec's table (not sorted), amounts as ints as a client would hold them.
V3_PARAMS: dict[str, object] = {
    "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    "mch_billno": "1900000109202403150000000001",
    "mch_id": "1900000109",
    "wxappid": "wx2421b1c4370ec43b",
    "send_name": "天虹百货",
    "re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
    "total_amount": 1000,
    "total_num": 1,
    "wishing": "感谢您参加猜灯谜活动，祝您元宵节快乐！",
    "client_ip": "192.168.0.1",
    "act_name": "猜灯谜抢红包活动",
    "remark": "猜越多得越多，快来抢！",
    "scene_id": "PRODUCT_2",
    "risk_info": (
        "posttime%3d1710489600%26clientversion%3d8.0.47%26mobile%3d86-13800138000%26deviceid%3dIOS"
    ),
}
V3_STRING = (
    "act_name=猜灯谜抢红包活动&client_ip=192.168.0.1&mch_billno=1900000109202403150000000001"
    "&mch_id=1900000109&nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
    "&re_openid=oxTWIuGaIt6gTKsQRLau2M0yL16E&remark=猜越多得越多，快来抢！"
    "&risk_info=posttime%3d1710489600%26clientversion%3d8.0.47%26mobile%3d86-13800138000"
    "%26deviceid%3dIOS&scene_id=PRODUCT_2&send_name=天虹百货&total_amount=1000&total_num=1"
    "&wishing=感谢您参加猜灯谜活动，祝您元宵节快乐！&wxappid=wx2421b1c4370ec43b"
    "&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"
)

# V4–V8 as the spec prints them: the string to sign and the expected signature. Their
# parameters are read back from the string (no value contains a raw "&" or "=" before "=").
STRING_VECTORS = {
    "V4 sendgroupredpack": (
        "act_name=Spring Promo&amt_type=ALL_RAND&mch_billno=1900000109202403150000000002"
        "&mch_id=1900000109&nonce_str=8A3F0C2E9B7D41E6A5C3F1B0D2E4A6C8"
        "&re_openid=oxTWIuGaIt6gTKsQRLau2M0yL16E&remark=Share with friends&send_name=Acme Store"
        "&total_amount=900&total_num=3&wishing=Happy New Year&wxappid=wx2421b1c4370ec43b"
        "&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J",
        "C3543B384BBA1C0469AB13893C3D2DAA",
    ),
    "V5 gethbinfo": (
        "appid=wx2421b1c4370ec43b&bill_type=MCHT&mch_billno=1900000109202403150000000001"
        "&mch_id=1900000109&nonce_str=a9f3c1e5b7d2&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J",
        "5FD0E8D21DDCC406CABDAD834BAC415E",
    ),
    "V6 sendminiprogramhb": (
        "act_name=Mini Promo&mch_billno=1900000109202403150000000003&mch_id=1900000109"
        "&nonce_str=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e&notify_way=MINI_PROGRAM_JSAPI"
        "&re_openid=oeDV3t7xy1IkfYFzgOsCZvdRjb45&remark=Enjoy&send_name=Acme Store"
        "&total_amount=100&total_num=1&wishing=Thanks&wxappid=wxd678efh567hg6787"
        "&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J",
        "B01A04E53B967599A0CCC358C7DC7CEE",
    ),
    "V7 paySign": (
        "appId=wxd27ebc41b85ce36d&nonceStr=Ww213sdad&package=sendid%3D242e8abd163d300019b2cae7"
        "4ba8e8c06e3f0e51ab84d16b3c80decd22a5b672%26ver%3D8%26sign%3D4110d649a5aef52dd6b95654ddf"
        "91ca7d5411ac159ace4e1a766b7d3967a1c3dfe1d256811445a4abda2d9cfa4a9b377a829258bd00d90313c"
        "6c346f2349fe5d%26mchid%3D11475856%26appid%3Dwxd27ebc41b85ce36d&timeStamp=1514363815"
        "&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J",
        "77D706B7A2B4441283AA9F0D66216FF5",
    ),
    "V8 getsignkey": (
        "mch_id=1900000109&nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS"
        "&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J",
        "30BD18ABC4B9BC892E81EE8E85B34C13",
    ),
}

V9_COMMON = {"nonce_str": "50780e0cca98c8c8e814883e5caa672e", "mch_id": "10000100"}
V9_SENDREDPACK: dict[str, object] = {
    **V9_COMMON,
    "wxappid": "wx2421b1c4370ec43b",
    "mch_billno": "0010010404201411170000046545",
    "send_name": "send_name",
    "re_openid": "onqOjjmM1tad-3ROpncN-yUfa6uI",
    "total_amount": 200,
    "total_num": 1,
    "wishing": "恭喜发财",
    "client_ip": "127.0.0.1",
    "act_name": "新年红包",
    "remark": "新年红包",
    "scene_id": "PRODUCT_2",
    "risk_info": (
        "posttime%3d123123412%26clientversion%3d234134%26mobile%3d122344545%26deviceid%3dIOS"
    ),
}
V9_VECTORS: dict[str, tuple[dict[str, object], str]] = {
    "sendredpack": (V9_SENDREDPACK, "CAE645705D54BA78424107C6048E45B8"),
    "sendgroupredpack": (
        {
            **{k: v for k, v in V9_SENDREDPACK.items() if k != "client_ip"},
            "total_amount": 600,
            "total_num": 3,
            "amt_type": "ALL_RAND",
        },
        "A7E8609BDC147326E8EE82BD031EBA3D",
    ),
    "sendminiprogramhb": (
        {
            **V9_COMMON,
            "wxappid": "wx2421b1c4370ec43b",
            "mch_billno": "2334580734271081478888000026",
            "send_name": "miniprogramtest",
            "re_openid": "oeDV3t7xy1IkfYFzgOsCZvdRjb45",
            "total_amount": 100,
            "total_num": 1,
            "wishing": "wishing",
            "act_name": "act_name",
            "remark": "remark",
            "notify_way": "MINI_PROGRAM_JSAPI",
        },
        "A3F75B94BB93591BA9065556F70855FA",
    ),
    "gethbinfo": (
        {
            **V9_COMMON,
            "appid": "wx2421b1c4370ec43b",
            "mch_billno": "9010080799701411170000046603",
            "bill_type": "MCHT",
        },
        "B52930D6136EA0B5A40F5692EA47DE08",
    ),
}


def _params_of(string: str) -> dict[str, str]:
    pairs = [pair.split("=", 1) for pair in string.split("&")]
    return {name: value for name, value in pairs if name != "key"}


def test_v1_official_md5() -> None:
    assert string_to_sign(V1_PARAMS, OFFICIAL_KEY) == V1_STRING
    assert sign(V1_PARAMS, OFFICIAL_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_v2_official_hmac_sha256_signs_the_string_including_the_key() -> None:
    without_key = V1_STRING.rsplit("&key=", 1)[0].encode()
    wrong = hmac.new(OFFICIAL_KEY.encode(), without_key, hashlib.sha256).hexdigest().upper()

    signature = sign(V1_PARAMS, OFFICIAL_KEY, "HMAC-SHA256")

    assert signature == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    assert wrong == "F734F0E6B3509F9701F4A27CA72985EE10313DD0F96B71CAB42985D0F4F56376"
    assert signature != wrong


def test_v3_sendredpack_sorts_names_and_keeps_values_raw() -> None:
    assert string_to_sign(V3_PARAMS, KEY) == V3_STRING
    assert sign(V3_PARAMS, KEY) == "B84CAAD3B6FBFAAF341AE6482694309A"
    assert sign(V3_PARAMS, KEY, "HMAC-SHA256") == (
        "C554F278F2F7203DFA5DDAE18681D1FD776708A7A97551542D657264D5D8FBD2"
    )


@pytest.mark.parametrize(("string", "expected"), STRING_VECTORS.values(), ids=STRING_VECTORS)
def test_v4_to_v8(string: str, expected: str) -> None:
    params = _params_of(string)

    assert string_to_sign(params, KEY) == string
    assert sign(params, KEY) == expected
    assert verify(params, KEY, signature=expected.lower())


@pytest.mark.parametrize(("params", "expected"), V9_VECTORS.values(), ids=V9_VECTORS)
def test_v9_third_party_cross_checks(params: dict[str, object], expected: str) -> None:
    assert sign(params, OFFICIAL_KEY) == expected


def test_empty_and_missing_values_and_sign_itself_take_no_part() -> None:
    noisy = {**V1_PARAMS, "sign": "ANYTHING", "attach": "", "detail": None}

    assert string_to_sign(noisy, OFFICIAL_KEY) == V1_STRING
    assert sign(noisy, OFFICIAL_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_int_and_decimal_string_sign_alike() -> None:
    as_strings = {name: str(value) for name, value in V3_PARAMS.items()}

    assert sign(as_strings, KEY) == sign(V3_PARAMS, KEY)


def test_unknown_sign_type_is_refused() -> None:
    with pytest.raises(ValueError, match="sign_type"):
        sign(V1_PARAMS, OFFICIAL_KEY, "SHA1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("signature", "sign_type"),
    [
        ("9A0A8659F005D6984697E2CA0A9CF3B7", "MD5"),
        ("9a0a8659f005d6984697e2ca0a9cf3b7", "MD5"),
        ("6a9ae1657590fd6257d693a078e1c3e4bb6ba4dc30b23e0ee2496e54170dacd6", "HMAC-SHA256"),
    ],
)
def test_verify_accepts_the_right_signature_in_any_case(
    signature: str, sign_type: SignType
) -> None:
    assert verify({**V1_PARAMS, "sign": signature}, OFFICIAL_KEY, sign_type)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({**V1_PARAMS, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7", "body": "tesT"}, OFFICIAL_KEY),
        ({**V1_PARAMS, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7", "extra": "x"}, OFFICIAL_KEY),
        ({**V1_PARAMS, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}, KEY),
        ({**V1_PARAMS, "sign": "9A0A8659F005D6984697E2CA0A9CF3B"}, OFFICIAL_KEY),
        ({**V1_PARAMS, "sign": "签名"}, OFFICIAL_KEY),
        ({**V1_PARAMS, "sign": ""}, OFFICIAL_KEY),
        (V1_PARAMS, OFFICIAL_KEY),
    ],
    ids=["changed value", "unknown field", "wrong key", "short", "non-ascii", "empty", "absent"],
)
def test_verify_refuses(params: dict[str, str], key: str) -> None:
    assert not verify(params, key)


@pytest.mark.parametrize(
    "given",
    [b"9A0A8659F005D6984697E2CA0A9CF3B7", 0x9A0A, ["9A0A8659F005D6984697E2CA0A9CF3B7"], None],
    ids=["bytes", "int", "list", "None"],
)
def test_verify_refuses_a_sign_that_is_not_a_string_rather_than_raising(given: object) -> None:
    # Whatever a parser hands over, a bad answer is a failed check, never a crash mid-call.
    assert verify({**V1_PARAMS, "sign": given}, OFFICIAL_KEY) is False


def test_verify_with_the_wrong_algorithm_fails() -> None:
    md5_signed = {**V1_PARAMS, "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}

    assert not verify(md5_signed, OFFICIAL_KEY, "HMAC-SHA256")


NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
names = st.text(NAME_ALPHABET, min_size=1, max_size=12).filter(lambda name: name != "sign")
values = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
param_sets = st.dictionaries(names, values, min_size=1, max_size=8)
keys = st.text(NAME_ALPHABET, min_size=32, max_size=32)
sign_types = st.sampled_from(["MD5", "HMAC-SHA256"])


@given(param_sets, keys, sign_types)
def test_property_a_signed_set_verifies(
    params: dict[str, str], key: str, sign_type: SignType
) -> None:
    assert verify({**params, "sign": sign(params, key, sign_type)}, key, sign_type)


@given(param_sets.filter(lambda params: any(params.values())), keys, sign_types, st.data())
def test_property_changing_any_non_empty_value_breaks_the_signature(
    params: dict[str, str], key: str, sign_type: SignType, data: st.DataObject
) -> None:
    signed = {**params, "sign": sign(params, key, sign_type)}
    name = data.draw(st.sampled_from(sorted(name for name, value in params.items() if value)))
    new_value = data.draw(values.filter(lambda value: value != params[name]))

    assert not verify({**signed, name: new_value}, key, sign_type)
