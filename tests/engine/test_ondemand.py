"""Payouts on demand (`AsyncPayouts.pay(key=…)`) in-process: exactly once per idempotency key,
on SQLite and PostgreSQL, checked against what the simulator really issued."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from hongbao.engine.dispatch import Pace
from hongbao.engine.ondemand import AsyncPayouts
from hongbao.engine.rule_dispatch import RuleDispatcher
from hongbao.engine.tracker import reconcile, track
from hongbao.errors import IdempotencyConflict, ValidationError
from hongbao.ledger import PayoutState, Scope
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from hongbao.wire.transport import AsyncTransport, WireRequest, WireResponse
from tests.engine.enginekit import QUICK_RUN, Bench, ClockSleep, Crash, CrashingTransport
from tests.engine.ruleskit import until

P = PayoutState

PACKET: dict[str, Any] = {
    "send_name": "天虹百货",
    "wishing": "感谢您的好评",
    "act_name": "好评返现",
    "remark": "谢谢",
}


def payouts_of(bench: Bench, transport: AsyncTransport | None = None) -> AsyncPayouts:
    """`AsyncPayouts` on the bench's ledger, clock and in-process simulator."""
    return AsyncPayouts(
        bench.store,
        bench.profile,
        settings=QUICK_RUN,
        clock=bench.clock,
        clients={"shop": bench.client(transport=transport)},
        paces={"shop": Pace.local(bench.profile, clock=bench.clock, sleep=ClockSleep(bench.clock))},
    )


@pytest.fixture
async def payouts(any_bench: Bench) -> AsyncIterator[AsyncPayouts]:
    async with payouts_of(any_bench) as opened:
        yield opened


async def test_pay_sends_one_packet_and_says_how_it_ended(
    any_bench: Bench, payouts: AsyncPayouts
) -> None:
    openid = any_bench.users[0]

    view = await payouts.pay("order-8812:cashback", openid, 188, **PACKET)

    assert (view.state, view.outcome, view.key) == (P.SENT, "sent", "order-8812:cashback")
    assert (view.openid, view.amount_fen, view.kind, view.total_num) == (openid, 188, "normal", 1)
    assert view.bill_no.startswith(any_bench.mch_id)
    assert len(view.bill_no) == 28
    assert view.send_listid
    assert view.sent_at is not None
    assert any_bench.issued() == Counter({openid: 1})
    assert any_bench.issued_fen() == 188


async def test_the_same_key_again_returns_the_same_payout_and_sends_nothing(
    any_bench: Bench, payouts: AsyncPayouts
) -> None:
    openid = any_bench.users[0]
    first = await payouts.pay("signup:42", openid, 100, **PACKET)

    again = await payouts.pay("signup:42", openid, 100, **PACKET)

    assert (again.id, again.bill_no, again.state) == (first.id, first.bill_no, P.SENT)
    assert (first.replayed, again.replayed) == (False, True)
    assert any_bench.issued() == Counter({openid: 1})


async def test_the_same_key_with_other_parameters_is_a_conflict_naming_each_field(
    any_bench: Bench, payouts: AsyncPayouts
) -> None:
    first = await payouts.pay("signup:42", any_bench.users[0], 100, **PACKET)

    with pytest.raises(IdempotencyConflict) as caught:
        await payouts.pay("signup:42", any_bench.users[1], 200, **{**PACKET, "wishing": "新年好"})

    assert caught.value.fields == ["amount_fen", "openid", "wishing"]
    assert (caught.value.key, caught.value.mch_billno) == ("signup:42", first.bill_no)
    assert "amount_fen, openid, wishing" in str(caught.value)
    with pytest.raises(IdempotencyConflict) as kind:
        await payouts.pay("signup:42", any_bench.users[0], 100, kind="mini", **PACKET)
    assert kind.value.fields[0] == "kind"
    assert any_bench.issued() == Counter({any_bench.users[0]: 1})


async def test_fifty_tasks_racing_on_one_key_pay_one_packet(
    any_bench: Bench, payouts: AsyncPayouts
) -> None:
    openid = any_bench.users[0]

    views = await asyncio.gather(
        *(payouts.pay("race", openid, 100, **PACKET) for _ in range(50))
    )

    assert {(v.id, v.bill_no, v.state) for v in views} == {(views[0].id, views[0].bill_no, P.SENT)}
    assert any_bench.issued() == Counter({openid: 1})


@pytest.mark.parametrize("crash", ["before", "after"])
async def test_after_a_crash_mid_send_the_same_key_resolves_the_same_bill(
    any_bench: Bench, crash: str
) -> None:
    bench = any_bench
    openid = bench.users[0]
    crashing = CrashingTransport(bench.transport())
    crashing.arm(crash)
    async with payouts_of(bench, crashing) as dying:
        with pytest.raises(Crash):
            await dying.pay("refund:77", openid, 100, **PACKET)
    [payout] = bench.store.list_payouts(dying_scope(bench))
    assert payout.state is P.SENDING  # committed before the request left
    bench.clock.advance(bench.profile.lease_seconds * 2)  # the dead process's lease ran out

    async with payouts_of(bench) as reborn:
        view = await reborn.pay("refund:77", openid, 100, **PACKET)

    assert (view.id, view.bill_no, view.state) == (payout.id, payout.mch_billno, P.SENT)
    assert bench.issued() == Counter({openid: 1})


