"""The simulator's sendworkwxredpack and queryworkwxredpack (docs/protocol.md §15): every
validation step of §15.8 in its order, every err_code of §15.7 with its text, both signatures
checked apart, the lifecycle and the control API — in-process and served over mutual TLS.

Requests are built raw here (signed twice by the test itself), so that the simulator is judged
on what it refuses, including what hongbao's own client would never send.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from hongbao.sim.app import Simulator
from hongbao.sim.faults import parse_fault
from hongbao.wire.sign import WORKWX_SIGNED_FIELDS, workwx_sign
from tests.api.modekit import Bench
from tests.api.workwxkit import QUERY, SEND, Corp

DAY = 24 * 3600
WORKWX_SIGN_ERROR = "企业微信签名校验失败"


def expect(answer: dict[str, Any], err_code: str, des: str) -> None:
    """A failure with exactly this code and text and, as live WeCom failures, no echo."""
    assert (answer.get("err_code"), answer.get("err_code_des")) == (err_code, des), answer
    assert (answer["return_code"], answer["result_code"], answer["return_msg"]) == (
        "SUCCESS",
        "FAIL",
        des,
    )
    assert not {"mch_billno", "mch_id", "wxappid", "re_openid", "total_amount"} & set(answer)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


# --- success and its shape ------------------------------------------------------------------


def test_success_in_an_apps_name_issues_and_debits(corp: Corp) -> None:
    before = corp.bench.sim.state.merchant(corp.mch_id).balance_fen
    params = corp.params(total_amount=8888, scene_id=None)
    answer = corp.post(SEND, params)
    assert (answer["return_code"], answer["result_code"]) == ("SUCCESS", "SUCCESS")
    for name in ("mch_billno", "mch_id", "wxappid", "re_openid"):
        assert answer[name] == params[name]
    assert answer["total_amount"] == "8888"
    assert len(answer["send_listid"]) == 31
    assert "sender_name" not in answer
    assert corp.bench.sim.state.merchant(corp.mch_id).balance_fen == before - 8888


def test_success_in_a_persons_name_echoes_the_sender(corp: Corp) -> None:
    media = "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0"
    answer = corp.send(agentid=None, sender_name="HR Team", sender_header_media_id=media)
    assert answer["result_code"] == "SUCCESS"
    assert (answer["sender_name"], answer["sender_header_media_id"]) == ("HR Team", media)


def test_reentry_with_the_same_parameters_replays_the_success(corp: Corp) -> None:
    params = corp.params()
    first = corp.post(SEND, params)
    assert corp.post(SEND, {**params, "nonce_str": "another"}) == first
    _, records = corp.bench.sim.state.ledger(corp.mch_id)
    assert [(r.api, r.status) for r in records] == [("sendworkwxredpack", "SENT")]


# --- §15.8 steps 1–4: body, merchant, certificate, outer sign --------------------------------


def test_xml_error_for_a_body_that_is_not_xml(corp: Corp) -> None:
    answer = corp.raw(SEND, b"not xml")
    assert (answer["return_code"], answer["return_msg"]) == ("FAIL", "输入xml参数格式错误")


@pytest.mark.parametrize(
    ("mch_id", "des"), [("", "输入的商户号有误"), ("1999999999", "找不到对应的商户号")]
)
def test_param_error_for_a_missing_or_unknown_merchant(corp: Corp, mch_id: str, des: str) -> None:
    expect(corp.send(mch_id=mch_id or None), "PARAM_ERROR", des)


def test_ca_error_without_a_client_certificate(corp: Corp) -> None:
    answer = corp.post(SEND, corp.params(), merchant=corp.merchant(certificate=None))
    expect(answer, "CA_ERROR", "CA证书出错，请登录微信支付商户平台下载证书")


def test_sign_error_for_a_wrong_api_key(corp: Corp) -> None:
    expect(corp.post(SEND, corp.params(), key="0" * 32), "SIGN_ERROR", "签名错误")


@pytest.mark.parametrize(
    "extra",
    [{"total_num": "1"}, {"sign_type": "MD5"}, {"send_name": "HR"}, {"client_ip": "10.0.0.1"}],
    ids=lambda extra: next(iter(extra)),
)
def test_sign_error_when_a_field_of_another_api_is_signed(
    corp: Corp, extra: dict[str, str]
) -> None:
    # The server signs only the fields it knows for this API: an extra signed one breaks it.
    expect(corp.send(**extra), "SIGN_ERROR", "签名错误")


def test_the_outer_sign_is_checked_before_the_workwx_sign(corp: Corp) -> None:
    answer = corp.post(SEND, corp.params(), key="0" * 32, secret="wrong")
    expect(answer, "SIGN_ERROR", "签名错误")


# --- step 5: the merchant bound to the corp ---------------------------------------------------


def test_no_competence_when_the_binding_is_undone(corp: Corp) -> None:
    assert corp.update(bound=False)["bound"] is False
    expect(corp.send(), "NO_COMPETENCE", "商户号错误")
    corp.update(bound=True)
    assert corp.send()["result_code"] == "SUCCESS"


def test_no_competence_for_another_merchants_corp(bench: Bench, corp: Corp) -> None:
    other = Corp.create(bench)
    expect(corp.send(wxappid=other.corpid), "NO_COMPETENCE", "商户号错误")


@pytest.mark.parametrize("which", ["official-account", "unknown"])
def test_no_competence_for_an_appid_that_is_no_corp(corp: Corp, which: str) -> None:
    appid = corp.creds.appid if which == "official-account" else "ww0000000000000000"
    expect(corp.send(wxappid=appid), "NO_COMPETENCE", "商户号错误")


def test_the_binding_is_checked_before_the_workwx_sign(corp: Corp) -> None:
    corp.update(bound=False)
    expect(corp.post(SEND, corp.params(), secret="wrong"), "NO_COMPETENCE", "商户号错误")


def test_illegal_appid_for_a_mobile_app_appid(corp: Corp) -> None:
    expect(
        corp.send(wxappid=corp.creds.app_appid),
        "ILLEGAL_APPID",
        "非法appid，请确认是否为公众号的appid，不能为APP的appid",
    )


# --- step 6: workwx_sign ----------------------------------------------------------------------


def test_sign_error_of_its_own_for_a_wrong_wecom_secret(corp: Corp) -> None:
    expect(corp.post(SEND, corp.params(), secret="x" * 43), "SIGN_ERROR", WORKWX_SIGN_ERROR)


@pytest.mark.parametrize("mistake", ["missing", "lowercase", "key-suffix", "all-fields"])
def test_sign_error_for_each_typical_workwx_sign_mistake(corp: Corp, mistake: str) -> None:
    params = corp.params()
    right = workwx_sign(params, corp.secret)
    seven = "&".join(f"{name}={params[name]}" for name in WORKWX_SIGNED_FIELDS)
    every = "&".join(f"{name}={params[name]}" for name in sorted(params))
    params["workwx_sign"] = {
        "missing": "",
        "lowercase": right.lower(),
        "key-suffix": _md5(f"{seven}&key={corp.secret}"),
        "all-fields": _md5(f"{every}&secret={corp.secret}"),
    }[mistake]
    assert _md5(f"{seven}&secret={corp.secret}") == right
    expect(corp.post(SEND, params), "SIGN_ERROR", WORKWX_SIGN_ERROR)


def test_an_apps_own_secret_only_when_accepted(corp: Corp) -> None:
    own = corp.agent_secret()
    expect(corp.post(SEND, corp.params(), secret=own), "SIGN_ERROR", WORKWX_SIGN_ERROR)
    corp.update(agent_secret_accepted=True)
    assert corp.post(SEND, corp.params(), secret=own)["result_code"] == "SUCCESS"
    # Only for the app named in agentid: a sender_name packet still needs the 企业支付 secret.
    by_name = corp.params(agentid=None, sender_name="HR")
    expect(corp.post(SEND, by_name, secret=own), "SIGN_ERROR", WORKWX_SIGN_ERROR)


# --- step 7: switches, IP whitelist, rate ------------------------------------------------------


def test_api_method_closed(bench: Bench) -> None:
    corp = Corp.create(bench, api_enabled=False)
    expect(
        corp.send(),
        "API_METHOD_CLOSED",
        "你的商户号API发放方式已关闭，请联系管理员在商户平台开启",
    )


def test_no_auth_for_a_caller_outside_the_ip_whitelist(bench: Bench) -> None:
    corp = Corp.create(bench, ip_whitelist=["10.9.9.9"])
    expect(corp.send(), "NO_AUTH", "IP地址非你在商户平台设置的可用IP地址")


def test_freq_limit_past_the_merchants_rate(bench: Bench) -> None:
    corp = Corp.create(bench, rate_per_minute=1)
    assert corp.send()["result_code"] == "SUCCESS"
    expect(corp.send(), "FREQ_LIMIT", "超过频率限制,请稍后再试")


# --- step 8: fields ---------------------------------------------------------------------------

SENDER = "参数错误:sender_name和agentid必须且只能填一个"


@pytest.mark.parametrize(
    ("changes", "des"),
    [
        pytest.param({"sender_name": "HR"}, SENDER, id="both-sender-and-agentid"),
        pytest.param({"agentid": None}, SENDER, id="neither-sender-nor-agentid"),
        pytest.param({"agentid": "999"}, "参数错误:agentid不是该企业的应用", id="unknown-agentid"),
        pytest.param(
            {"agentid": "x1"}, "参数错误:agentid不是该企业的应用", id="agentid-not-digits"
        ),
        pytest.param(
            {"agentid": None, "sender_name": "名" * 129},
            "sender_name字段最长为128个字符",
            id="sender-name-too-long",
        ),
        pytest.param(
            {"agentid": None, "sender_name": "HR", "sender_header_media_id": "m" * 129},
            "sender_header_media_id字段最长为128个字符",
            id="media-id-too-long",
        ),
        pytest.param({"nonce_str": "n" * 33}, "nonce_str字段必填,并且少于32字符", id="nonce"),
        pytest.param({"mch_billno": "bill-no!"}, "订单号字段必填,最长为28个字符", id="billno"),
        pytest.param({"re_openid": None}, "re_openid字段为必填并且少于32个字符", id="re_openid"),
        pytest.param({"total_amount": "1.00"}, "红包金额参数错误", id="amount-not-fen"),
        pytest.param({"wishing": None}, "wishing字段为必填,并且少于128个字符", id="wishing"),
        pytest.param({"act_name": "a" * 33}, "act_name字段必填,并且少于32个字符", id="act_name"),
        pytest.param({"remark": None}, "remark字段为必填,并且少于256字符", id="remark"),
        pytest.param(
            {"scene_id": "PRODUCT_9"},
            "参数错误:该场景未开通,请登陆商户平台:产品中心-现金红包-产品设置-使用场景 进行开通",
            id="scene-unknown",
        ),
        pytest.param(
            {"scene_id": "PRODUCT_4"},
            "参数错误:该场景未开通,请登陆商户平台:产品中心-现金红包-产品设置-使用场景 进行开通",
            id="scene-not-enabled",
        ),
    ],
)
def test_param_error_for_each_field_rule(corp: Corp, changes: dict[str, Any], des: str) -> None:
    expect(corp.send(**changes), "PARAM_ERROR", des)


def test_openid_error_for_someone_who_is_no_member(corp: Corp) -> None:
    [follower] = corp.bench.sim.add_users(corp.creds.appid, 1)
    expect(corp.send(re_openid=follower), "OPENID_ERROR", "openid和appid不匹配")


# --- steps 9–11: amount, re-entry, refusals ----------------------------------------------------


@pytest.mark.parametrize("amount", [99, 20001])
def test_money_limit_outside_1_to_200_yuan_without_a_scene(corp: Corp, amount: int) -> None:
    expect(corp.send(total_amount=amount), "MONEY_LIMIT", "红包金额发放限制")


def test_a_scene_enabled_for_the_merchant_allows_its_range(bench: Bench) -> None:
    corp = Corp.create(bench, scenes={"PRODUCT_4": (30, 499_900)})
    assert corp.send(total_amount=88_800, scene_id="PRODUCT_4")["result_code"] == "SUCCESS"


def test_reentry_with_another_amount_is_a_param_error(corp: Corp) -> None:
    params = corp.params()
    assert corp.post(SEND, params)["result_code"] == "SUCCESS"
    answer = corp.post(SEND, {**params, "total_amount": "200"})
    expect(answer, "PARAM_ERROR", "请求参数错误，重试时请保持原单金额")


def test_reentry_with_another_member_is_a_fatal_error(corp: Corp) -> None:
    params = corp.params()
    assert corp.post(SEND, params)["result_code"] == "SUCCESS"
    answer = corp.post(SEND, {**params, "re_openid": corp.members[1]})
    expect(answer, "FATAL_ERROR", "更换了openid，但商户单号未更新")


def test_a_cash_bill_reused_for_a_wecom_packet_is_a_fatal_error(corp: Corp) -> None:
    cash = corp.bench.merchant(corp.creds)
    bill = corp.bill()
    [follower] = corp.bench.sim.add_users(corp.creds.appid, 1)
    corp.bench.client(cash).send_redpack(
        mch_billno=bill, re_openid=follower, total_amount=100, send_name="HR", wishing="w",
        act_name="a", remark="r",
    )  # fmt: skip
    # The same bill number, another API: another packet (the namespace is the merchant's).
    expect(
        corp.send(mch_billno=bill, re_openid=corp.members[0]),
        "FATAL_ERROR",
        "更换了openid，但商户单号未更新",
    )


def test_no_auth_for_a_risk_blocked_member_then_send_failed_a_day_later(corp: Corp) -> None:
    corp.bench.sim.state.set_blocked(corp.members[0], True)
    params = corp.params()
    expect(corp.post(SEND, params), "NO_AUTH", "发放失败，此请求可能存在风险，已被微信拦截")
    assert corp.query(params["mch_billno"])["status"] == "SENDING"
    corp.bench.advance(DAY + 1)
    assert corp.query(params["mch_billno"])["status"] == "FAILED"
    expect(corp.post(SEND, params), "SEND_FAILED", "红包发放失败,请更换单号再重试")


@pytest.mark.parametrize(
    ("settings", "err_code", "des"),
    [
        ({"per_user_count": 1}, "SENDNUM_LIMIT", "该用户今日领取红包个数超过限制"),
        (
            {"per_user_amount": 150},
            "RCVDAMOUNT_LIMIT",
            "该用户今日领取金额超过限制，如有需要请登录微信支付商户平台更改API安全配置",
        ),
        (
            {"merchant_amount": 150},
            "SENDAMOUNT_LIMIT",
            "您的商户号今日发放金额超过限制，如有需要请登录微信支付商户平台更改API安全配置",
        ),
        ({"balance_fen": 150}, "NOTENOUGH", "帐号余额不足，请到商户平台充值后再重试"),
    ],
)
def test_daily_limits_and_balance(
    bench: Bench, settings: dict[str, int], err_code: str, des: str
) -> None:
    corp = Corp.create(bench, **settings)
    assert corp.send()["result_code"] == "SUCCESS"
    expect(corp.send(), err_code, des)


# --- faults -------------------------------------------------------------------------------------


def test_injected_systemerror_and_processing(corp: Corp) -> None:
    sim = corp.bench.sim
    sim.faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "error",
                                "err_code": "SYSTEMERROR", "count": 1}))  # fmt: skip
    expect(corp.send(), "SYSTEMERROR", "请求已受理，请稍后使用原单号查询发放结果")
    sim.faults.add(parse_fault({"endpoint": "sendworkwxredpack", "action": "processing",
                                "seconds": 60, "count": 1}))  # fmt: skip
    params = corp.params()
    expect(corp.post(SEND, params), "PROCESSING", "请求已受理，请稍后使用原单号查询发放结果")
    assert corp.query(params["mch_billno"])["status"] == "SENDING"
    corp.bench.advance(61)
    assert corp.query(params["mch_billno"])["status"] == "SENT"


# --- queryworkwxredpack and the lifecycle --------------------------------------------------------


def test_query_follows_the_packet_from_sent_to_received(corp: Corp) -> None:
    params = corp.params(agentid=None, sender_name="HR Team")
    sent = corp.post(SEND, params)
    bill = params["mch_billno"]
    record = corp.query(bill)
    assert (record["status"], record["detail_id"], record["send_type"]) == (
        "SENT", sent["send_listid"], "API",
    )  # fmt: skip
    assert record["sender_name"] == "HR Team"
    assert not {"hb_type", "total_num", "hblist", "openid", "amount"} & set(record)
    assert corp.bench.open(corp.creds, bill) == "RECEIVED"
    record = corp.query(bill)
    assert record["status"] == "RECEIVED"
    # The documented shape: the receipt flat at the top level.
    assert (record["openid"], record["amount"]) == (params["re_openid"], params["total_amount"])
    assert record["rcv_time"]


def test_an_unopened_packet_is_refunded_after_a_day(corp: Corp) -> None:
    params = corp.params(total_amount=500)
    corp.post(SEND, params)
    before = corp.bench.sim.state.merchant(corp.mch_id).balance_fen
    corp.bench.advance(DAY + 20 * 60)
    record = corp.query(params["mch_billno"])
    assert (record["status"], record["refund_amount"]) == ("REFUND", "500")
    assert corp.bench.sim.state.merchant(corp.mch_id).balance_fen == before + 500


def test_each_query_finds_only_its_own_familys_bills(corp: Corp) -> None:
    params = corp.params()
    corp.post(SEND, params)
    gethbinfo = corp.bench.client(corp.bench.merchant(corp.creds)).query_redpack(
        params["mch_billno"], appid=corp.corpid
    )
    assert gethbinfo.found is False
    expect(corp.query(corp.bill()), "NOT_FOUND", "指定单号数据不存在")


@pytest.mark.parametrize(
    ("changes", "err_code", "des"),
    [
        ({"appid": "official"}, "PARAM_ERROR", "商户号和wxappid不匹配"),
        ({"appid": ""}, "PARAM_ERROR", "appid字段必填,最长为32个字符"),
        ({"mch_id": "1999999999"}, "PARAM_ERROR", "找不到对应的商户号"),
    ],
)
def test_query_parameter_errors(
    corp: Corp, changes: dict[str, str], err_code: str, des: str
) -> None:
    if changes.get("appid") == "official":
        changes = {"appid": corp.creds.appid}
    expect(corp.query(corp.bill(), **changes), err_code, des)


def test_query_sign_error_and_bill_type_is_not_one_of_its_fields(corp: Corp) -> None:
    bill = corp.bill()
    # gethbinfo's bill_type is no field of this query: signing it breaks the signature.
    expect(corp.query(bill, bill_type="MCHT"), "SIGN_ERROR", "签名错误")


def test_query_freq_limit(bench: Bench) -> None:
    corp = Corp.create(bench, query_rate_per_minute=1)
    expect(corp.query(corp.bill()), "NOT_FOUND", "指定单号数据不存在")
    expect(corp.query(corp.bill()), "FREQ_LIMIT", "超过频率限制,请稍后再试")


def test_query_ca_error_and_xml_error(corp: Corp) -> None:
    params = {"nonce_str": "n", "mch_billno": corp.bill(), "mch_id": corp.mch_id,
              "appid": corp.corpid}  # fmt: skip
    answer = corp.post(QUERY, params, workwx=False, merchant=corp.merchant(certificate=None))
    expect(answer, "CA_ERROR", "CA证书出错，请登录微信支付商户平台下载证书")
    answer = corp.raw(QUERY, b"<xml><unclosed>")
    assert (answer["return_code"], answer["err_code"]) == ("FAIL", "XML_ERROR")


# --- persistence --------------------------------------------------------------------------------


def test_corps_members_and_wecom_records_survive_a_restart(tmp_path: Path) -> None:
    sim = Simulator(data_dir=tmp_path, seed=3)
    with Bench(None) as bench:
        bench.sim.close()
        bench.sim = sim
        corp = Corp.create(bench)
        corp.update(agent_secret_accepted=True)
        params = corp.params(agentid=None, sender_name="HR", sender_header_media_id="m1")
        corp.post(SEND, params)
    again = Simulator(data_dir=tmp_path)
    with Bench(None) as bench:
        bench.sim.close()
        bench.sim = again
        corp.bench = bench
        restored = again.state.corp(corp.corpid)
        assert (restored.secret, restored.agent_secret_accepted) == (corp.secret, True)
        assert again.state.has_user(corp.corpid, corp.members[1])
        record = corp.query(params["mch_billno"])
        assert (record["status"], record["sender_name"], record["sender_header_media_id"]) == (
            "SENT", "HR", "m1",
        )  # fmt: skip
        assert corp.send(re_openid=corp.members[1])["result_code"] == "SUCCESS"


def test_query_no_auth_outside_the_ip_whitelist_and_injected_systemerror(bench: Bench) -> None:
    corp = Corp.create(bench, ip_whitelist=["10.9.9.9"])
    expect(corp.query(corp.bill()), "NO_AUTH", "IP地址非你在商户平台设置的可用IP地址")
    other = Corp.create(bench)
    bench.sim.faults.add(parse_fault({"endpoint": "queryworkwxredpack", "action": "error",
                                      "err_code": "SYSTEMERROR", "count": 1}))  # fmt: skip
    expect(other.query(other.bill()), "SYSTEMERROR", "系统繁忙，请再试。")
