"""The validation order of docs/protocol.md §6.2: where two errors compete, the earlier step
answers."""

from __future__ import annotations

from hongbao.sim.app import Simulator
from hongbao.sim.state import MerchantSettings
from hongbao.wire.local import PeerInfo
from tests.sim.simkit import Shop, make_shop, parse, signed_body

NO_CERT = PeerInfo(ip="10.0.0.1")


def test_method_before_everything(sim: Simulator) -> None:
    from starlette.testclient import TestClient

    from hongbao.sim.app import create_app

    with TestClient(create_app(sim)) as client:
        answer = client.get("/mmpaymkttransfers/sendredpack")
    assert answer.status_code == 200
    assert "<return_code><![CDATA[FAIL]]></return_code>" in answer.text
    assert "请使用post方法" in answer.text


def test_xml_before_merchant(shop: Shop) -> None:
    assert (
        parse(shop.post("sendredpack", b"<xml><mch_id>1</mch_id>", NO_CERT))["err_code"]
        == "XML_ERROR"
    )


def test_unknown_merchant_before_certificate(shop: Shop) -> None:
    answer = shop.call("sendredpack", shop.send_params(mch_id="1999999999"), peer=NO_CERT)
    assert answer["err_code_des"] == "找不到对应的商户号"


def test_certificate_before_signature(shop: Shop) -> None:
    answer = shop.call("sendredpack", shop.send_params(), key="0" * 32, peer=NO_CERT)
    assert answer["err_code"] == "CA_ERROR"


def test_signature_before_product(sim: Simulator) -> None:
    shop = make_shop(sim, product_enabled=False)
    assert shop.call("sendredpack", shop.send_params(), key="0" * 32)["err_code"] == "SIGN_ERROR"


def test_product_then_restriction_then_api_switch(sim: Simulator) -> None:
    shop = make_shop(sim, product_enabled=False, restricted=True, api_enabled=False)
    assert shop.send()["err_code"] == "PRODUCT_AUTHORITY_UNOPEN"
    sim.state.update_merchant(shop.mch_id, MerchantSettings(product_enabled=True))
    assert shop.send()["err_code"] == "PAYER_ACCOUNT_ABNORMAL"
    sim.state.update_merchant(shop.mch_id, MerchantSettings(restricted=False))
    assert shop.send()["err_code"] == "API_METHOD_CLOSED"


def test_api_switch_before_ip(sim: Simulator) -> None:
    shop = make_shop(sim, api_enabled=False, ip_whitelist=["10.9.9.9"])
    assert shop.send()["err_code"] == "API_METHOD_CLOSED"


def test_ip_before_frequency(sim: Simulator) -> None:
    shop = make_shop(sim, rate_per_minute=0, ip_whitelist=["10.9.9.9"])
    assert shop.send()["err_code_des"] == "IP地址非你在商户平台设置的可用IP地址"


def test_frequency_before_parameters(sim: Simulator) -> None:
    shop = make_shop(sim, rate_per_minute=0)
    assert shop.send(wishing="")["err_code"] == "FREQ_LIMIT"


def test_parameters_before_amount(shop: Shop) -> None:
    answer = shop.send(wishing="", total_amount="1")
    assert answer["err_code_des"] == "wishing字段为必填,并且少于128个字符"


def test_scene_enablement_before_amount(shop: Shop) -> None:
    answer = shop.send(scene_id="PRODUCT_3", total_amount="1")
    assert answer["err_code"] == "PARAM_ERROR"


def test_illegal_appid_before_openid(shop: Shop) -> None:
    assert shop.send(wxappid=shop.creds.app_appid)["err_code"] == "ILLEGAL_APPID"


def test_openid_before_amount(shop: Shop) -> None:
    assert shop.send(re_openid="o-unknown", total_amount="1")["err_code"] == "OPENID_ERROR"


def test_amount_before_bill_number(shop: Shop) -> None:
    params = shop.send_params()
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"
    assert shop.call("sendredpack", {**params, "total_amount": "1"})["err_code"] == "MONEY_LIMIT"


def test_ip_before_bill_number_as_observed_live(sim: Simulator) -> None:
    shop = make_shop(sim)
    params = shop.send_params()
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"
    sim.state.update_merchant(shop.mch_id, MerchantSettings(ip_whitelist=["10.9.9.9"]))
    answer = shop.call("sendredpack", {**params, "total_amount": "1001"})
    assert answer["err_code_des"] == "IP地址非你在商户平台设置的可用IP地址"


def test_bill_number_before_risk(shop: Shop) -> None:
    params = shop.send_params()
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"
    shop.sim.state.set_blocked(shop.users[1], True)
    assert (
        shop.call("sendredpack", {**params, "re_openid": shop.users[1]})["err_code"]
        == "FATAL_ERROR"
    )


def test_risk_before_limits(sim: Simulator) -> None:
    shop = make_shop(sim, per_user_count=0)
    sim.state.set_blocked(shop.users[0], True)
    assert shop.send()["err_code_des"] == "发放失败，此请求可能存在风险，已被微信拦截"


def test_user_count_before_user_amount_before_merchant_amount(sim: Simulator) -> None:
    shop = make_shop(sim, per_user_count=0, per_user_amount=0, merchant_amount=0)
    assert shop.send()["err_code"] == "SENDNUM_LIMIT"
    sim.state.update_merchant(shop.mch_id, MerchantSettings(per_user_count=10))
    assert shop.send()["err_code"] == "RCVDAMOUNT_LIMIT"
    sim.state.update_merchant(shop.mch_id, MerchantSettings(per_user_amount=100_000))
    assert shop.send()["err_code"] == "SENDAMOUNT_LIMIT"


def test_limits_before_balance(sim: Simulator) -> None:
    shop = make_shop(sim, per_user_count=0, balance_fen=0)
    assert shop.send()["err_code"] == "SENDNUM_LIMIT"


def test_signature_covers_only_recognised_fields_of_each_api(shop: Shop) -> None:
    # gethbinfo does not recognise wxappid: signing it breaks the signature there only.
    params = shop.send_params()
    assert shop.call("sendredpack", params)["result_code"] == "SUCCESS"
    query = {**shop.query_params(params["mch_billno"]), "wxappid": shop.creds.appid}
    body = signed_body(query, shop.creds.api_key)
    assert parse(shop.post("gethbinfo", body))["err_code"] == "SIGN_ERROR"