def dying_scope(bench: Bench) -> Scope:
    return Scope.on_demand(bench.mch_id)


async def test_a_failed_payout_is_not_sent_again_under_its_key(bench: Bench) -> None:
    bench.sim.faults.add(
        parse_fault(
            {"endpoint": "sendredpack", "action": "error", "err_code": "OPENID_ERROR", "count": 1}
        )
    )
    async with payouts_of(bench) as payouts:
        failed = await payouts.pay("goodwill:1", bench.users[0], 100, **PACKET)

        again = await payouts.pay("goodwill:1", bench.users[0], 100, **PACKET)

    assert (failed.state, failed.outcome, failed.err_code) == (P.FAILED, "not_sent", "OPENID_ERROR")
    assert failed.err_code_des
    assert again == failed
    assert bench.issued() == Counter()


async def test_a_deferred_payout_comes_back_at_once_and_goes_later(bench: Bench) -> None:
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(balance_fen=50))
    async with payouts_of(bench) as payouts:
        deferred = await payouts.pay("goodwill:2", bench.users[0], 100, **PACKET)
        bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(balance_fen=10_000))
        bench.clock.advance(QUICK_RUN.policy.blocked_retry.total_seconds())

        await payouts.run_pending()
        later = await payouts.get("goodwill:2")

    assert (deferred.state, deferred.outcome, deferred.err_code) == (
        P.DEFERRED,
        "pending",
        "NOTENOUGH",
    )
    assert later is not None
    assert (later.id, later.state) == (deferred.id, P.SENT)
    assert bench.issued() == Counter({bench.users[0]: 1})


async def test_wait_false_records_and_the_dispatcher_sends_at_the_pace(
    any_bench: Bench,
) -> None:
    bench = any_bench
    async with payouts_of(bench) as payouts:
        views = [
            await payouts.pay(f"review:{n}", openid, 100, wait=False, **PACKET)
            for n, openid in enumerate(bench.users)
        ]
        assert {v.state for v in views} <= {P.PLANNED, P.SENDING, P.SENT}
    # Closing let the dispatcher finish what it had claimed; what is left it sends next time.
    async with payouts_of(bench) as payouts:
        await payouts.run_pending()
        settled = [await payouts.get(f"review:{n}") for n in range(len(bench.users))]

    assert [v.state for v in settled if v is not None] == [P.SENT] * len(bench.users)
    assert bench.issued() == Counter(bench.users)


async def test_bad_input_names_the_field_and_records_nothing(
    any_bench: Bench, payouts: AsyncPayouts
) -> None:
    openid = any_bench.users[0]
    cases: list[tuple[str, str, int, dict[str, Any], str]] = [
        ("", openid, 100, {}, "key"),
        ("x" * 65, openid, 100, {}, "key"),
        ("with space", openid, 100, {}, "key"),
        ("k", openid, 100, {"kind": "huge"}, "kind"),
        ("k", openid, 20_001, {}, "scene_id"),
        ("k", openid, 300, {"kind": "group", "total_num": 2}, "total_num"),
        ("k", "", 100, {}, "re_openid"),
    ]
    for key, who, amount, extra, field in cases:
        with pytest.raises(ValidationError) as caught:
            await payouts.pay(key, who, amount, **PACKET, **extra)
        assert caught.value.field == field, (key, extra)

    assert await payouts.list() == []
    assert any_bench.issued() == Counter()


async def test_get_and_list_find_payouts_by_key_bill_and_state(
    any_bench: Bench, payouts: AsyncPayouts
) -> None:
    sent = await payouts.pay("a", any_bench.users[0], 100, **PACKET)
    group = await payouts.pay(
        "b", any_bench.users[1], 300, kind="group", total_num=3, **PACKET
    )

    assert await payouts.get("a") == sent
    assert await payouts.get(bill_no=group.bill_no) == group
    assert (group.kind, group.total_num) == ("group", 3)
    assert await payouts.get("missing") is None
    assert [v.key for v in await payouts.list()] == ["b", "a"]
    assert [v.key for v in await payouts.list(state=P.FAILED)] == []


class Hang(AsyncTransport):
    """Holds every request until released, then passes it on."""

    def __init__(self, inner: AsyncTransport) -> None:
        self.inner = inner
        self.release = asyncio.Event()

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        await self.release.wait()
        return await self.inner.handle_async_request(request)


async def test_past_the_timeout_pay_returns_the_state_and_the_drive_goes_on(bench: Bench) -> None:
    hang = Hang(bench.transport())
    async with payouts_of(bench, hang) as payouts:
        view = await payouts.pay("slow", bench.users[0], 100, timeout=0.2, **PACKET)
        assert (view.state, view.outcome) == (P.SENDING, "unknown")
        hang.release.set()
    # Closing waited for the drive.
    assert bench.store.find_payout(f"pay:{bench.mch_id}:slow").state is P.SENT  # type: ignore[union-attr]
    assert bench.issued() == Counter({bench.users[0]: 1})


