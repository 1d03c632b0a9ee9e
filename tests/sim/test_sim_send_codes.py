"""Every err_code of docs/protocol.md §5.2 (send APIs), produced by the simulator with the spec's
exact text."""

from __future__ import annotations

import pytest

from hongbao.sim.app import Simulator
from hongbao.sim.ca import SimCA, der_of
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from hongbao.wire.local import PeerInfo
from tests.sim.simkit import Shop, expect, make_shop, signed_body


def test_success_issues_a_31_digit_send_listid_and_debits_the_balance(shop: Shop) -> None:
    before = shop.sim.state.merchant(shop.mch_id).balance_fen
    params = shop.send_params(total_amount="1000")
    answer = shop.call("sendredpack", params)
    assert (answer["return_code"], answer["result_code"], answer["err_code"]) == (
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
    )
    assert answer["return_msg"] == answer["err_code_des"] == "发放成功"
    listid = answer["send_listid"]
    assert len(listid) == 31
    assert listid.isdigit()
    assert listid.startswith("1000041701" + "20240315" + "3")
    assert "sign" not in answer
    for name in ("mch_billno", "mch_id", "wxappid", "re_openid", "total_amount"):
        assert answer[name] == params[name]
    assert shop.sim.state.merchant(shop.mch_id).balance_fen == before - 1000


def test_failures_echo_the_request_fields(shop: Shop) -> None:
    params = shop.send_params(total_amount="50")
    answer = shop.call("sendredpack", params)
    assert answer["err_code"] == "MONEY_LIMIT"
    for name in ("mch_billno", "mch_id", "wxappid", "re_openid", "total_amount"):
        assert answer[name] == params[name]
    assert "send_listid" not in answer


def test_no_auth_risk_leaves_a_sending_record_with_the_reason(shop: Shop) -> None:
    shop.sim.state.set_blocked(shop.users[0], True)
    params = shop.send_params()
    expect(
        shop.call("sendredpack", params), "NO_AUTH", "发放失败，此请求可能存在风险，已被微信拦截"
    )
    record = shop.query(params["mch_billno"])
    assert record["status"] == "SENDING"
    assert record["reason"] == "发放失败，此请求可能存在风险，已被微信拦截"


def test_no_auth_ip_when_the_caller_is_not_whitelisted(sim: Simulator) -> None:
    shop = make_shop(sim, ip_whitelist=["10.9.9.9"])
    expect(shop.send(), "NO_AUTH", "IP地址非你在商户平台设置的可用IP地址")
    allowed = PeerInfo(ip="10.9.9.9", cert_der=shop.creds.cert_der)
    assert shop.call("sendredpack", shop.send_params(), peer=allowed)["result_code"] == "SUCCESS"


def test_sendnum_limit_after_the_users_daily_count(sim: Simulator) -> None:
    shop = make_shop(sim, per_user_count=2)
    assert [shop.send()["result_code"] for _ in range(2)] == ["SUCCESS", "SUCCESS"]
    expect(shop.send(), "SENDNUM_LIMIT", "该用户今日领取红包个数超过限制")
    assert shop.send(re_openid=shop.users[1])["result_code"] == "SUCCESS"


def test_rcvdamount_limit_after_the_users_daily_amount(sim: Simulator) -> None:
    shop = make_shop(sim, per_user_amount=1500)
    assert shop.send(total_amount="1000")["result_code"] == "SUCCESS"
    expect(
        shop.send(total_amount="1000"),
        "RCVDAMOUNT_LIMIT",
        "该用户今日领取金额超过限制，如有需要请登录微信支付商户平台更改API安全配置",
    )


def test_sendamount_limit_after_the_merchants_daily_amount(sim: Simulator) -> None:
    shop = make_shop(sim, merchant_amount=1500)
    assert shop.send(total_amount="1000")["result_code"] == "SUCCESS"
    expect(
        shop.send(total_amount="1000", re_openid=shop.users[1]),
        "SENDAMOUNT_LIMIT",
        "您的商户号今日发放金额超过限制，如有需要请登录微信支付商户平台更改API安全配置",
    )


