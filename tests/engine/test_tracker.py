"""Tracking issued packets to RECEIVED / REFUNDED, and reconciling the ledger with WeChat."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hongbao.api import AsyncClient, RedpackInfo
from hongbao.api.client import Pace
from hongbao.engine.payout import drive_payout
from hongbao.engine.tracker import MismatchKind, TrackSummary, reconcile, track
from hongbao.ledger import CampaignState, PayoutState, StateTotal
from hongbao.sim.faults import parse_fault
from hongbao.wire.retry import NO_RETRY
from tests.engine.enginekit import QUICK_RUN, Bench, ClockSleep

P = PayoutState


async def sent_campaign(bench: Bench) -> int:
    campaign = bench.campaign()
    assert (await bench.run(campaign.id)).stopped == "completed"
    return campaign.id


async def tracked(
    bench: Bench, cid: int, *, follow: bool = False, due_only: bool = True
) -> TrackSummary:
    return await track(
        bench.store,
        bench.profile,
        campaign_id=cid,
        client=bench.client(),
        clock=bench.clock,
        sleep=ClockSleep(bench.clock),
        settings=QUICK_RUN,
        follow=follow,
        due_only=due_only,
    )


async def test_track_records_opened_and_refunded_packets(any_bench: Bench) -> None:
    bench = any_bench
    cid = await sent_campaign(bench)
    payouts = list(bench.store.iter_payouts(cid))
    for payout in payouts[:2]:
        bench.sim.state.open_packet(bench.mch_id, payout.mch_billno, None)

    first = await tracked(bench, cid, due_only=False)

    assert (first.checked, first.received, first.still_sent, first.refunded) == (5, 2, 3, 0)
    assert bench.states(cid) == {P.RECEIVED: 2, P.SENT: 3}
    received = bench.store.get_payout(payouts[0].id)
    assert received.received_at is not None

    bench.sim.move_clock(advance_seconds=25 * 3600)  # unclaimed for 24 h, then refunded
    second = await tracked(bench, cid, follow=True)

    assert (second.refunded, second.errors, second.anomalies) == (3, 0, [])
    assert bench.states(cid) == {P.RECEIVED: 2, P.REFUNDED: 3}
    refunded = bench.store.get_payout(payouts[-1].id)
    assert refunded.refund_amount == refunded.total_amount
    assert refunded.refunded_at is not None


async def test_track_asks_only_when_a_check_is_due(bench: Bench) -> None:
    cid = await sent_campaign(bench)

    early = await tracked(bench, cid)
    bench.clock.advance(3601)
    late = await tracked(bench, cid)

    assert (early.checked, late.checked) == (0, 5)


async def test_reconcile_finds_no_mismatch_after_a_clean_run(any_bench: Bench) -> None:
    bench = any_bench
    cid = await sent_campaign(bench)

    report = await reconcile(
        bench.store,
        bench.profile,
        campaign_id=cid,
        client=bench.client(),
        clock=bench.clock,
        sleep=ClockSleep(bench.clock),
    )

    assert report.mismatches == []
    assert (report.checked, report.matched, report.never_claimed) == (5, 5, 0)
    assert report.ledger_issued == report.wechat_issued == StateTotal(5, 500)


async def test_reconcile_lists_every_kind_of_disagreement(bench: Bench) -> None:
    campaign = bench.campaign()
    bench.store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    single = bench.client(replace(bench.profile.merchant, retry=NO_RETRY))
    driver = bench.driver(single)
    unresolved, recorded, paid, behind = bench.claim(limit=4)

    bench.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "pay_then_drop", "count": 1})
    )
    assert (await drive_payout(unresolved, driver)).state is P.UNKNOWN  # paid, answer lost
    bench.store.transition(recorded.id, P.SENDING, P.SENT)  # the ledger says sent; it never was
    await single.send_frozen(paid.api.value, paid.params)  # paid, but the ledger says deferred
    bench.store.transition(paid.id, P.SENDING, P.DEFERRED)
    assert (await drive_payout(behind, driver)).state is P.SENT
    bench.sim.state.open_packet(bench.mch_id, behind.mch_billno, None)  # not tracked yet

    report = await reconcile(
        bench.store,
        bench.profile,
        campaign_id=campaign.id,
        client=single,
        clock=bench.clock,
        sleep=ClockSleep(bench.clock),
    )

    kinds = {m.payout_id: (m.kind, m.wechat_status) for m in report.mismatches}
    assert kinds == {
        unresolved.id: (MismatchKind.UNRESOLVED, "SENT"),
        recorded.id: (MismatchKind.RECORDED_NOT_PAID, "NOT_FOUND"),
        paid.id: (MismatchKind.PAID_NOT_RECORDED, "SENT"),
    }
    assert (report.behind, report.never_claimed, report.checked) == (1, 1, 4)
    assert report.ledger_issued == StateTotal(2, 200)
    assert report.wechat_issued == StateTotal(3, 300)


class LyingClient(AsyncClient):
    """Reports every packet with one fen more than WeChat issued."""

    async def query_for(
        self, api: str, mch_billno: str, *, pace: Pace | None = None
    ) -> RedpackInfo:
        info = await super().query_for(api, mch_billno, pace=pace)
        return info.model_copy(update={"total_amount": (info.total_amount or 0) + 1})


async def test_reconcile_finds_differing_amounts(bench: Bench) -> None:
    cid = await sent_campaign(bench)
    liar = LyingClient(bench.profile.merchant, transport=bench.transport(), clock=bench.clock)

    report = await reconcile(
        bench.store,
        bench.profile,
        campaign_id=cid,
        client=liar,
        clock=bench.clock,
        sleep=ClockSleep(bench.clock),
    )

    assert Counter(m.kind for m in report.mismatches) == {MismatchKind.AMOUNT_DIFFERS: 5}
    assert {(m.ledger_amount, m.wechat_amount) for m in report.mismatches} == {(100, 101)}
