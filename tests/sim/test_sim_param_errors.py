"""PARAM_ERROR with each detail message of docs/protocol.md §5.3, and the wrong-type inputs behind
them."""

from __future__ import annotations

import pytest

from hongbao.sim.app import Simulator
from tests.sim.simkit import Shop, expect


@pytest.mark.parametrize(
    ("overrides", "des"),
    [
        ({"act_name": ""}, "act_name字段必填,并且少于32个字符"),
        ({"act_name": "a" * 33}, "act_name字段必填,并且少于32个字符"),
        ({"send_name": ""}, "send_name字段为必填并且少于32字符"),
        ({"send_name": "店" * 33}, "send_name字段为必填并且少于32字符"),
        ({"wishing": ""}, "wishing字段为必填,并且少于128个字符"),
        ({"wishing": "w" * 129}, "wishing字段为必填,并且少于128个字符"),
        ({"remark": ""}, "remark字段为必填,并且少于256字符"),
        ({"remark": "r" * 257}, "remark字段为必填,并且少于256字符"),
        ({"re_openid": ""}, "re_openid字段为必填并且少于32个字符"),
        ({"re_openid": "o" * 33}, "re_openid字段为必填并且少于32个字符"),
        ({"nonce_str": ""}, "nonce_str字段必填,并且少于32字符"),
        ({"nonce_str": "n" * 33}, "nonce_str字段必填,并且少于32字符"),
        ({"mch_billno": ""}, "订单号字段必填,最长为28个字符"),
        ({"mch_billno": "1" * 29}, "订单号字段必填,最长为28个字符"),
        ({"mch_billno": "2024-03-15-01"}, "订单号字段必填,最长为28个字符"),
        ({"wxappid": ""}, "appid字段必填,最长为32个字符"),
        ({"wxappid": "w" * 33}, "appid字段必填,最长为32个字符"),
        ({"client_ip": "300.1.1.1"}, "client_ip必须是合法的IP字符串"),
        ({"client_ip": ""}, "client_ip必须是合法的IP字符串"),
        ({"mch_id": ""}, "输入的商户号有误"),
        ({"mch_id": "19x0000109"}, "输入的商户号有误"),
        ({"mch_id": "1999999999"}, "找不到对应的商户号"),
        ({"wxappid": "wx0000000000000000"}, "商户号和wxappid不匹配"),
        ({"total_num": "2"}, "参数错误:total_num必须等于1"),
        ({"total_num": "one"}, "参数错误:total_num必须等于1"),
        (
            {"scene_id": "PRODUCT_1"},
            "参数错误:该场景未开通,请登陆商户平台:产品中心-现金红包-产品设置-使用场景 进行开通",
        ),
        (
            {"scene_id": "PRODUCT_9"},
            "参数错误:该场景未开通,请登陆商户平台:产品中心-现金红包-产品设置-使用场景 进行开通",
        ),
        ({"total_amount": "10.00"}, "红包金额参数错误"),
        ({"total_amount": "-100"}, "红包金额参数错误"),
        ({"total_amount": "99999999999"}, "红包金额参数错误"),
        ({"total_amount": ""}, "红包金额参数错误"),
        # Unicode digits: str.isdigit() says yes, int() then fails (a SYSTEMERROR once).
        ({"total_amount": "²"}, "红包金额参数错误"),
        ({"total_amount": "١٠٠"}, "红包金额参数错误"),
        ({"total_amount": "１００"}, "红包金额参数错误"),
        ({"total_num": "²"}, "参数错误:total_num必须等于1"),
    ],
)
def test_sendredpack_param_errors(shop: Shop, overrides: dict[str, str], des: str) -> None:
    expect(shop.call("sendredpack", shop.send_params(**overrides)), "PARAM_ERROR", des)


def test_appid_of_another_merchant_is_a_mismatch(sim: Simulator, shop: Shop) -> None:
    from tests.sim.simkit import make_shop

    other = make_shop(sim)
    answer = shop.send(wxappid=other.creds.appid, re_openid=other.users[0])
    expect(answer, "PARAM_ERROR", "商户号和wxappid不匹配")


@pytest.mark.parametrize("total_num", ["2", "21", "x"])
def test_group_total_num_must_be_3_to_20(shop: Shop, total_num: str) -> None:
    answer = shop.call("sendgroupredpack", shop.group_params(total_num=total_num))
    expect(answer, "PARAM_ERROR", "参数错误:total_num必须介于(包括)3到20之间.")


def test_group_amt_type_must_be_all_rand(shop: Shop) -> None:
    answer = shop.call("sendgroupredpack", shop.group_params(amt_type="FIXED"))
    expect(answer, "PARAM_ERROR", "参数错误:amt_type必须为ALL_RAND")


def test_mini_notify_way_must_be_jsapi(shop: Shop) -> None:
    answer = shop.call("sendminiprogramhb", shop.mini_params(notify_way="SMS"))
    expect(answer, "PARAM_ERROR", "参数错误:notify_way必须为MINI_PROGRAM_JSAPI")


def test_mini_total_num_must_be_one(shop: Shop) -> None:
    answer = shop.call("sendminiprogramhb", shop.mini_params(total_num="3"))
    expect(answer, "PARAM_ERROR", "参数错误:total_num必须等于1")


def test_group_and_mini_accept_a_missing_client_ip(shop: Shop) -> None:
    assert "client_ip" not in shop.group_params()
    assert shop.call("sendgroupredpack", shop.group_params())["result_code"] == "SUCCESS"
    assert shop.call("sendminiprogramhb", shop.mini_params())["result_code"] == "SUCCESS"
