"""Rule mode in the ledger: payments recorded with their payouts, exactly once, within limits.

Each test runs on SQLite and on PostgreSQL (`world` uses `ledger_url`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hongbao.clock import SystemClock, beijing_day
from hongbao.engine.notify import REQUEST_REFUSED, NotifyHandler, Receipt
from hongbao.engine.notify_verify import SUCCESS_REPLY
from hongbao.engine.rules import Match, Skip, SkipReason
from hongbao.ids import SERIALS_PER_DAY
from hongbao.ledger import PayoutState, SendApi
from hongbao.ledger.rules_store import MATCH, RuleBudget, RuleLedger
from hongbao.ledger.schema import (
    bill_serials,
    payouts,
    rule_budgets,
    rule_payments,
    rule_results,
)
from tests.engine.ruleskit import (
    World,
    make_world,
    notification_fields,
    rule,
    signed,
    transaction_id,
)


@pytest.fixture
def world(ledger_url: str) -> Iterator[World]:
    made = make_world(ledger_url)
    yield made
    made.close()


def _at_once(handler: NotifyHandler, bodies: Sequence[bytes]) -> list[Receipt]:
    """Deliver every body at the same moment, each from its own thread."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(handler.receive, bodies))


def _count(world: World, table: Table) -> int:
    with world.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_qualifying_payment_is_recorded_with_one_planned_payout(world: World) -> None:
    tx = transaction_id()
    receipt = world.handler().receive(world.pay(world.users[0], 12_000, tx=tx))
    assert receipt.reply == SUCCESS_REPLY
    assert receipt.recorded is not None
    [result] = receipt.recorded.results
    assert (result.rule, result.outcome, result.amount_fen) == ("big", MATCH, 188)
    payout = world.store.find_payout(f"rule:big:{tx}")
    assert payout is not None
    assert payout.id == result.payout_id
    assert payout.state is PayoutState.PLANNED
    assert payout.api is SendApi.SENDREDPACK
    assert (payout.re_openid, payout.total_amount, payout.mch_id) == (
        world.users[0],
        188,
        world.mch_id,
    )
    assert payout.params["wxappid"] == world.creds.appid
    assert payout.params["act_name"] == "Spend and get"
    assert payout.mch_billno.startswith(world.mch_id)


def test_a_payment_met_with_no_bill_number_left_today_is_not_acknowledged(world: World) -> None:
    today = beijing_day(SystemClock().now())
    with world.store.engine.begin() as conn:
        for day in (today, today + timedelta(days=1)):  # whichever day the payment falls on
            conn.execute(
                insert(bill_serials).values(
                    mch_id=world.mch_id, day=day, next_serial=SERIALS_PER_DAY
                )
            )
    receipt = world.handler().receive(world.pay(world.users[0], 12_000))
    assert receipt.status == 500  # WeChat resends it; recorded once bill numbers are free
    assert receipt.recorded is None
    assert _count(world, rule_payments) == 0
    assert _count(world, payouts) == 0


def test_redelivery_finds_the_payment_and_plans_nothing_more(world: World) -> None:
    handler = world.handler()
    body = world.pay(world.users[0], 12_000)
    first = handler.receive(body)
    again = [handler.receive(body) for _ in range(3)]
    assert all(r.reply == SUCCESS_REPLY for r in [first, *again])
    assert first.recorded is not None
    assert first.recorded.new
    assert all(r.recorded is not None and not r.recorded.new for r in again)
    assert {tuple(r.recorded.payout_ids) for r in again if r.recorded} == {
        tuple(first.recorded.payout_ids)
    }
    assert _count(world, payouts) == 1
    assert _count(world, rule_payments) == 1


def test_concurrent_duplicates_record_one_payment_and_one_payout(world: World) -> None:
    body = world.pay(world.users[0], 12_000)
    receipts = _at_once(world.handler(), [body] * 8)
    assert all(r.reply == SUCCESS_REPLY for r in receipts)
    assert sum(1 for r in receipts if r.recorded and r.recorded.new) == 1
    assert _count(world, payouts) == 1
    assert _count(world, rule_payments) == 1
    [summary] = world.ledger.summaries()
    assert (summary.hits, summary.committed_fen) == (1, 188)


def test_the_budget_holds_under_concurrent_payments(ledger_url: str) -> None:
    world = make_world(ledger_url, [rule(budget="3.76")], users=6)
    try:
        bodies = [world.pay(openid, 12_000) for openid in world.users]
        receipts = _at_once(world.handler(), bodies)
        assert all(r.reply == SUCCESS_REPLY for r in receipts)
        outcomes = Counter(r.recorded.results[0].outcome for r in receipts if r.recorded)
        assert outcomes == {MATCH: 2, SkipReason.BUDGET_EXHAUSTED.value: 4}
        assert _count(world, payouts) == 2
        [summary] = world.ledger.summaries()
        assert (summary.committed_fen, summary.budget_fen) == (376, 376)
    finally:
        world.close()