def test_illegal_appid_for_a_mobile_app_appid(shop: Shop) -> None:
    expect(
        shop.send(wxappid=shop.creds.app_appid),
        "ILLEGAL_APPID",
        "非法appid，请确认是否为公众号的appid，不能为APP的appid",
    )


def test_a_wecom_corp_id_is_accepted_on_sendredpack(sim: Simulator) -> None:
    creds = sim.create_merchant(wecom=True)
    assert creds.wecom_appid is not None
    shop = Shop(
        sim, creds, sim.add_users(creds.wecom_appid, 1), [], PeerInfo(cert_der=creds.cert_der)
    )
    assert shop.send(wxappid=creds.wecom_appid)["result_code"] == "SUCCESS"


def test_illegal_appid_for_a_mini_program_appid_on_sendredpack(shop: Shop) -> None:
    answer = shop.send(wxappid=shop.creds.mini_appid, re_openid=shop.mini_users[0])
    assert answer["err_code"] == "ILLEGAL_APPID"


@pytest.mark.parametrize("amount", ["99", "20001"])
def test_money_limit_outside_1_to_200_yuan_without_scene(shop: Shop, amount: str) -> None:
    expect(shop.send(total_amount=amount), "MONEY_LIMIT", "红包金额发放限制")


def test_money_limit_bounds_are_inclusive(shop: Shop) -> None:
    assert shop.send(total_amount="100")["result_code"] == "SUCCESS"
    assert shop.send(total_amount="20000", re_openid=shop.users[1])["result_code"] == "SUCCESS"


def test_money_limit_within_an_enabled_scene_range(sim: Simulator) -> None:
    shop = make_shop(sim, scenes={"PRODUCT_2": (30, 499_900)}, per_user_amount=1_000_000)
    assert shop.send(total_amount="30", scene_id="PRODUCT_2")["result_code"] == "SUCCESS"
    assert shop.send(total_amount="499900", scene_id="PRODUCT_2")["result_code"] == "SUCCESS"
    expect(shop.send(total_amount="29", scene_id="PRODUCT_2"), "MONEY_LIMIT", "红包金额发放限制")


def test_money_limit_on_a_fission_average(shop: Shop) -> None:
    expect(
        shop.call("sendgroupredpack", shop.group_params(total_amount="299", total_num="3")),
        "MONEY_LIMIT",
        "每个红包的平均金额必须在1.00元到200.00元之间.",
    )


def test_send_failed_once_the_bill_number_failed(shop: Shop) -> None:
    shop.sim.state.set_blocked(shop.users[0], True)
    params = shop.send_params()
    assert shop.call("sendredpack", params)["err_code"] == "NO_AUTH"
    shop.sim.move_clock(advance_seconds=24 * 3600)
    assert shop.query(params["mch_billno"])["status"] == "FAILED"
    shop.sim.state.set_blocked(shop.users[0], False)
    expect(shop.call("sendredpack", params), "SEND_FAILED", "红包发放失败,请更换单号再重试")


def test_fatal_error_when_the_openid_changes(shop: Shop) -> None:
    params = shop.send_params()
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"
    changed = {**params, "re_openid": shop.users[1]}
    expect(shop.call("sendredpack", changed), "FATAL_ERROR", "更换了openid，但商户单号未更新")


def test_fatal_error_when_the_amount_changes(shop: Shop) -> None:
    params = shop.send_params()
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"
    changed = {**params, "total_amount": "1001"}
    expect(shop.call("sendredpack", changed), "FATAL_ERROR", "金额和原始单参数不一致")


def test_ca_error_without_a_certificate(shop: Shop) -> None:
    answer = shop.call("sendredpack", shop.send_params(), peer=PeerInfo(ip="10.0.0.1"))
    expect(answer, "CA_ERROR", "CA证书出错，请登录微信支付商户平台下载证书")


