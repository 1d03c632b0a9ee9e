"""Signing against every test vector of docs/protocol.md §2.6, plus the rules of §2.1 as
properties."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.wire.sign import (
    SignType,
    sign,
    string_to_sign,
    verify,
    verify_workwx,
    workwx_sign,
    workwx_string_to_sign,
)

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


# --- WeCom red packets: docs/protocol.md §15.3, its vectors W1–W4, Q1–Q2 ----------------------

WECOM_SECRET = "9WcQe2rTy7uIo0pAs5dFg8hJk3lZx6cVb1nMq4wEr7t"

W1_PARAMS: dict[str, object] = {
    "act_name": "XXX",
    "mch_billno": "11111234567890",
    "mch_id": "10000098",
    "nonce_str": "qFKEgfig76DF9912fewmkp",
    "re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
    "total_amount": 100,
    "wxappid": "wx123456789",
}
W2_PARAMS: dict[str, object] = {
    "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    "mch_billno": "123456",
    "mch_id": "10000098",
    "wxappid": "wx8888888888888888",
    "sender_name": "XX活动",
    "sender_header_media_id": "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0",
    "re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
    "total_amount": 1000,
    "wishing": "感谢您参加猜灯谜活动，祝您元宵节快乐！",
    "act_name": "猜灯谜抢红包活动",
    "remark": "猜越多得越多，快来抢！",
}
# W3 in the order of the spec's table, the amount as an int and agentid as a client holds them.
W3_PARAMS: dict[str, object] = {
    "nonce_str": "7H3kQ9vLm2Xp5Rt8Wz1Yc4Nb6Df0Gs2J",
    "mch_billno": "1900000109202403150000000101",
    "mch_id": "1900000109",
    "wxappid": "ww8c1f9e0a3b5d7f24",
    "agentid": 1000002,
    "re_openid": "oDOGms-6yCnGrRovBj2yHij5JL6E",
    "total_amount": 8888,
    "wishing": "感谢您一年来的辛勤付出，新春快乐！",
    "act_name": "2024年会红包",
    "remark": "年会抽奖",
    "scene_id": "PRODUCT_4",
}
W3_WORKWX_STRING = (
    "act_name=2024年会红包&mch_billno=1900000109202403150000000101&mch_id=1900000109"
    "&nonce_str=7H3kQ9vLm2Xp5Rt8Wz1Yc4Nb6Df0Gs2J&re_openid=oDOGms-6yCnGrRovBj2yHij5JL6E"
    "&total_amount=8888&wxappid=ww8c1f9e0a3b5d7f24&secret=9WcQe2rTy7uIo0pAs5dFg8hJk3lZx6cVb1nMq4wEr7t"
)
W3_OUTER_STRING = (
    "act_name=2024年会红包&agentid=1000002&mch_billno=1900000109202403150000000101"
    "&mch_id=1900000109&nonce_str=7H3kQ9vLm2Xp5Rt8Wz1Yc4Nb6Df0Gs2J"
    "&re_openid=oDOGms-6yCnGrRovBj2yHij5JL6E&remark=年会抽奖&scene_id=PRODUCT_4"
    "&total_amount=8888&wishing=感谢您一年来的辛勤付出，新春快乐！"
    "&workwx_sign=5D6809139B3D35A0985CBB5A9F0155B8&wxappid=ww8c1f9e0a3b5d7f24"
    "&key=Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"
)
W4_PARAMS: dict[str, object] = {
    "nonce_str": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "mch_billno": "1900000109202403150000000102",
    "mch_id": "1900000109",
    "wxappid": "ww8c1f9e0a3b5d7f24",
    "sender_name": "HR Team",
    "sender_header_media_id": "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0",
    "re_openid": "oDOGms-6yCnGrRovBj2yHij5JL6E",
    "total_amount": 100,
    "wishing": "Thanks",
    "act_name": "Welfare",
    "remark": "Q1 bonus",
}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def _double_signed(params: dict[str, object], secret: str, key: str) -> dict[str, object]:
    signed = {**params, "workwx_sign": workwx_sign(params, secret)}
    return {**signed, "sign": sign(signed, key)}


def test_w1_workwx_sign_of_the_official_example() -> None:
    assert workwx_string_to_sign(W1_PARAMS, OFFICIAL_KEY) == (
        "act_name=XXX&mch_billno=11111234567890&mch_id=10000098&nonce_str=qFKEgfig76DF9912fewmkp"
        "&re_openid=oxTWIuGaIt6gTKsQRLau2M0yL16E&total_amount=100&wxappid=wx123456789"
        "&secret=192006250b4c09247ec02edce69f6a2d"
    )
    assert workwx_sign(W1_PARAMS, OFFICIAL_KEY) == "8B8D04AFC9FD08094CC5A0C2FA8BB60C"


def test_w2_gochat_cross_check_with_and_without_sign_type() -> None:
    assert workwx_sign(W2_PARAMS, OFFICIAL_KEY) == "FCB8624E2CED048CA15E2FF2B87C91A6"
    signed = {**W2_PARAMS, "workwx_sign": "FCB8624E2CED048CA15E2FF2B87C91A6"}
    # What hongbao sends: no sign_type.
    assert sign(signed, OFFICIAL_KEY) == "F49B5E6435F626E21918C3CBE0EFC416"
    # gochat also signs sign_type=MD5: a different digest, reproduced to pin the field set.
    assert sign({**signed, "sign_type": "MD5"}, OFFICIAL_KEY) == "62C6597C4D4EC88A9DFF1258D2A94FAA"


def test_w3_agentid_variant_both_signatures_and_their_strings() -> None:
    assert workwx_string_to_sign(W3_PARAMS, WECOM_SECRET) == W3_WORKWX_STRING
    signed = _double_signed(W3_PARAMS, WECOM_SECRET, KEY)
    assert signed["workwx_sign"] == "5D6809139B3D35A0985CBB5A9F0155B8"
    assert string_to_sign(signed, KEY) == W3_OUTER_STRING
    assert signed["sign"] == "8B3E9ED5FE7794BE226C8DA7091FF487"
    assert verify_workwx(signed, WECOM_SECRET)
    assert verify(signed, KEY)


def test_w3_without_scene_id_changes_only_the_outer_sign() -> None:
    without = {name: value for name, value in W3_PARAMS.items() if name != "scene_id"}
    signed = _double_signed(without, WECOM_SECRET, KEY)
    assert signed["workwx_sign"] == "5D6809139B3D35A0985CBB5A9F0155B8"
    assert signed["sign"] != "8B3E9ED5FE7794BE226C8DA7091FF487"


def test_w4_sender_name_variant_keeps_spaces_verbatim() -> None:
    signed = _double_signed(W4_PARAMS, WECOM_SECRET, KEY)
    assert signed["workwx_sign"] == "B50B5FBA459EB4F48D9506A54498A52E"
    assert "&remark=Q1 bonus&sender_header_media_id=" in string_to_sign(signed, KEY)
    assert signed["sign"] == "DD7F8B383B233CEB27AF90BCFC680330"


def test_q1_query_signs_appid_without_bill_type() -> None:
    params = {
        "appid": "ww8c1f9e0a3b5d7f24",
        "mch_billno": "1900000109202403150000000101",
        "mch_id": "1900000109",
        "nonce_str": "c0ffee00c0ffee00c0ffee00c0ffee00",
    }
    assert sign(params, KEY) == "E0EEB86C9D09D30DC2427FF2D0EF139C"


def test_q2_gochat_query_cross_check() -> None:
    params = {
        "appid": "wx8888888888888888",
        "mch_billno": "123456",
        "mch_id": "10000098",
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    }
    assert sign(params, OFFICIAL_KEY) == "124D7B0A14B3D98F109DF3D560190EF0"
    assert sign({**params, "sign_type": "MD5"}, OFFICIAL_KEY) == "540A546A87AF45F048E2FA55DF0398DC"


def test_a1_the_suffix_is_secret_not_key() -> None:
    assert workwx_string_to_sign({}, "exposed_your_key_here_have_risks") == (
        "secret=exposed_your_key_here_have_risks"
    )
    digest = _md5("&secret=exposed_your_key_here_have_risks").lower()
    assert digest == "7831c3ff1bde78fd0ac1107e00ac92e6"


# The spec's "typical mistakes": each digest is what the mistake gives instead of W3's; hongbao
# must never produce it, and the simulator's check must refuse it.
def test_mistake_key_instead_of_secret_is_not_the_workwx_sign() -> None:
    wrong = _md5(W3_WORKWX_STRING.replace("&secret=", "&key="))
    assert wrong == "B0099A7CE8BBD1CFBD0DB37871CC81E7"
    assert workwx_sign(W3_PARAMS, WECOM_SECRET) != wrong
    assert not verify_workwx({**W3_PARAMS, "workwx_sign": wrong}, WECOM_SECRET)


def test_mistake_all_fields_in_workwx_sign_is_refused() -> None:
    pairs = "&".join(f"{name}={W3_PARAMS[name]}" for name in sorted(W3_PARAMS))
    wrong = _md5(f"{pairs}&secret={WECOM_SECRET}")
    assert wrong == "7EFBF8A22463CF5AC808F6866D640865"
    # Extra fields given to workwx_sign are ignored: only the seven count.
    assert workwx_sign({**W3_PARAMS, "workwx_sign": "X", "sign": "Y"}, WECOM_SECRET) == (
        "5D6809139B3D35A0985CBB5A9F0155B8"
    )
    assert not verify_workwx({**W3_PARAMS, "workwx_sign": wrong}, WECOM_SECRET)


def test_mistake_lowercase_workwx_sign_is_refused() -> None:
    lower = "5d6809139b3d35a0985cbb5a9f0155b8"
    assert workwx_sign(W3_PARAMS, WECOM_SECRET) == lower.upper()
    assert not verify_workwx({**W3_PARAMS, "workwx_sign": lower}, WECOM_SECRET)


def test_mistake_outer_sign_without_workwx_sign_is_refused() -> None:
    wrong = sign(W3_PARAMS, KEY)
    assert wrong == "766B30DA328F4F137E4E4B095055F659"
    signed = _double_signed(W3_PARAMS, WECOM_SECRET, KEY)
    assert signed["sign"] != wrong
    assert not verify({**signed, "sign": wrong}, KEY)


def test_verify_workwx_refuses_a_missing_or_foreign_signature() -> None:
    assert not verify_workwx(W3_PARAMS, WECOM_SECRET)
    signed = _double_signed(W3_PARAMS, WECOM_SECRET, KEY)
    assert not verify_workwx(signed, WECOM_SECRET[:-1] + "x")
    assert not verify_workwx({**signed, "total_amount": 8889}, WECOM_SECRET)
    assert verify_workwx({**signed, "remark": "changed", "agentid": 1}, WECOM_SECRET)


def test_verify_workwx_refuses_a_non_ascii_signature_without_raising() -> None:
    signed = _double_signed(W3_PARAMS, WECOM_SECRET, KEY)
    assert not verify_workwx(
        {**signed, "workwx_sign": "５D6809139B3D35A0985CBB5A9F0155B8"}, WECOM_SECRET
    )


def test_verify_workwx_refuses_a_signature_that_is_not_text() -> None:
    assert not verify_workwx({**W3_PARAMS, "workwx_sign": 5680913}, WECOM_SECRET)