def test_the_per_customer_limit_holds_under_concurrent_payments(ledger_url: str) -> None:
    world = make_world(ledger_url, [rule(per_customer_limit=2)], users=2)
    try:
        mine = [world.pay(world.users[0], 12_000) for _ in range(6)]
        other = world.pay(world.users[1], 12_000)
        receipts = _at_once(world.handler(), [*mine, other])
        outcomes = Counter(
            (r.payment.openid, r.recorded.results[0].outcome)
            for r in receipts
            if r.recorded and r.payment
        )
        assert outcomes == {
            (world.users[0], MATCH): 2,
            (world.users[0], SkipReason.CUSTOMER_LIMIT.value): 4,
            (world.users[1], MATCH): 1,
        }
    finally:
        world.close()


def test_the_daily_limit_counts_by_the_payment_day_in_utc8(ledger_url: str) -> None:
    world = make_world(ledger_url, [rule(per_customer_daily_limit=1)], users=1)
    try:
        handler = world.handler()
        openid = world.users[0]
        days = ["20240315100000", "20240315235959", "20240316000000"]
        outcomes = [
            handler.receive(world.pay(openid, 12_000, time_end=day)).recorded for day in days
        ]
        assert [r.results[0].outcome for r in outcomes if r] == [
            MATCH,
            SkipReason.DAILY_LIMIT.value,
            MATCH,
        ]
    finally:
        world.close()


def test_first_payment_only_rewards_the_first_payment_recorded(ledger_url: str) -> None:
    world = make_world(ledger_url, [rule(first_payment_only=True)], users=1)
    try:
        handler = world.handler()
        openid = world.users[0]
        failed = handler.receive(world.pay(openid, 12_000, result_code="FAIL"))
        first_body = world.pay(openid, 12_000)
        first = handler.receive(first_body)
        second = handler.receive(world.pay(openid, 50_000))
        assert failed.recorded is not None
        assert failed.recorded.results[0].outcome == SkipReason.PAYMENT_FAILED.value
        assert first.recorded is not None
        assert second.recorded is not None
        assert first.recorded.results[0].outcome == MATCH
        assert second.recorded.results[0].outcome == SkipReason.NOT_FIRST_PAYMENT.value
        # Judged again after the later payment, the first one is still the first.
        preview = handler.preview(first_body)
        assert isinstance(preview.results[0], Match)
    finally:
        world.close()


def test_each_appid_kind_gets_its_api_or_a_recorded_reason(world: World) -> None:
    handler = world.handler()
    mini = handler.receive(world.pay(world.mini_users[0], 12_000, appid=world.creds.mini_appid))
    app = handler.receive(
        world.pay(world.app_users[0], 12_000, appid=world.creds.app_appid, trade_type="APP")
    )
    assert mini.recorded is not None
    assert app.recorded is not None
    [mini_payout] = mini.recorded.payout_ids
    payout = world.store.get_payout(mini_payout)
    assert payout.api is SendApi.SENDMINIPROGRAMHB
    assert payout.params["wxappid"] == world.creds.mini_appid
    assert app.reply == SUCCESS_REPLY
    assert app.recorded.payout_ids == []
    assert app.recorded.results[0].outcome == SkipReason.APP_APPID.value
    assert _count(world, payouts) == 1


def test_a_failed_payment_is_recorded_and_acknowledged_without_payout(world: World) -> None:
    receipt = world.handler().receive(world.pay(world.users[0], 12_000, result_code="FAIL"))
    assert receipt.reply == SUCCESS_REPLY
    assert receipt.recorded is not None
    assert receipt.recorded.results[0].outcome == SkipReason.PAYMENT_FAILED.value
    assert _count(world, payouts) == 0
    assert _count(world, rule_payments) == 1


def test_a_packet_the_api_would_refuse_is_recorded_as_refused(world: World) -> None:
    long_openid = "o" * 40  # a notification's openid may be 128 long; re_openid holds 32
    receipt = world.handler().receive(world.pay(long_openid, 12_000))
    assert receipt.reply == SUCCESS_REPLY
    assert receipt.recorded is not None
    [result] = receipt.recorded.results
    assert result.outcome == REQUEST_REFUSED
    assert result.detail is not None
    assert "re_openid" in result.detail
    assert _count(world, payouts) == 0
    [summary] = world.ledger.summaries()
    assert summary.committed_fen == 0


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: body.replace(b">12000<", b">99000<"), id="total_fee-altered"),
        pytest.param(lambda body: body.replace(b"<sign>", b"<sign>0"), id="bad-signature"),
    ],
)
def test_a_forged_notification_is_answered_fail_and_records_nothing(
    world: World, forge: Callable[[bytes], bytes]
) -> None:
    body = forge(world.pay(world.users[0], 12_000))
    receipt = world.handler().receive(body)
    assert receipt.reply.startswith(b"<xml><return_code><![CDATA[FAIL]]>")
    assert receipt.status == 400
    assert _count(world, rule_payments) == 0
    assert _count(world, payouts) == 0


