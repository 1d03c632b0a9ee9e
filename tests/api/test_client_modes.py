"""The four APIs through `Client` and `AsyncClient`, against the simulator in-process and served.

Every test runs in both modes (see `tests.api.modekit`): in-process, and over mutual TLS with the
merchant's certificate (httpx for `Client`, asyncio for `AsyncClient`). The simulator's ledger is
the ground truth of what was paid. The async tests mirror the sync ones.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote

import pytest

from hongbao.api import RedpackInfo, RedpackStatus, SendResult
from hongbao.errors import BillConflictError, ValidationError
from tests.api.modekit import Bench, Shop

DAY = 24 * 3600
REFUND_LAG = 16 * 60  # the simulator refunds 15 minutes after expiry (≈16 min observed live)


# --- what the tests check, shared by the sync and async twins ---------------------------------


def _check_sent(shop: Shop, args: dict[str, Any], sent: SendResult, info: RedpackInfo) -> None:
    assert (sent.mch_billno, sent.re_openid, sent.total_amount) == (
        args["mch_billno"],
        args["re_openid"],
        args["total_amount"],
    )
    assert sent.wxappid == shop.creds.appid
    assert len(sent.send_listid) == 31
    assert sent.send_listid.isdigit()
    assert info.found
    assert (info.status, info.detail_id, info.hb_type) == (
        RedpackStatus.SENT,
        sent.send_listid,
        "NORMAL",
    )
    assert (info.total_num, info.total_amount) == (1, args["total_amount"])
    assert info.send_time == shop.bench.sim.clock.now()
    assert info.model_extra is not None
    assert info.model_extra["wishing"] == args["wishing"]  # CDATA-breaking text, round trip


def _check_paid_once(shop: Shop, args: dict[str, Any], balance_before: int) -> None:
    balance, rows = shop.ledger()
    assert [(r.mch_billno, r.re_openid, r.total_amount, r.status) for r in rows] == [
        (args["mch_billno"], args["re_openid"], args["total_amount"], "SENT")
    ]
    assert balance == balance_before - args["total_amount"]


def _check_conflicts(
    openid: pytest.ExceptionInfo[BillConflictError], amount: pytest.ExceptionInfo[BillConflictError]
) -> None:
    assert (openid.value.err_code, openid.value.err_code_des) == (
        "FATAL_ERROR",
        "更换了openid，但商户单号未更新",
    )
    assert (amount.value.err_code, amount.value.err_code_des) == (
        "FATAL_ERROR",
        "金额和原始单参数不一致",
    )


def _check_group(shop: Shop, sent: SendResult, statuses: list[str], info: RedpackInfo) -> None:
    assert statuses == ["SENT", "SENT", "RECEIVED"]
    assert (info.status, info.hb_type, info.total_num, info.total_amount, info.detail_id) == (
        RedpackStatus.RECEIVED,
        "GROUP",
        3,
        900,
        sent.send_listid,
    )
    amounts = [receipt.amount for receipt in info.receipts]
    assert sum(amounts) == 900
    assert min(amounts) >= 100
    assert info.receipts[0].openid == shop.users[0]  # the seed user claims the first share
    assert len({receipt.openid for receipt in info.receipts}) == 3


def _check_mini_sent(shop: Shop, sent: SendResult, params: dict[str, str]) -> dict[str, str]:
    assert sent.package is not None
    assert parse_qs(sent.package)["appid"] == [shop.creds.mini_appid]
    assert params["package"] == quote(sent.package, safe="")
    assert params["timeStamp"] == str(int(shop.bench.sim.clock.now().timestamp()))
    assert params["signType"] == "MD5"
    # The mini program adds its own appid when it calls wx.sendBizRedPacket.
    return {"appId": shop.creds.mini_appid, **params}


def _check_mini_received(shop: Shop, args: dict[str, Any], info: RedpackInfo) -> None:
    assert (info.status, info.hb_type) == (RedpackStatus.RECEIVED, "NORMAL")
    assert [(r.openid, r.amount, r.rcv_time) for r in info.receipts] == [
        (args["re_openid"], args["total_amount"], shop.bench.sim.clock.now())
    ]


def _check_received(shop: Shop, args: dict[str, Any], info: RedpackInfo) -> None:
    assert info.status is RedpackStatus.RECEIVED
    assert [(r.openid, r.amount, r.rcv_time) for r in info.receipts] == [
        (args["re_openid"], args["total_amount"], info.send_time)
    ]
    assert info.refund_amount is None


def _check_refunded(args: dict[str, Any], info: RedpackInfo) -> None:
    assert info.status is RedpackStatus.REFUND
    assert info.refund_amount == args["total_amount"]
    assert info.send_time is not None
    assert info.refund_time is not None
    assert info.refund_time - info.send_time >= timedelta(days=1)
    assert info.receipts == []


# --- sendredpack and gethbinfo ----------------------------------------------------------------


def test_sendredpack_pays_once_and_gethbinfo_reports_it_sent(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    balance = shop.ledger()[0]
    args = shop.args(total_amount=1000)
    sent = client.send_redpack(**args)
    _check_sent(shop, args, sent, client.query_redpack(args["mch_billno"]))
    _check_paid_once(shop, args, balance)


async def test_async_sendredpack_pays_once_and_gethbinfo_reports_it_sent(bench: Bench) -> None:
    shop = bench.shop()
    balance = shop.ledger()[0]
    args = shop.args(total_amount=1000)
    async with shop.async_client() as client:
        sent = await client.send_redpack(**args)
        info = await client.query_redpack(args["mch_billno"])
    _check_sent(shop, args, sent, info)
    _check_paid_once(shop, args, balance)


# --- re-entry on the bill number --------------------------------------------------------------


def test_resending_a_bill_replays_the_original_and_pays_once(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    balance = shop.ledger()[0]
    args = shop.args()
    first = client.send_redpack(**args)
    again = client.send_redpack(**args)
    assert again.send_listid == first.send_listid
    with pytest.raises(BillConflictError) as openid:
        client.send_redpack(**{**args, "re_openid": shop.users[1]})
    with pytest.raises(BillConflictError) as amount:
        client.send_redpack(**{**args, "total_amount": 101})
    _check_conflicts(openid, amount)
    _check_paid_once(shop, args, balance)


async def test_async_resending_a_bill_replays_the_original_and_pays_once(bench: Bench) -> None:
    shop = bench.shop()
    balance = shop.ledger()[0]
    args = shop.args()
    async with shop.async_client() as client:
        first = await client.send_redpack(**args)
        again = await client.send_redpack(**args)
        with pytest.raises(BillConflictError) as openid:
            await client.send_redpack(**{**args, "re_openid": shop.users[1]})
        with pytest.raises(BillConflictError) as amount:
            await client.send_redpack(**{**args, "total_amount": 101})
    assert again.send_listid == first.send_listid
    _check_conflicts(openid, amount)
    _check_paid_once(shop, args, balance)


# --- sendgroupredpack -------------------------------------------------------------------------


def test_sendgroupredpack_splits_the_set_and_every_share_is_received(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    args = shop.args(total_amount=900)
    sent = client.send_group_redpack(**args, total_num=3)
    statuses = [bench.open(shop.creds, args["mch_billno"]) for _ in range(3)]
    _check_group(shop, sent, statuses, client.query_redpack(args["mch_billno"]))


async def test_async_sendgroupredpack_splits_the_set_and_every_share_is_received(
    bench: Bench,
) -> None:
    shop = bench.shop()
    args = shop.args(total_amount=900)
    async with shop.async_client() as client:
        sent = await client.send_group_redpack(**args, total_num=3)
        statuses = [bench.open(shop.creds, args["mch_billno"]) for _ in range(3)]
        info = await client.query_redpack(args["mch_billno"])
    _check_group(shop, sent, statuses, info)


# --- sendminiprogramhb and wx.sendBizRedPacket ------------------------------------------------


def test_sendminiprogramhb_is_opened_in_the_mini_program_with_jsapi_params(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    args = shop.args(re_openid=shop.mini_users[0])
    sent = client.send_miniprogram_redpack(**args)
    fields = _check_mini_sent(shop, sent, client.jsapi_params(sent.package or ""))
    assert bench.open_mini(fields) == (0, "ok")
    assert bench.open_mini(fields)[1] == "已经绑定过红包"  # docs/protocol.md §7: already opened
    _check_mini_received(shop, args, client.query_redpack(args["mch_billno"]))


async def test_async_sendminiprogramhb_is_opened_in_the_mini_program_with_jsapi_params(
    bench: Bench,
) -> None:
    shop = bench.shop()
    args = shop.args(re_openid=shop.mini_users[0])
    async with shop.async_client() as client:
        sent = await client.send_miniprogram_redpack(**args)
        fields = _check_mini_sent(shop, sent, client.jsapi_params(sent.package or ""))
        assert bench.open_mini(fields) == (0, "ok")
        assert bench.open_mini(fields)[1] == "已经绑定过红包"
        info = await client.query_redpack(args["mch_billno"])
    _check_mini_received(shop, args, info)


# --- gethbinfo: not found, received, refunded -------------------------------------------------


def test_gethbinfo_of_a_bill_never_sent_is_not_found(bench: Bench) -> None:
    shop = bench.shop()
    info = shop.client().query_redpack(shop.bill())
    assert (info.found, info.status, info.detail_id) == (False, None, None)
    assert "指定单号数据不存在" in info.raw.decode()


async def test_async_gethbinfo_of_a_bill_never_sent_is_not_found(bench: Bench) -> None:
    shop = bench.shop()
    async with shop.async_client() as client:
        info = await client.query_redpack(shop.bill())
    assert (info.found, info.status, info.detail_id) == (False, None, None)
    assert "指定单号数据不存在" in info.raw.decode()


def test_gethbinfo_after_the_user_opens_and_after_24_hours_unopened(bench: Bench) -> None:
    shop = bench.shop()
    client = shop.client()
    opened, kept = shop.args(), shop.args(re_openid=shop.users[1], total_amount=200)
    client.send_redpack(**opened)
    client.send_redpack(**kept)
    balance = shop.ledger()[0]
    assert bench.open(shop.creds, opened["mch_billno"]) == "RECEIVED"
    _check_received(shop, opened, client.query_redpack(opened["mch_billno"]))
    bench.advance(DAY + REFUND_LAG)
    _check_refunded(kept, client.query_redpack(kept["mch_billno"]))
    _check_received(shop, opened, client.query_redpack(opened["mch_billno"]))
    assert shop.ledger()[0] == balance + kept["total_amount"]


async def test_async_gethbinfo_after_the_user_opens_and_after_24_hours_unopened(
    bench: Bench,
) -> None:
    shop = bench.shop()
    opened, kept = shop.args(), shop.args(re_openid=shop.users[1], total_amount=200)
    async with shop.async_client() as client:
        await client.send_redpack(**opened)
        await client.send_redpack(**kept)
        balance = shop.ledger()[0]
        assert bench.open(shop.creds, opened["mch_billno"]) == "RECEIVED"
        _check_received(shop, opened, await client.query_redpack(opened["mch_billno"]))
        bench.advance(DAY + REFUND_LAG)
        _check_refunded(kept, await client.query_redpack(kept["mch_billno"]))
        _check_received(shop, opened, await client.query_redpack(opened["mch_billno"]))
    assert shop.ledger()[0] == balance + kept["total_amount"]


# --- refused before anything leaves -----------------------------------------------------------


def test_an_amount_needing_a_scene_is_refused_before_sending(bench: Bench) -> None:
    shop = bench.shop(rate_per_minute=1)
    client = shop.client()
    with pytest.raises(ValidationError) as refused:
        client.send_redpack(**shop.args(total_amount=20001))
    assert (refused.value.field, refused.value.rule) == ("scene_id", "scene_required")
    # The simulator counts every send call against the rate: had the refused one reached it,
    # this one would be FREQ_LIMIT.
    assert client.send_redpack(**shop.args()).send_listid
