"""Record lifecycle on the simulator's clock (docs/protocol.md §4, §6.4, §7)."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import quote

import pytest

from hongbao.clock import CST
from hongbao.sim.app import Simulator
from hongbao.sim.exceptions import InvalidStateError
from hongbao.wire.sign import sign
from tests.sim.simkit import Shop, make_shop

DAY = 24 * 3600


def _send(shop: Shop, api: str = "sendredpack", **overrides: str) -> dict[str, str]:
    params = {
        "sendredpack": shop.send_params,
        "sendgroupredpack": shop.group_params,
        "sendminiprogramhb": shop.mini_params,
    }[api](**overrides)
    answer = shop.call(api, params)
    assert answer["result_code"] == "SUCCESS", answer
    return {**params, **answer}


def _balance(shop: Shop) -> int:
    return shop.sim.state.merchant(shop.mch_id).balance_fen


def test_unclaimed_packet_is_refunded_after_24_hours(shop: Shop) -> None:
    sent = _send(shop)
    after_send = _balance(shop)
    shop.sim.move_clock(advance_seconds=DAY - 1)
    assert shop.query(sent["mch_billno"])["status"] == "SENT"
    shop.sim.move_clock(advance_seconds=1)
    assert shop.query(sent["mch_billno"])["status"] == "RFUND_ING"
    assert _balance(shop) == after_send
    shop.sim.move_clock(advance_seconds=15 * 60)
    record = shop.query(sent["mch_billno"])
    assert record["status"] == "REFUND"
    assert record["refund_amount"] == "1000"
    assert record["refund_time"] == "2024-03-16 10:15:00"
    assert _balance(shop) == after_send + 1000


def test_opened_packet_is_received_and_never_refunded(shop: Shop) -> None:
    sent = _send(shop)
    shop.sim.move_clock(advance_seconds=3600)
    opened = shop.sim.state.open_packet(shop.mch_id, sent["mch_billno"])
    assert (opened.openid, opened.amount) == (shop.users[0], 1000)
    shop.sim.move_clock(advance_seconds=2 * DAY)
    record = shop.query(sent["mch_billno"])
    assert record["status"] == "RECEIVED"
    assert record["hblist"] == [
        {"openid": shop.users[0], "amount": "1000", "rcv_time": "2024-03-15 11:00:00"}
    ]
    assert "refund_amount" not in record
    assert shop.sim.state.record(shop.mch_id, sent["mch_billno"]).shares[0].openid == shop.users[0]


def test_a_packet_cannot_be_opened_after_expiry_or_twice(shop: Shop) -> None:
    first, second = _send(shop), _send(shop)
    shop.sim.state.open_packet(shop.mch_id, first["mch_billno"])
    with pytest.raises(InvalidStateError):
        shop.sim.state.open_packet(shop.mch_id, first["mch_billno"])
    shop.sim.move_clock(advance_seconds=DAY)
    with pytest.raises(InvalidStateError):
        shop.sim.state.open_packet(shop.mch_id, second["mch_billno"])


def test_records_leave_the_query_window_after_30_days(shop: Shop) -> None:
    sent = _send(shop)
    shop.sim.move_clock(advance_seconds=30 * DAY)
    assert shop.query(sent["mch_billno"])["status"] == "REFUND"
    shop.sim.move_clock(advance_seconds=1)
    answer = shop.query(sent["mch_billno"])
    assert (answer["err_code"], answer["err_code_des"]) == ("NOT_FOUND", "指定单号数据不存在")
    # The ground truth still knows it, and re-entry still refuses to pay it again.
    assert [row.status for row in shop.ledger()[1]] == ["REFUND"]
    assert (
        shop.call("sendredpack", shop.send_params(mch_billno=sent["mch_billno"]))["send_listid"]
        == sent["send_listid"]
    )


def test_soft_failure_turns_failed_after_24_hours_without_reason(sim: Simulator) -> None:
    shop = make_shop(sim, balance_fen=0)
    params = shop.send_params()
    assert shop.call("sendredpack", params)["err_code"] == "NOTENOUGH"
    sim.move_clock(advance_seconds=DAY - 1)
    record = shop.query(params["mch_billno"])
    assert (record["status"], record["reason"]) == (
        "SENDING",
        "帐号余额不足，请到商户平台充值后再重试",
    )
    sim.move_clock(advance_seconds=1)
    record = shop.query(params["mch_billno"])
    assert record["status"] == "FAILED"
    assert "reason" not in record


def test_daily_counters_reset_at_midnight_beijing_time(sim: Simulator) -> None:
    shop = make_shop(sim, per_user_count=1)
    sim.move_clock(now=datetime(2024, 3, 15, 23, 59, 30, tzinfo=CST))
    assert shop.send()["result_code"] == "SUCCESS"
    assert shop.send()["err_code"] == "SENDNUM_LIMIT"
    sim.move_clock(advance_seconds=30)
    assert shop.send()["result_code"] == "SUCCESS"


def test_fission_set_is_claimed_share_by_share(shop: Shop) -> None:
    sent = _send(shop, "sendgroupredpack", total_amount="900", total_num="3")
    state = shop.sim.state
    seed = state.open_packet(shop.mch_id, sent["mch_billno"])
    assert seed.openid == shop.users[0]
    record = shop.query(sent["mch_billno"])
    assert (record["status"], record["hb_type"], record["total_num"]) == ("SENT", "GROUP", "3")
    assert [item["openid"] for item in record["hblist"]] == [shop.users[0]]
    friend = state.open_packet(shop.mch_id, sent["mch_billno"], shop.users[1])
    last = state.open_packet(shop.mch_id, sent["mch_billno"])  # a new friend
    assert last.status.value == "RECEIVED"
    record = shop.query(sent["mch_billno"])
    amounts = [int(item["amount"]) for item in record["hblist"]]
    assert amounts == [seed.amount, friend.amount, last.amount]
    assert sum(amounts) == 900
    assert min(amounts) >= 100
    assert {item["status"] for item in record["hblist"]} == {"RECEIVED"}


def test_fission_seed_claims_first_and_nobody_claims_twice(shop: Shop) -> None:
    sent = _send(shop, "sendgroupredpack")
    state = shop.sim.state
    with pytest.raises(InvalidStateError):
        state.open_packet(shop.mch_id, sent["mch_billno"], shop.users[1])
    state.open_packet(shop.mch_id, sent["mch_billno"])
    with pytest.raises(InvalidStateError):
        state.open_packet(shop.mch_id, sent["mch_billno"], shop.users[0])


def test_partially_claimed_fission_set_refunds_the_rest(shop: Shop) -> None:
    sent = _send(shop, "sendgroupredpack", total_amount="900", total_num="3")
    after_send = _balance(shop)
    seed = shop.sim.state.open_packet(shop.mch_id, sent["mch_billno"])
    shop.sim.move_clock(advance_seconds=DAY + 15 * 60)
    record = shop.query(sent["mch_billno"])
    assert record["status"] == "REFUND"
    assert int(record["refund_amount"]) == 900 - seed.amount
    assert len(record["hblist"]) == 1
    assert _balance(shop) == after_send + 900 - seed.amount


def _jsapi(shop: Shop, package: str, key: str | None = None) -> dict[str, str]:
    fields = {
        "appId": shop.creds.mini_appid,
        "timeStamp": "1710468000",
        "nonceStr": "Ww213sdad",
        "package": quote(package, safe=""),
    }
    return {**fields, "signType": "MD5", "paySign": sign(fields, key or shop.creds.api_key)}


def test_mini_program_packet_opens_with_a_correct_pay_sign(shop: Shop) -> None:
    sent = _send(shop, "sendminiprogramhb")
    package = sent["package"]
    ids = f"mchid={shop.mch_id}&appid={shop.creds.mini_appid}"
    pattern = rf"sendid=[0-9a-f]{{64}}&ver=8&sign=[0-9a-f]{{128}}&{ids}"
    assert re.fullmatch(pattern, package)
    assert shop.sim.state.open_mini(_jsapi(shop, package)) == (0, "ok")
    record = shop.query(sent["mch_billno"])
    assert (record["status"], record["hb_type"]) == ("RECEIVED", "NORMAL")
    assert shop.sim.state.open_mini(_jsapi(shop, package)) == (-1, "已经绑定过红包")


def test_mini_program_open_refuses_a_wrong_pay_sign(shop: Shop) -> None:
    sent = _send(shop, "sendminiprogramhb")
    assert shop.sim.state.open_mini(_jsapi(shop, sent["package"], key="z" * 32)) == (-1, "签名失败")
    assert shop.query(sent["mch_billno"])["status"] == "SENT"


def test_mini_program_pay_sign_case_does_not_matter(shop: Shop) -> None:
    sent = _send(shop, "sendminiprogramhb")
    fields = _jsapi(shop, sent["package"])
    fields["paySign"] = fields["paySign"].lower()
    assert shop.sim.state.open_mini(fields) == (0, "ok")


def test_mini_program_open_refuses_an_unescaped_or_unknown_package(shop: Shop) -> None:
    sent = _send(shop, "sendminiprogramhb")
    fields = _jsapi(shop, sent["package"].replace("ver=8", "ver=9"))
    assert shop.sim.state.open_mini(fields) == (-1, "参数格式校验错误")
    assert shop.sim.state.open_mini({"appId": shop.creds.mini_appid}) == (-1, "参数格式校验错误")


def test_mini_program_packet_expires_after_24_hours(shop: Shop) -> None:
    sent = _send(shop, "sendminiprogramhb")
    shop.sim.move_clock(advance_seconds=DAY)
    assert shop.sim.state.open_mini(_jsapi(shop, sent["package"])) == (-1, "已经过期")