def test_ca_error_for_a_certificate_of_a_foreign_ca(shop: Shop) -> None:
    cert, _ = SimCA.create().issue_client_cert(shop.mch_id)
    answer = shop.call("sendredpack", shop.send_params(), peer=PeerInfo(cert_der=der_of(cert)))
    expect(answer, "CA_ERROR", "商户API证书校验出错")


def test_ca_error_for_another_merchants_certificate(sim: Simulator, shop: Shop) -> None:
    other = make_shop(sim)
    answer = shop.call("sendredpack", shop.send_params(), peer=other.peer)
    expect(answer, "CA_ERROR", "商户API证书校验出错")


def test_ca_error_for_an_expired_certificate(shop: Shop) -> None:
    from datetime import UTC, datetime

    cert, _ = shop.sim.ca.issue_client_cert(
        shop.mch_id,
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 3, 1, tzinfo=UTC),
    )
    answer = shop.call("sendredpack", shop.send_params(), peer=PeerInfo(cert_der=der_of(cert)))
    expect(answer, "CA_ERROR", "证书已过期")


def test_sign_error_with_a_wrong_key(shop: Shop) -> None:
    expect(shop.call("sendredpack", shop.send_params(), key="x" * 32), "SIGN_ERROR", "签名错误")


def test_sign_error_for_hmac_sha256(shop: Shop) -> None:
    answer = shop.call("sendredpack", shop.send_params(), sign_type="HMAC-SHA256")
    expect(answer, "SIGN_ERROR", "签名错误")


def test_sign_error_when_an_unknown_field_is_signed(shop: Shop) -> None:
    # WxJava #726: signing sign_type broke the signature, because the server ignores it.
    answer = shop.call("sendredpack", shop.send_params(sign_type="MD5"))
    expect(answer, "SIGN_ERROR", "签名错误")


def test_unknown_fields_sent_unsigned_are_ignored(shop: Shop) -> None:
    answer = shop.call("sendredpack", shop.send_params(), unsigned={"sign_type": "MD5"})
    assert answer["result_code"] == "SUCCESS"


def test_sign_error_without_a_sign(shop: Shop) -> None:
    from hongbao.wire import xmlcodec

    answer = shop.post("sendredpack", xmlcodec.dumps(shop.send_params()))
    assert b"SIGN_ERROR" in answer.body


def test_systemerror_by_fault_injection(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "error", "err_code": "SYSTEMERROR", "count": 1}))
    params = shop.send_params()
    expect(
        shop.call("sendredpack", params), "SYSTEMERROR", "请求已受理，请稍后使用原单号查询发放结果"
    )
    # Nothing was issued: the same bill goes through afterwards.
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"


def test_numeric_268458547_by_fault_injection(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "error", "err_code": "268458547"}))
    answer = shop.send()
    expect(answer, "268458547", "系统繁忙,请稍后再试.", return_code="FAIL")


def test_xml_error_for_an_empty_body(shop: Shop) -> None:
    from tests.sim.simkit import parse

    expect(
        parse(shop.post("sendredpack", b"")), "XML_ERROR", "输入xml参数格式错误", return_code="FAIL"
    )


def test_freq_limit_over_the_rate_per_minute(sim: Simulator) -> None:
    shop = make_shop(sim, rate_per_minute=2)
    assert shop.send()["result_code"] == "SUCCESS"
    assert shop.send()["result_code"] == "SUCCESS"
    expect(shop.send(), "FREQ_LIMIT", "超过频率限制,请稍后再试")
    sim.move_clock(advance_seconds=60)
    assert shop.send()["result_code"] == "SUCCESS"


def test_api_method_closed(sim: Simulator) -> None:
    shop = make_shop(sim, api_enabled=False)
    expect(
        shop.send(),
        "API_METHOD_CLOSED",
        "你的商户号API发放方式已关闭，请联系管理员在商户平台开启",
    )


