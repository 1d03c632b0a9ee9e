"""Request rules (one test per rule, message checked), the exact parameter sets, and lenient
response parsing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from hongbao.api import models
from hongbao.api.models import (
    AmountRules,
    ApiRequest,
    QueryRedpackRequest,
    RedpackInfo,
    RedpackStatus,
    SendGroupRedpackRequest,
    SendMiniProgramRedpackRequest,
    SendRedpackRequest,
    SendResult,
    check_text,
    encode_risk_info,
)
from hongbao.clock import CST
from hongbao.errors import ConfigurationError, ValidationError
from hongbao.wire import xmlcodec
from hongbao.wire.sign import sign
from tests.api.apikit import APPID, BILL, KEY, MCH_ID, OPENID
from tests.spec_samples import GETHBINFO_RECEIVED as RECEIVED

V3_RISK = (
    "posttime%3d1710489600%26clientversion%3d8.0.47%26mobile%3d86-13800138000%26deviceid%3dIOS"
)
RULES = AmountRules(scenes={"PRODUCT_2": (30, 50000)})


def redpack(**changes: Any) -> dict[str, Any]:
    """sendredpack parameters of spec vector V3, with `changes`."""
    params: dict[str, Any] = {
        "mch_billno": BILL,
        "mch_id": MCH_ID,
        "wxappid": APPID,
        "send_name": "天虹百货",
        "re_openid": OPENID,
        "total_amount": 1000,
        "total_num": 1,
        "wishing": "感谢您参加猜灯谜活动，祝您元宵节快乐！",
        "client_ip": "192.168.0.1",
        "act_name": "猜灯谜抢红包活动",
        "remark": "猜越多得越多，快来抢！",
        "scene_id": "PRODUCT_2",
        "risk_info": V3_RISK,
    }
    params.update(changes)
    return params


def group(**changes: Any) -> dict[str, Any]:
    """sendgroupredpack parameters of spec vector V4, with `changes`."""
    params: dict[str, Any] = {
        "mch_billno": "1900000109202403150000000002",
        "mch_id": MCH_ID,
        "wxappid": APPID,
        "send_name": "Acme Store",
        "re_openid": OPENID,
        "total_amount": 900,
        "total_num": 3,
        "amt_type": "ALL_RAND",
        "wishing": "Happy New Year",
        "act_name": "Spring Promo",
        "remark": "Share with friends",
    }
    params.update(changes)
    return params


def mini(**changes: Any) -> dict[str, Any]:
    """sendminiprogramhb parameters of spec vector V6, with `changes`."""
    params: dict[str, Any] = {
        "mch_billno": "1900000109202403150000000003",
        "mch_id": MCH_ID,
        "wxappid": "wxd678efh567hg6787",
        "send_name": "Acme Store",
        "re_openid": "oeDV3t7xy1IkfYFzgOsCZvdRjb45",
        "total_amount": 100,
        "total_num": 1,
        "wishing": "Thanks",
        "act_name": "Mini Promo",
        "remark": "Enjoy",
        "notify_way": "MINI_PROGRAM_JSAPI",
    }
    params.update(changes)
    return params


def refused(
    model: type[ApiRequest], params: dict[str, Any], rules: AmountRules = RULES
) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.check(params, rules)
    return caught.value


# --- the exact parameter sets, proven by the spec's signature vectors -----------------------


@pytest.mark.parametrize(
    ("model", "params", "nonce", "expected"),
    [
        pytest.param(
            SendRedpackRequest,
            redpack(),
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "B84CAAD3B6FBFAAF341AE6482694309A",
            id="V3 sendredpack",
        ),
        pytest.param(
            SendGroupRedpackRequest,
            group(),
            "8A3F0C2E9B7D41E6A5C3F1B0D2E4A6C8",
            "C3543B384BBA1C0469AB13893C3D2DAA",
            id="V4 sendgroupredpack",
        ),
        pytest.param(
            QueryRedpackRequest,
            {"mch_billno": BILL, "mch_id": MCH_ID, "appid": APPID},
            "a9f3c1e5b7d2",
            "5FD0E8D21DDCC406CABDAD834BAC415E",
            id="V5 gethbinfo",
        ),
        pytest.param(
            SendMiniProgramRedpackRequest,
            mini(),
            "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e",
            "B01A04E53B967599A0CCC358C7DC7CEE",
            id="V6 sendminiprogramhb",
        ),
    ],
)
def test_a_checked_request_signs_to_the_spec_vector(
    model: type[ApiRequest], params: dict[str, Any], nonce: str, expected: str
) -> None:
    request = model.create(RULES, **params)
    assert sign(request.params(nonce), KEY) == expected


@pytest.mark.parametrize(
    ("model", "whitelist"),
    [
        (
            SendRedpackRequest,
            "mch_billno mch_id sub_mch_id wxappid msgappid send_name re_openid total_amount "
            "total_num wishing client_ip act_name remark scene_id risk_info consume_mch_id",
        ),
        (
            # client_ip is not in the official table (docs/protocol.md §2.3 note): never sent.
            SendGroupRedpackRequest,
            "mch_billno mch_id sub_mch_id wxappid msgappid send_name re_openid total_amount "
            "total_num amt_type wishing act_name remark scene_id risk_info consume_mch_id",
        ),
        (
            SendMiniProgramRedpackRequest,
            "mch_billno mch_id wxappid send_name re_openid total_amount total_num wishing "
            "act_name remark notify_way scene_id",
        ),
        (QueryRedpackRequest, "mch_billno mch_id appid bill_type"),
    ],
)
def test_each_model_holds_exactly_the_official_parameters(
    model: type[ApiRequest], whitelist: str
) -> None:
    assert set(model.model_fields) == set(whitelist.split())
    assert "sign_type" not in model.model_fields


def test_fixed_values_are_filled_in() -> None:
    query = QueryRedpackRequest.create(RULES, mch_billno=BILL, mch_id=MCH_ID, appid=APPID)
    assert query.params("n")["bill_type"] == "MCHT"
    assert SendGroupRedpackRequest.create(RULES, **group()).amt_type == "ALL_RAND"
    assert SendMiniProgramRedpackRequest.create(RULES, **mini()).notify_way == "MINI_PROGRAM_JSAPI"


def test_params_omit_what_is_not_set() -> None:
    request = SendRedpackRequest.create(RULES, **redpack(scene_id=None, risk_info=None))
    assert set(request.params("n")) == {"nonce_str"} | set(redpack()) - {"scene_id", "risk_info"}


def test_constructing_a_model_directly_applies_the_rules_too() -> None:
    with pytest.raises(ValidationError, match=r"total_num must be 1 for sendredpack"):
        SendRedpackRequest(**redpack(total_num=2))


# --- one test per rule ----------------------------------------------------------------------


def test_rule_required_missing() -> None:
    params = redpack()
    del params["act_name"]
    error = refused(SendRedpackRequest, params)
    assert (error.field, error.rule) == ("act_name", "required")
    assert str(error) == "act_name is required by sendredpack (rule: required)"


def test_rule_required_empty() -> None:
    error = refused(SendRedpackRequest, redpack(wishing=""))
    assert (error.field, error.rule) == ("wishing", "required")
    assert str(error) == "wishing is required and must not be empty (rule: required)"


def test_rule_max_length_counts_characters() -> None:
    error = refused(SendRedpackRequest, redpack(send_name="天" * 33))
    assert (error.field, error.rule) == ("send_name", "max_length")
    assert str(error) == "send_name has 33 characters, more than the 32 allowed (rule: max_length)"
    SendRedpackRequest.check(redpack(send_name="天" * 32), RULES)  # 96 bytes, 32 characters


@pytest.mark.parametrize("value", [" Acme", "Acme\n", "Acme\u3000"])
def test_rule_whitespace(value: str) -> None:
    error = refused(SendRedpackRequest, redpack(send_name=value))
    assert (error.field, error.rule) == ("send_name", "whitespace")
    assert str(error) == "send_name must not begin or end with whitespace (rule: whitespace)"


@pytest.mark.parametrize("value", ["a\x00b", "a\rb", "a\x1bb", "a\ud800b"])
def test_rule_xml_chars(value: str) -> None:
    error = refused(SendRedpackRequest, redpack(remark=value))
    assert (error.field, error.rule) == ("remark", "xml_chars")
    assert "remark contains a control character, carriage return" in str(error)


def test_tabs_and_line_feeds_inside_a_value_are_allowed() -> None:
    wishing = "line one\nline\ttwo"
    assert SendRedpackRequest.check(redpack(wishing=wishing), RULES) is None
    # ...and they reach WeChat as written: what is signed is what the packet shows.
    request = SendRedpackRequest.create(RULES, **redpack(wishing=wishing))
    assert request.params("n")["wishing"] == wishing


def test_rule_bill_no() -> None:
    error = refused(SendRedpackRequest, redpack(mch_billno="1900000109-2024"))
    assert (error.field, error.rule) == ("mch_billno", "bill_no")
    assert str(error) == (
        "mch_billno '1900000109-2024' may contain only letters and digits (0-9a-zA-Z) "
        "(rule: bill_no)"
    )


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        (SendRedpackRequest, redpack(total_num=2), "total_num must be 1 for sendredpack, not 2"),
        (
            SendMiniProgramRedpackRequest,
            mini(total_num=3),
            "total_num must be 1 for sendminiprogramhb, not 3",
        ),
        (
            SendGroupRedpackRequest,
            group(total_num=2, total_amount=400),
            "total_num must be between 3 and 20 for sendgroupredpack, not 2",
        ),
        (
            SendGroupRedpackRequest,
            group(total_num=21, total_amount=2100),
            "total_num must be between 3 and 20 for sendgroupredpack, not 21",
        ),
    ],
)
def test_rule_total_num(model: type[ApiRequest], params: dict[str, Any], message: str) -> None:
    error = refused(model, params)
    assert (error.field, error.rule) == ("total_num", "total_num")
    assert str(error) == f"{message} (rule: total_num)"


def test_rule_amount_range_of_a_scene() -> None:
    error = refused(SendRedpackRequest, redpack(total_amount=50001))
    assert (error.field, error.rule) == ("total_amount", "amount_range")
    assert str(error) == (
        "total_amount is 50001 fen: total_amount must be within 30–50000 fen (rule: amount_range)"
    )


def test_rule_amount_range_of_a_merchants_own_cap() -> None:
    rules = AmountRules(max_fen=5000)
    error = refused(SendRedpackRequest, redpack(scene_id=None, total_amount=6000), rules)
    assert error.rule == "amount_range"
    assert "total_amount must be within 100–5000 fen" in str(error)


def test_rule_amount_range_applies_to_the_average_share_of_a_fission_set() -> None:
    assert SendGroupRedpackRequest.check(group(total_amount=300, total_num=3), RULES) is None
    error = refused(SendGroupRedpackRequest, group(total_amount=299, total_num=3))
    assert (error.field, error.rule) == ("scene_id", "scene_required")
    assert "the average share (299 fen / 3 = 99.67 fen) is outside 100–20000 fen" in str(error)
    assert refused(
        SendGroupRedpackRequest, group(total_amount=150001, scene_id="PRODUCT_2")
    ).rule == ("amount_range")


def test_rule_each_fission_share_is_at_least_one_yuan_even_in_a_scene() -> None:
    # RULES enables PRODUCT_2 from 30 fen; a set of 3 shares averaging 50 fen passes the scene
    # range but would leave a share under 1 yuan, which WeChat refuses with MONEY_LIMIT.
    error = refused(SendGroupRedpackRequest, group(total_amount=150, scene_id="PRODUCT_2"))
    assert (error.field, error.rule) == ("total_amount", "share_minimum")
    assert str(error) == (
        "total_amount is 150 fen: each of the 3 shares must be at least 100 fen "
        "(rule: share_minimum)"
    )


@pytest.mark.parametrize("amount", [99, 20001])
def test_rule_scene_required_outside_the_default_range(amount: int) -> None:
    error = refused(SendRedpackRequest, redpack(scene_id=None, total_amount=amount))
    assert (error.field, error.rule) == ("scene_id", "scene_required")
    assert str(error) == (
        f"scene_id is required: total_amount ({amount} fen) is outside 100–20000 fen "
        "(rule: scene_required)"
    )


def test_rule_scene_enabled() -> None:
    error = refused(SendRedpackRequest, redpack(scene_id="PRODUCT_5"))
    assert (error.field, error.rule) == ("scene_id", "scene_enabled")
    assert str(error) == (
        "scene_id PRODUCT_5 is not enabled for this merchant (enabled: PRODUCT_2) "
        "(rule: scene_enabled)"
    )


def test_rule_scene_id() -> None:
    error = refused(SendRedpackRequest, redpack(scene_id="PRODUCT_9"))
    assert (error.field, error.rule) == ("scene_id", "scene_id")
    assert str(error) == "scene_id 'PRODUCT_9' is not one of PRODUCT_1 … PRODUCT_8 (rule: scene_id)"


@pytest.mark.parametrize("ip", ["192.168.0", "256.1.1.1", "::1", "192.168.0.01", "a.b.c.d"])
def test_rule_ipv4(ip: str) -> None:
    error = refused(SendRedpackRequest, redpack(client_ip=ip))
    assert (error.field, error.rule) == ("client_ip", "ipv4")
    assert str(error) == f"client_ip {ip!r} is not an IPv4 address such as 10.0.0.1 (rule: ipv4)"


@pytest.mark.parametrize(
    "risk_info",
    [
        "posttime=1710489600&mobile=86-1",  # not URL-encoded
        "posttime%3d1%26posttime%3d2",  # a key twice
        "color%3dred",  # not one of the four keys
        "posttime%3d",  # empty value
        "posttime%3d1%26",  # dangling separator
    ],
)
def test_rule_risk_info(risk_info: str) -> None:
    error = refused(SendRedpackRequest, redpack(risk_info=risk_info))
    assert (error.field, error.rule) == ("risk_info", "risk_info")
    assert "risk_info must be the URL-encoded form of non-empty pairs" in str(error)


def test_rule_risk_info_length() -> None:
    too_long = "deviceid%3d" + "D" * 118
    error = refused(SendRedpackRequest, redpack(risk_info=too_long))
    assert (error.field, error.rule) == ("risk_info", "max_length")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sub_mch_id": "1900000110"}, "sub_mch_id"),
        ({"msgappid": "wx0000000000000001"}, "sub_mch_id"),
        ({"consume_mch_id": "1900000111"}, "consume_mch_id"),
    ],
)
def test_rule_sp_mode(changes: dict[str, str], field: str) -> None:
    error = refused(SendRedpackRequest, redpack(**changes))
    assert (error.field, error.rule) == (field, "sp_mode")
    assert "(rule: sp_mode)" in str(error)
    sp_mode = {"sub_mch_id": "1900000110", "msgappid": "wx0000000000000001"}
    SendRedpackRequest.check(redpack(**{**sp_mode, **changes}), RULES)


def test_rule_fixed_value() -> None:
    error = refused(SendGroupRedpackRequest, group(amt_type="FIXED"))
    assert (error.field, error.rule) == ("amt_type", "fixed_value")
    assert str(error) == "amt_type must be 'ALL_RAND' for sendgroupredpack (rule: fixed_value)"


@pytest.mark.parametrize(
    ("model", "params", "name"),
    [
        (SendRedpackRequest, redpack(sign_type="MD5"), "sign_type"),
        (SendGroupRedpackRequest, group(client_ip="10.0.0.1"), "client_ip"),
        (SendMiniProgramRedpackRequest, mini(risk_info=V3_RISK), "risk_info"),
        (
            QueryRedpackRequest,
            {"mch_billno": BILL, "mch_id": MCH_ID, "wxappid": APPID},
            "wxappid",
        ),
    ],
)
def test_rule_whitelist(model: type[ApiRequest], params: dict[str, Any], name: str) -> None:
    error = refused(model, params)
    assert (error.field, error.rule) == (name, "whitelist")
    assert str(error) == f"{name} is not a parameter of {model.api} (rule: whitelist)"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total_amount": "1000"}, "total_amount must be an integer, not str (rule: type)"),
        ({"total_amount": True}, "total_amount must be an integer, not bool (rule: type)"),
        ({"send_name": 7}, "send_name must be a string, not int (rule: type)"),
    ],
)
def test_rule_type(changes: dict[str, Any], message: str) -> None:
    error = refused(SendRedpackRequest, redpack(**changes))
    assert error.rule == "type"
    assert str(error) == message


@given(st.text(max_size=40))
def test_the_fast_path_admits_only_what_the_full_text_check_admits(value: str) -> None:
    rule = models._FIELD_RULES["send_name"]
    assert rule.accept is not None
    try:
        check_text("send_name", value, 32)
    except ValidationError:
        assert rule.accept.fullmatch(value) is None
    else:
        assert rule.accept.fullmatch(value) is not None


# --- risk_info encoding and amount configuration ----------------------------------------------


def test_encode_risk_info_reproduces_the_spec_example() -> None:
    encoded = encode_risk_info(
        posttime=1710489600, clientversion="8.0.47", mobile="86-13800138000", deviceid="IOS"
    )
    assert encoded == V3_RISK


def test_encode_risk_info_takes_an_aware_datetime_and_escapes_values() -> None:
    when = datetime(2024, 3, 15, 16, 0, tzinfo=CST)
    encoded = encode_risk_info(posttime=when, deviceid="AA:BB")
    # The value is encoded, then the whole string: ":" becomes %3A, then %253A.
    assert encoded == "posttime%3d1710489600%26deviceid%3dAA%253ABB"
    assert models.check_risk_info(encoded) == encoded


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs at least one of its four values"),
        ({"mobile": "+8613800138000"}, "mobile must be country code, '-', number"),
        ({"posttime": datetime(2024, 3, 15)}, "posttime must be an aware datetime"),
    ],
)
def test_encode_risk_info_refuses_bad_input(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        encode_risk_info(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_fen": 99}, "amount range 99–20000 fen must lie within 100–20000 fen"),
        ({"max_fen": 20001}, "amount range 100–20001 fen must lie within 100–20000 fen"),
        ({"scenes": {"PRODUCT_1": (29, 100)}}, "PRODUCT_1 range 29–100 fen must lie within 30–"),
        ({"scenes": {"PRODUCT_1": (100, 499901)}}, "PRODUCT_1 range 100–499901 fen"),
        ({"scenes": {"PRODUCT_0": (100, 200)}}, "'PRODUCT_0' is not a scene"),
    ],
)
def test_amount_rules_refuse_a_configuration_wechat_cannot_have(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        AmountRules(**kwargs)


def test_amount_rules_cannot_be_changed_after_validation() -> None:
    with pytest.raises(TypeError):
        RULES.scenes["PRODUCT_3"] = (30, 100)  # type: ignore[index]


# --- responses --------------------------------------------------------------------------------

SUCCESS_CDATA = (
    b"<xml><return_code><![CDATA[SUCCESS]]></return_code><result_code><![CDATA[SUCCESS]]>"
    b"</result_code><mch_billno><![CDATA[1900000109202403150000000001]]></mch_billno>"
    b"<mch_id><![CDATA[1900000109]]></mch_id><wxappid><![CDATA[wx2421b1c4370ec43b]]></wxappid>"
    b"<re_openid><![CDATA[oxTWIuGaIt6gTKsQRLau2M0yL16E]]></re_openid>"
    b"<total_amount>1000</total_amount>"
    b"<send_listid><![CDATA[1000041701202403153000082277434]]></send_listid>"
    b"<brand_new><![CDATA[x]]></brand_new></xml>"
)


def test_a_send_result_reads_cdata_and_bare_values_alike() -> None:
    bare = re.sub(rb"<!\[CDATA\[(.*?)\]\]>", rb"\1", SUCCESS_CDATA)
    results = [
        SendResult.from_response(xmlcodec.loads(body), body) for body in (SUCCESS_CDATA, bare)
    ]
    assert results[0].model_dump(exclude={"raw"}) == results[1].model_dump(exclude={"raw"})
    result = results[0]
    assert (result.mch_billno, result.total_amount, result.send_listid) == (
        BILL,
        1000,
        "1000041701202403153000082277434",
    )
    assert result.raw == SUCCESS_CDATA
    assert result.model_extra is not None
    assert result.model_extra["brand_new"] == "x"
    assert "raw" not in repr(result)


def test_a_send_result_takes_integers_written_in_cdata_or_empty() -> None:
    data = {"mch_billno": BILL, "total_amount": "1000", "send_listid": "1"}
    assert SendResult.from_response(data, b"").total_amount == 1000
    assert SendResult.from_response({**data, "total_amount": ""}, b"").total_amount is None
    with pytest.raises(PydanticValidationError):
        SendResult.from_response({**data, "total_amount": "ten"}, b"")


def test_a_mini_program_result_keeps_the_package() -> None:
    body = (
        b"<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code>"
        b"<mch_billno>2334580734271081478888000026</mch_billno><total_amount>10</total_amount>"
        b"<send_listid>1000041701201609263000000204000</send_listid>"
        b"<package>sendid=242e&amp;ver=8&amp;mchid=11475856</package></xml>"
    )
    result = SendResult.from_response(xmlcodec.loads(body), body)
    assert result.package == "sendid=242e&ver=8&mchid=11475856"


def test_redpack_info_reads_the_spec_example_of_a_received_packet() -> None:
    info = RedpackInfo.from_response(xmlcodec.loads(RECEIVED), RECEIVED)
    assert info.found
    assert info.status is RedpackStatus.RECEIVED
    assert (info.detail_id, info.hb_type, info.total_num, info.total_amount) == (
        "1000041701201801233000139830103",
        "NORMAL",
        1,
        100,
    )
    assert info.send_time == datetime(2018, 1, 23, 13, 45, 8, tzinfo=CST)
    [receipt] = info.receipts
    assert (receipt.openid, receipt.amount) == ("o3yHF0uHuckI3yE6lwWiFQBQdVDI", 100)
    assert receipt.rcv_time == datetime(2018, 1, 23, 13, 45, 31, tzinfo=CST)


def test_redpack_info_of_a_refunded_packet_without_receipts() -> None:
    data = {
        "mch_billno": BILL,
        "status": "REFUND",
        "refund_time": "2019-12-13 16:51:38",
        "refund_amount": "100",
        "reason": "",
    }
    info = RedpackInfo.from_response(data, b"")
    assert info.status is RedpackStatus.REFUND
    assert (info.refund_amount, info.receipts) == (100, [])
    assert info.refund_time == datetime(2019, 12, 13, 16, 51, 38, tzinfo=CST)


def test_redpack_info_reads_an_empty_hblist_and_the_legacy_time_shape() -> None:
    data = {"status": "SENT", "hblist": "", "send_time": "20150520102602"}
    info = RedpackInfo.from_response(data, b"")
    assert (info.receipts, info.send_time) == ([], datetime(2015, 5, 20, 10, 26, 2, tzinfo=CST))


@pytest.mark.parametrize(
    "data",
    [
        {"status": "SENT", "send_time": "tomorrow"},
        {"status": "SENT", "total_amount": "-1"},
        {"status": "SENT", "total_amount": "1e3"},
        {"status": "SENT", "total_amount": "500000"},
        {"status": "REFUND", "total_amount": "100", "refund_amount": "200"},
        {"status": "RECEIVED", "total_amount": "100",
         "hblist": [{"openid": "o", "amount": "101", "rcv_time": "2024-03-15 10:00:00"}]},
    ],
    ids=["time", "negative", "exponent", "beyond a packet", "refund over total", "receipt over"],
)  # fmt: skip
def test_redpack_info_refuses_fields_no_record_can_have(data: dict[str, object]) -> None:
    with pytest.raises(PydanticValidationError):
        RedpackInfo.from_response(data, b"")


def test_redpack_info_refuses_a_status_it_does_not_know() -> None:
    with pytest.raises(PydanticValidationError):
        RedpackInfo.from_response({"status": "LOST"}, b"")


def test_not_found_is_a_value() -> None:
    info = RedpackInfo.not_found(BILL, b"<xml/>")
    assert (info.found, info.mch_billno, info.status, info.raw) == (False, BILL, None, b"<xml/>")
