"""gethbinfo: the success shape of docs/protocol.md §3.5 and every err_code of §5.4."""

from __future__ import annotations

from hongbao.sim.app import Simulator
from hongbao.sim.faults import parse_fault
from hongbao.wire.local import PeerInfo
from tests.sim.simkit import Shop, expect, make_shop, parse


def _sent(shop: Shop) -> tuple[str, str]:
    params = shop.send_params()
    answer = shop.call("sendredpack", params)
    return params["mch_billno"], answer["send_listid"]


def test_query_of_a_sent_packet(shop: Shop) -> None:
    billno, listid = _sent(shop)
    answer = shop.query(billno)
    assert (answer["return_code"], answer["result_code"], answer["err_code"]) == (
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
    )
    assert answer["return_msg"] == answer["err_code_des"] == "OK"
    assert answer["detail_id"] == listid
    assert (answer["status"], answer["send_type"], answer["hb_type"]) == ("SENT", "API", "NORMAL")
    assert (answer["total_num"], answer["total_amount"]) == ("1", "1000")
    assert answer["send_time"] == "2024-03-15 10:00:00"
    assert "hblist" not in answer


def test_integers_are_bare_and_strings_cdata(shop: Shop) -> None:
    billno, _ = _sent(shop)
    body = shop.post("gethbinfo", _signed(shop, shop.query_params(billno))).body
    assert b"<total_amount>1000</total_amount>" in body
    assert b"<status><![CDATA[SENT]]></status>" in body


def _signed(shop: Shop, params: dict[str, str]) -> bytes:
    from tests.sim.simkit import signed_body

    return signed_body(params, shop.creds.api_key)


def test_ca_error(shop: Shop) -> None:
    billno, _ = _sent(shop)
    answer = shop.call("gethbinfo", shop.query_params(billno), peer=PeerInfo())
    expect(answer, "CA_ERROR", "CA证书出错，请登录微信支付商户平台下载证书")


def test_sign_error(shop: Shop) -> None:
    billno, _ = _sent(shop)
    answer = shop.call("gethbinfo", shop.query_params(billno), key="k" * 32)
    expect(answer, "SIGN_ERROR", "签名错误")


def test_no_auth_from_a_caller_outside_the_whitelist(sim: Simulator) -> None:
    shop = make_shop(sim, ip_whitelist=["10.0.0.1"])
    billno, _ = _sent(shop)
    outsider = PeerInfo(ip="10.0.0.2", cert_der=shop.creds.cert_der)
    answer = shop.call("gethbinfo", shop.query_params(billno), peer=outsider)
    expect(answer, "NO_AUTH", "IP地址非你在商户平台设置的可用IP地址")


def test_not_found_for_an_unknown_bill(shop: Shop) -> None:
    expect(shop.query(shop.billno()), "NOT_FOUND", "指定单号数据不存在")


def test_not_found_for_a_bill_rejected_before_issuing(shop: Shop) -> None:
    params = shop.send_params(total_amount="1")
    assert shop.call("sendredpack", params)["err_code"] == "MONEY_LIMIT"
    expect(shop.query(params["mch_billno"]), "NOT_FOUND", "指定单号数据不存在")


def test_freq_limit_on_queries(sim: Simulator) -> None:
    shop = make_shop(sim, query_rate_per_minute=2)
    billno, _ = _sent(shop)
    assert shop.query(billno)["result_code"] == "SUCCESS"
    assert shop.query(billno)["result_code"] == "SUCCESS"
    expect(shop.query(billno), "FREQ_LIMIT", "超过频率限制,请稍后再试")


def test_xml_error(shop: Shop) -> None:
    answer = parse(shop.post("gethbinfo", b"not xml at all"))
    expect(answer, "XML_ERROR", "输入xml参数格式错误", return_code="FAIL")


def test_param_error_for_bill_type(shop: Shop) -> None:
    billno, _ = _sent(shop)
    answer = shop.call("gethbinfo", shop.query_params(billno, bill_type="OTHER"))
    expect(answer, "PARAM_ERROR", "参数错误:bill_type必须为MCHT")


def test_param_error_for_a_foreign_appid(sim: Simulator, shop: Shop) -> None:
    billno, _ = _sent(shop)
    other = make_shop(sim)
    answer = shop.call("gethbinfo", shop.query_params(billno, appid=other.creds.appid))
    expect(answer, "PARAM_ERROR", "商户号和wxappid不匹配")


def test_param_error_without_appid(shop: Shop) -> None:
    billno, _ = _sent(shop)
    answer = shop.call("gethbinfo", shop.query_params(billno, appid=""))
    expect(answer, "PARAM_ERROR", "appid字段必填,最长为32个字符")


def test_systemerror_by_fault(shop: Shop) -> None:
    billno, _ = _sent(shop)
    shop.sim.faults.add(
        parse_fault({"endpoint": "gethbinfo", "action": "error", "err_code": "SYSTEMERROR"})
    )
    expect(shop.query(billno), "SYSTEMERROR", "系统繁忙，请再试。")
    # The fault is armed for gethbinfo only.
    assert shop.send()["result_code"] == "SUCCESS"


def test_query_ignores_sub_mch_id_unsigned(shop: Shop) -> None:
    billno, _ = _sent(shop)
    answer = shop.call("gethbinfo", shop.query_params(billno), unsigned={"sub_mch_id": "1"})
    assert answer["status"] == "SENT"