async def test_daily_caps_hold_across_campaigns_and_payouts_on_demand(bench: Bench) -> None:
    bench.with_profile(per_user_daily_count=2)
    openid = bench.users[0]
    campaign = bench.campaign([openid], name="c1")
    await bench.run(campaign.id)
    async with payouts_of(bench) as payouts:
        second = await payouts.pay("k1", openid, 100, **PACKET)
        third = await payouts.pay("k2", openid, 100, **PACKET)

    assert second.state is P.SENT
    assert (third.state, third.reason) == (P.DEFERRED, "user_daily_count")
    assert bench.issued() == Counter({openid: 2})



async def test_three_origins_share_the_merchants_pace_and_its_daily_caps(bench: Bench) -> None:
    """A campaign run, the rule dispatcher and the on-demand dispatcher of one process pay from
    one merchant at once: one pace (the simulator never answers FREQ_LIMIT, and counts no more
    than the cap in any 60 s), and one per-user daily cap across the three."""
    cap = 30
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(rate_per_minute=cap))
    bench.with_profile(
        rate_per_minute=cap, concurrency=8, lease_seconds=3600, per_user_daily_count=2
    )
    users = bench.sim.add_users(bench.creds.appid, 31)
    shared = users[-1]  # the one user of all three origins
    campaign = bench.campaign([*users[:10], shared])
    rule_payouts = [
        bench.add_payout(openid, key=f"rule:big:tx{n}")
        for n, openid in enumerate([*users[10:20], shared])
    ]
    sleep = ClockSleep(bench.clock)
    pace = Pace.local(bench.profile, clock=bench.clock, sleep=sleep)
    rules = RuleDispatcher(
        bench.store, bench.profile, settings=QUICK_RUN, client=bench.client(), clock=bench.clock,
        sleep=sleep, pace=pace,
    )  # fmt: skip
    rule_task = asyncio.create_task(rules.run())
    async with AsyncPayouts(
        bench.store, bench.profile, settings=QUICK_RUN, clock=bench.clock,
        clients={"shop": bench.client()}, paces={"shop": pace},
    ) as payouts:  # fmt: skip
        for n, openid in enumerate([*users[20:30], shared]):
            await payouts.pay(f"review:{n}", openid, 100, wait=False, **PACKET)
        summary = await bench.run(campaign.id, pace=pace)

        def settled() -> bool:
            scopes = [Scope.on_demand(bench.mch_id), Scope.rules(bench.mch_id)]
            rows = [row for scope in scopes for row in bench.store.list_payouts(scope)]
            return all(
                row.state is P.SENT
                or (row.state is P.DEFERRED and row.reason == "user_daily_count")
                for row in rows
            )

        await until(settled)
    rules.stop()
    await rule_task

    assert summary.stopped == "completed" or summary.stopped.startswith("waiting")
    assert bench.issued()[shared] == 2
    assert sum(bench.issued().values()) == 3 * 10 + 2
    every = [
        *bench.store.iter_payouts(campaign.id),
        *bench.store.list_payouts(Scope.on_demand(bench.mch_id)),
        *[bench.store.get_payout(p.id) for p in rule_payouts],
    ]
    held = [p for p in every if p.re_openid == shared and p.state is P.DEFERRED]
    assert [p.reason for p in held] == ["user_daily_count"]
    codes = {event.err_code for p in every for event in bench.store.events(p.id)}
    assert "FREQ_LIMIT" not in codes
    _, records = bench.sim.state.ledger(bench.mch_id)
    times = sorted(record.send_time for record in records)
    for i, start in enumerate(times):
        assert len([t for t in times[i:] if t - start < timedelta(seconds=60)]) <= cap


async def test_tracking_and_reconciliation_cover_payouts_on_demand(any_bench: Bench) -> None:
    bench = any_bench
    async with payouts_of(bench) as payouts:
        opened = await payouts.pay("a", bench.users[0], 100, **PACKET)
        unopened = await payouts.pay("b", bench.users[1], 100, **PACKET)
    bench.sim.state.open_packet(bench.mch_id, opened.bill_no)
    bench.clock.advance(25 * 3600)  # the unopened one is refunded after 24 h

    sleep = ClockSleep(bench.clock)
    await track(bench.store, bench.profile, client=bench.client(), clock=bench.clock,
                sleep=sleep, settings=QUICK_RUN, due_only=False)  # fmt: skip
    report = await reconcile(bench.store, bench.profile, client=bench.client(),
                             clock=bench.clock, sleep=sleep)  # fmt: skip

    async with payouts_of(bench) as payouts:
        assert (await payouts.get("a")).state is P.RECEIVED  # type: ignore[union-attr]
        assert (await payouts.get("b")).state is P.REFUNDED  # type: ignore[union-attr]
    assert (opened.state, unopened.state) == (P.SENT, P.SENT)
    assert report.mismatches == []
    assert report.checked == 2