def test_notenough_when_the_balance_is_short(sim: Simulator) -> None:
    shop = make_shop(sim, balance_fen=999)
    params = shop.send_params(total_amount="1000")
    expect(shop.call("sendredpack", params), "NOTENOUGH", "帐号余额不足，请到商户平台充值后再重试")
    assert shop.sim.state.merchant(shop.mch_id).balance_fen == 999
    assert shop.query(params["mch_billno"])["status"] == "SENDING"


def test_openid_error_for_an_openid_of_another_appid(shop: Shop) -> None:
    expect(shop.send(re_openid=shop.mini_users[0]), "OPENID_ERROR", "openid和appid不匹配")


def _sp_pair(sim: Simulator) -> tuple[Shop, Shop]:
    provider, sub = make_shop(sim), make_shop(sim)
    sim.state.update_merchant(provider.mch_id, MerchantSettings(sub_mch_ids=[sub.mch_id]))
    return provider, sub


def test_sp_mode_sends_for_the_sub_merchant_and_debits_it(sim: Simulator) -> None:
    provider, sub = _sp_pair(sim)
    before = sim.state.merchant(sub.mch_id).balance_fen
    answer = provider.send(sub_mch_id=sub.mch_id, msgappid=sub.creds.appid, re_openid=sub.users[0])
    assert answer["result_code"] == "SUCCESS", answer
    assert sim.state.merchant(sub.mch_id).balance_fen == before - 1000


def test_sp_mode_consume_mch_id_makes_the_provider_pay(sim: Simulator) -> None:
    provider, sub = _sp_pair(sim)
    before = sim.state.merchant(provider.mch_id).balance_fen
    answer = provider.send(
        sub_mch_id=sub.mch_id,
        msgappid=provider.creds.appid,
        re_openid=provider.users[0],
        consume_mch_id=provider.mch_id,
    )
    assert answer["result_code"] == "SUCCESS", answer
    assert sim.state.merchant(provider.mch_id).balance_fen == before - 1000


def test_acceptmode_error_for_a_consume_mch_id_outside_the_relationship(sim: Simulator) -> None:
    provider, sub = _sp_pair(sim)
    stranger = make_shop(sim)
    answer = provider.send(
        sub_mch_id=sub.mch_id,
        msgappid=sub.creds.appid,
        re_openid=sub.users[0],
        consume_mch_id=stranger.mch_id,
    )
    expect(answer, "ACCEPTMODE_ERROR", "主、子商户号关系校验失败")


def test_acceptmode_error_without_a_service_relationship(sim: Simulator) -> None:
    provider, _ = _sp_pair(sim)
    stranger = make_shop(sim)
    answer = provider.send(
        sub_mch_id=stranger.mch_id, msgappid=stranger.creds.appid, re_openid=stranger.users[0]
    )
    expect(answer, "ACCEPTMODE_ERROR", "主、子商户号关系校验失败")


def test_msgappid_error_for_an_unbound_msgappid(sim: Simulator) -> None:
    provider, sub = _sp_pair(sim)
    stranger = make_shop(sim)
    answer = provider.send(
        sub_mch_id=sub.mch_id, msgappid=stranger.creds.appid, re_openid=sub.users[0]
    )
    expect(answer, "MSGAPPID_ERROR", "触达消息给用户appid有误")


def test_processing_by_fault_leaves_the_record_sending(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "processing", "count": 1, "seconds": 600}))
    params = shop.send_params()
    expect(
        shop.call("sendredpack", params), "PROCESSING", "请求已受理，请稍后使用原单号查询发放结果"
    )
    record = shop.query(params["mch_billno"])
    assert record["status"] == "SENDING"
    assert "reason" not in record


