"""The rule-mode ASGI app and its dispatcher, against the in-process simulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import httpx
import pytest

from hongbao.api import BaseClient
from hongbao.clock import SystemClock
from hongbao.engine.notify import NOTIFY_PATH, RuleService, create_app
from hongbao.engine.notify_verify import SUCCESS_REPLY
from hongbao.ids import mint_bill_no
from hongbao.ledger import NewPayout, PayoutState, SendApi
from hongbao.sim.payments import PayOrder
from tests.engine.enginekit import merchant_of
from tests.engine.ruleskit import World, make_world, service, until
from tests.memkit import MB, Body, rss_growth

PAID = (PayoutState.SENT, PayoutState.RECEIVED)


@pytest.fixture
def world(sqlite_url: str) -> Iterator[World]:
    made = make_world(sqlite_url)
    yield made
    made.close()


def _http(app_service: RuleService) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(app_service))
    return httpx.AsyncClient(transport=transport, base_url="http://merchant.test")


async def test_a_qualifying_payment_is_acknowledged_and_paid_once(world: World) -> None:
    body = world.pay(world.users[0], 12_000)
    async with service(world) as running, _http(running) as http:
        answers = [await http.post(NOTIFY_PATH, content=body) for _ in range(3)]
        await until(lambda: len(world.issued()) == 1)
        await asyncio.sleep(0.2)  # time enough for a second packet, were one planned
    assert [(a.status_code, a.content) for a in answers] == [(200, SUCCESS_REPLY)] * 3
    assert world.issued() == [("sendredpack", world.users[0], 188)]


async def test_a_forged_notification_is_answered_fail_over_http(world: World) -> None:
    body = world.pay(world.users[0], 12_000).replace(b">12000<", b">99000<")
    async with service(world) as running, _http(running) as http:
        answer = await http.post(NOTIFY_PATH, content=body)
        await asyncio.sleep(0.2)
    assert answer.status_code == 400
    assert b"<![CDATA[FAIL]]>" in answer.content
    assert world.issued() == []
    assert world.ledger.find_payment("anything") is None


async def test_a_notification_declaring_gbk_is_refused_as_malformed_not_a_500(
    world: World,
) -> None:
    body = world.pay(world.users[0], 12_000).replace(
        b"<xml>", b'<?xml version="1.0" encoding="GBK"?><xml>', 1
    )
    async with service(world) as running, _http(running) as http:
        answer = await http.post(NOTIFY_PATH, content=body)
    assert answer.status_code == 400
    assert b"<![CDATA[FAIL]]>" in answer.content
    assert world.issued() == []


async def test_simulated_payments_delivered_concurrently_pay_once_each(world: World) -> None:
    async with service(world) as running:
        app = create_app(running)
        world.sim.payments.client_factory = lambda: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app)
        )
        orders = [
            (world.users[0], 12_000, 4, True),
            (world.users[1], 12_000, 3, False),
            (world.users[2], 500, 5, True),  # below the threshold: acknowledged, not paid
        ]
        records = [
            await world.sim.payments.pay(
                PayOrder.from_json(
                    {
                        "mch_id": world.mch_id,
                        "appid": world.creds.appid,
                        "openid": openid,
                        "total_fee": fee,
                        "notify_url": f"http://merchant.test{NOTIFY_PATH}",
                        "duplicates": copies,
                        "concurrent": concurrent,
                    }
                )
            )
            for openid, fee, copies, concurrent in orders
        ]
        await world.sim.payments.drain()
        await until(lambda: len(world.issued()) == 2)
        await asyncio.sleep(0.2)
    for record, (_, _, copies, _) in zip(records, orders, strict=True):
        assert [d.acknowledged for d in record.deliveries] == [True] * copies
    assert sorted(world.issued()) == sorted(
        [("sendredpack", world.users[0], 188), ("sendredpack", world.users[1], 188)]
    )


async def test_on_start_payouts_left_by_a_crash_are_recovered_and_planned_ones_sent(
    world: World,
) -> None:
    handler = world.handler()
    sent_before_crash = handler.receive(world.pay(world.users[0], 12_000))
    never_sent = handler.receive(world.pay(world.users[1], 12_000))
    assert sent_before_crash.recorded is not None
    assert never_sent.recorded is not None
    [crashed_id] = sent_before_crash.recorded.payout_ids
    [planned_id] = never_sent.recorded.payout_ids
    # The crash: claimed, the request reached WeChat, the process died before recording it.
    [claimed] = world.store.claim(payout_ids=[crashed_id], lease_seconds=0).claimed
    await world.client().send_frozen(claimed.api.value, claimed.params)
    assert len(world.issued()) == 1

    async with service(world):
        await until(
            lambda: {world.store.get_payout(i).state for i in (crashed_id, planned_id)} <= set(PAID)
        )
    assert sorted(world.issued()) == sorted(
        [("sendredpack", world.users[0], 188), ("sendredpack", world.users[1], 188)]
    )
    kinds = [event.kind for event in world.store.events(crashed_id)]
    assert "recover" in kinds


async def test_a_merchants_own_handler_records_and_the_background_service_sends(
    world: World,
) -> None:
    running = service(world)
    running.start_background()
    try:
        reply = await asyncio.to_thread(
            running.handler.handle_payment, world.pay(world.users[0], 20_000)
        )
        assert reply == SUCCESS_REPLY
        await until(lambda: len(world.issued()) == 1)
    finally:
        await asyncio.to_thread(running.stop_background)
    assert world.issued() == [("sendredpack", world.users[0], 188)]


async def test_without_a_dispatcher_payouts_wait_planned_in_the_ledger(world: World) -> None:
    async with service(world, send=False) as running, _http(running) as http:
        answer = await http.post(NOTIFY_PATH, content=world.pay(world.users[0], 12_000))
        await asyncio.sleep(0.2)
    assert answer.content == SUCCESS_REPLY
    assert world.issued() == []
    [summary] = world.ledger.summaries()
    assert summary.payouts[PayoutState.PLANNED].count == 1


async def test_the_dispatcher_leaves_payouts_that_are_not_rule_payouts_alone(world: World) -> None:
    other, _ = world.store.add_payout(
        NewPayout(
            natural_key="manual:1",
            merchant="shop",
            api=SendApi.SENDREDPACK,
            params=BaseClient(merchant_of(world.creds)).send_params(
                "sendredpack",
                # Identity 0 (the default): a bill number no ledger mints.
                mch_billno=mint_bill_no(world.mch_id, SystemClock().now(), 1),
                re_openid=world.users[3],
                total_amount=100,
                send_name="Acme",
                wishing="Thanks",
                act_name="Manual",
                remark="Not a rule",
            ),
        )
    )
    async with service(world) as running, _http(running) as http:
        await http.post(NOTIFY_PATH, content=world.pay(world.users[0], 12_000))
        await until(lambda: len(world.issued()) == 1)
        await asyncio.sleep(0.2)
    assert world.store.get_payout(other.id).state is PayoutState.PLANNED
    assert world.issued() == [("sendredpack", world.users[0], 188)]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_huge_notification_is_refused_413_without_being_held(
    world: World, declared: bool
) -> None:
    # Unauthenticated: anyone can POST here. 200 MB must not become 200 MB of RAM.
    body = Body(200 * MB)
    headers = {"content-length": str(body.total)} if declared else {}
    async with service(world) as running, _http(running) as http:
        with rss_growth() as growth:
            answer = await http.post(NOTIFY_PATH, content=body.achunks(), headers=headers)
    assert growth.bytes < 50 * MB
    assert answer.status_code == 413
    assert b"<![CDATA[FAIL]]>" in answer.content
    assert body.sent <= (0 if declared else 2 * MB)  # refused on the header, or soon after
    assert world.issued() == []


async def test_a_newline_in_mch_id_cannot_forge_a_log_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    body = world.pay(world.users[0], 12_000).replace(
        f"<mch_id><![CDATA[{world.creds.mch_id}]]></mch_id>".encode(),
        b"<mch_id><![CDATA[1\nINFO hongbao.rules payment 42 recorded: forged]]></mch_id>",
    )
    assert b"forged" in body
    caplog.set_level(logging.INFO)
    async with service(world) as running, _http(running) as http:
        answer = await http.post(NOTIFY_PATH, content=body)
    assert answer.status_code == 400
    lines = [line for record in caplog.records for line in record.getMessage().splitlines()]
    assert not any(line.startswith("INFO") for line in lines)
    assert any("1\\nINFO hongbao.rules" in line for line in lines)