def test_a_notification_signed_with_another_key_is_refused(world: World) -> None:
    receipt = world.handler().receive(world.pay(world.users[0], 12_000, key="k" * 32))
    assert not receipt.acknowledged
    assert receipt.error is not None
    assert "signature" in receipt.error
    assert _count(world, rule_payments) == 0


def test_a_notification_for_an_unknown_merchant_is_refused(world: World) -> None:
    fields = notification_fields(
        mch_id="1999999999",
        appid=world.creds.appid,
        openid=world.users[0],
        total_fee=12_000,
        transaction_id=transaction_id(),
    )
    receipt = world.handler().receive(signed(fields, world.creds.api_key))
    assert not receipt.acknowledged
    assert receipt.error is not None
    assert "1999999999" in receipt.error
    assert _count(world, rule_payments) == 0


def test_a_notification_that_cannot_be_recorded_is_not_acknowledged(
    world: World, tmp_path: Path
) -> None:
    # A ledger without the rule tables: the write fails, so no SUCCESS (WeChat resends).
    from hongbao.ledger import create_ledger_engine

    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        handler = NotifyHandler(RuleLedger(engine), [world.merchant()])
        receipt = handler.receive(world.pay(world.users[0], 12_000))
    finally:
        engine.dispose()
    assert receipt.status == 500
    assert not receipt.acknowledged


def test_an_order_check_refuses_a_payment_that_does_not_match_the_order(world: World) -> None:
    handler = world.handler(order_check=lambda p: None if p.total_fee == 12_000 else "mismatch")
    assert handler.receive(world.pay(world.users[0], 12_000)).acknowledged
    refused = handler.receive(world.pay(world.users[0], 13_000))
    assert not refused.acknowledged
    assert _count(world, rule_payments) == 1


def test_preview_judges_without_recording(world: World) -> None:
    handler = world.handler()
    body = world.pay(world.users[0], 12_000)
    preview = handler.preview(body)
    [result] = preview.results
    assert isinstance(result, Match)
    assert (result.api, result.amount_fen, preview.recorded) == (SendApi.SENDREDPACK, 188, None)
    assert _count(world, rule_payments) == 0
    handler.receive(body)
    again = handler.preview(body)
    assert again.recorded is not None
    assert isinstance(again.results[0], Match)  # its own payout is left out of the counts
    low = handler.preview(world.pay(world.users[0], 10))
    assert isinstance(low.results[0], Skip)
    assert low.results[0].reason is SkipReason.BELOW_THRESHOLD


def test_a_budget_lowered_below_what_was_committed_leaves_the_rule_exhausted(
    world: World,
) -> None:
    handler = world.handler()
    handler.receive(world.pay(world.users[0], 12_000))
    world.ledger.ensure_budgets([RuleBudget("big", "shop", 100)])
    [summary] = world.ledger.summaries()
    assert (summary.budget_fen, summary.committed_fen) == (188, 188)
    later = handler.receive(world.pay(world.users[1], 12_000))
    assert later.recorded is not None
    assert later.recorded.results[0].outcome == SkipReason.BUDGET_EXHAUSTED.value


def test_the_database_refuses_a_rule_committing_past_its_budget(world: World) -> None:
    world.ledger.ensure_budgets([RuleBudget("big", "shop", 500)])
    with pytest.raises(IntegrityError), world.store.engine.begin() as conn:
        conn.execute(update(rule_budgets).values(committed_fen=501))


def test_rule_results_keep_every_rules_reason(ledger_url: str) -> None:
    world = make_world(ledger_url, [rule("big"), rule("any", min_total_fee=1, amount="1.00")])
    try:
        receipt = world.handler().receive(world.pay(world.users[0], 500))
        assert receipt.recorded is not None
        assert [(r.rule, r.outcome) for r in receipt.recorded.results] == [
            ("big", SkipReason.BELOW_THRESHOLD.value),
            ("any", MATCH),
        ]
        assert _count(world, rule_results) == 2
    finally:
        world.close()


def test_a_notification_signed_with_hmac_sha256_is_verified_and_recorded(world: World) -> None:
    fields = notification_fields(
        mch_id=world.mch_id,
        appid=world.creds.appid,
        openid=world.users[0],
        total_fee=12_000,
        transaction_id=transaction_id(),
    )
    receipt = world.handler().receive(signed(fields, world.creds.api_key, "HMAC-SHA256"))
    assert receipt.acknowledged
    assert receipt.recorded is not None
    assert receipt.recorded.results[0].outcome == MATCH