def test_product_authority_unopen(sim: Simulator) -> None:
    shop = make_shop(sim, product_enabled=False)
    expect(
        shop.send(),
        "PRODUCT_AUTHORITY_UNOPEN",
        "你的商户号未开通该产品权限，请联系管理员到产品中心开通。开通路径：产品中心-产品大全-现金红包-申请开通",
    )


def test_payer_account_abnormal(sim: Simulator) -> None:
    shop = make_shop(sim, restricted=True)
    expect(shop.send(), "PAYER_ACCOUNT_ABNORMAL", "商户账户付款受限")


def test_legacy_caps_are_off_by_default(sim: Simulator) -> None:
    shop = make_shop(sim, users=12)
    answers = [shop.send(re_openid=user)["result_code"] for user in shop.users]
    assert answers == ["SUCCESS"] * 12
    limits = sim.state.merchant(shop.mch_id).limits
    assert (limits.legacy_minute_cap, limits.legacy_day_cap) == (0, 0)


def test_second_over_limited_behind_the_legacy_minute_flag(sim: Simulator) -> None:
    shop = make_shop(sim, legacy_minute_cap=2)
    assert shop.send(re_openid=shop.users[0])["result_code"] == "SUCCESS"
    assert shop.send(re_openid=shop.users[1])["result_code"] == "SUCCESS"
    expect(shop.send(re_openid=shop.users[2]), "SECOND_OVER_LIMITED", "企业红包的按分钟发放受限")
    sim.move_clock(advance_seconds=61)
    assert shop.send(re_openid=shop.users[2])["result_code"] == "SUCCESS"


def test_day_over_limited_behind_the_legacy_day_flag(sim: Simulator) -> None:
    shop = make_shop(sim, legacy_day_cap=1)
    assert shop.send(re_openid=shop.users[0])["result_code"] == "SUCCESS"
    expect(shop.send(re_openid=shop.users[1]), "DAY_OVER_LIMITED", "企业红包的按天日发放受限")


def test_responses_carry_a_sign_only_when_the_merchant_asks(sim: Simulator) -> None:
    from hongbao.wire.sign import verify

    shop = make_shop(sim, sign_responses=True)
    answer = shop.send()
    assert verify(answer, shop.creds.api_key)


def test_the_v3_vector_body_is_accepted_as_sent(sim: Simulator) -> None:
    # Spec §2.6 V3: the exact key, ids and signature of the documentation example.
    shop_creds = sim.create_merchant(
        MerchantSettings(scenes={"PRODUCT_2": (100, 20000)}),
        mch_id="1900000109",
        api_key="Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J",
    )
    # The vector's appid is its own; bind the openid under the merchant's appid instead and
    # check that the vector's signature algorithm is what the simulator verifies.
    params = {
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "mch_billno": "1900000109202403150000000001",
        "mch_id": "1900000109",
        "wxappid": "wx2421b1c4370ec43b",
        "send_name": "天虹百货",
        "re_openid": "oxTWIuGaIt6gTKsQRLau2M0yL16E",
        "total_amount": "1000",
        "total_num": "1",
        "wishing": "感谢您参加猜灯谜活动，祝您元宵节快乐！",
        "client_ip": "192.168.0.1",
        "act_name": "猜灯谜抢红包活动",
        "remark": "猜越多得越多，快来抢！",
        "scene_id": "PRODUCT_2",
        "risk_info": (
            "posttime%3d1710489600%26clientversion%3d8.0.47%26mobile%3d86-13800138000"
            "%26deviceid%3dIOS"
        ),
    }
    body = signed_body(params, "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J")
    assert b"B84CAAD3B6FBFAAF341AE6482694309A" in body
    from hongbao.wire.transport import WireRequest
    from tests.sim.simkit import parse

    peer = PeerInfo(cert_der=shop_creds.cert_der)
    answer = parse(sim.handle_wire(WireRequest("/mmpaymkttransfers/sendredpack", body), peer))
    # Signature and certificate pass; the vector's appid is not bound to this merchant.
    expect(answer, "PARAM_ERROR", "商户号和wxappid不匹配")
