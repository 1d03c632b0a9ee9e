"""`drive_payout` against the in-process simulator: each outcome, recovery, and the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from hongbao.engine.payout import drive_payout
from hongbao.engine.states import LimitPolicy, next_beijing_midnight
from hongbao.ids import SERIALS_PER_DAY
from hongbao.ledger import CampaignState, IllegalTransitionError, PayoutState
from hongbao.ledger.schema import bill_serials
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from tests.engine.enginekit import Bench, Crash, CrashingTransport

P = PayoutState


def arm(bench: Bench, **fault: object) -> None:
    """Arm a simulator fault (see `hongbao.sim.faults`)."""
    bench.sim.faults.add(parse_fault({"endpoint": "sendredpack", **fault}))


async def test_a_claimed_payout_is_sent_once_and_audited(bench: Bench) -> None:
    payout = bench.add_payout(bench.users[0])
    [claimed] = bench.claim()

    result = await drive_payout(claimed, bench.driver())

    assert (result.state, result.lost) == (P.SENT, False)
    stored = bench.store.get_payout(payout.id)
    assert stored.state is P.SENT
    assert stored.send_listid
    assert bench.issued() == {bench.users[0]: 1}
    events = bench.store.events(payout.id)
    assert [(e.kind, e.to_state) for e in events] == [("claim", P.SENDING), ("send", P.SENT)]
    send = events[-1]
    assert send.request is not None
    assert send.response is not None
    assert send.request["mch_billno"] == payout.mch_billno
    assert send.response["result_code"] == "SUCCESS"
    assert send.response["send_listid"] == stored.send_listid


async def test_the_audit_trail_never_holds_the_key_or_a_signature(bench: Bench) -> None:
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(sign_responses=True))
    payout = bench.add_payout(bench.users[0])
    [claimed] = bench.claim()

    await drive_payout(claimed, bench.driver())

    trail = json.dumps([e.request for e in bench.store.events(payout.id)])
    trail += json.dumps([e.response for e in bench.store.events(payout.id)])
    assert bench.creds.api_key not in trail
    [send] = [e for e in bench.store.events(payout.id) if e.kind == "send"]
    assert send.response is not None
    assert send.response["sign"] == "***"


async def test_an_unknown_outcome_is_resolved_with_the_same_bill_and_bytes(bench: Bench) -> None:
    payout = bench.add_payout(bench.users[0])
    arm(bench, action="error", err_code="SYSTEMERROR", count=2)  # the call and its retry
    transport = bench.transport()
    driver = bench.driver(bench.client(transport=transport))
    [claimed] = bench.claim()

    first = await drive_payout(claimed, driver)
    assert first.state is P.UNKNOWN
    assert bench.issued() == {}

    [stale] = bench.store.claim_stale(bench.mch_id, lease_seconds=60)
    second = await drive_payout(stale, driver)

    assert second.state is P.SENT
    assert bench.issued() == {bench.users[0]: 1}
    bodies = transport.bodies("sendredpack")
    assert len(bodies) == 3
    assert len(set(bodies)) == 1  # the very same bytes: same bill, nonce and signature
    kinds = [e.kind for e in bench.store.events(payout.id)]
    assert kinds == ["claim", "send", "recover", "query", "send"]


async def test_a_dropped_answer_after_payment_is_found_not_paid_again(bench: Bench) -> None:
    bench.add_payout(bench.users[0])
    arm(bench, action="pay_then_drop", count=2)
    transport = bench.transport()
    driver = bench.driver(bench.client(transport=transport))
    [claimed] = bench.claim()

    assert (await drive_payout(claimed, driver)).state is P.UNKNOWN
    [stale] = bench.store.claim_stale(bench.mch_id, lease_seconds=60)
    result = await drive_payout(stale, driver)

    assert result.state is P.SENT
    assert bench.issued() == {bench.users[0]: 1}
    assert len(transport.bodies("sendredpack")) == 2  # gethbinfo said SENT: no third send


async def test_a_crash_after_the_request_left_is_recovered_once_the_lease_ends(
    bench: Bench,
) -> None:
    payout = bench.add_payout(bench.users[0])
    crashing = CrashingTransport(bench.transport())
    crashing.crash = "after"
    [claimed] = bench.claim()

    with pytest.raises(Crash):
        await drive_payout(claimed, bench.driver(bench.client(transport=crashing)))
    assert bench.store.get_payout(payout.id).state is P.SENDING
    assert bench.store.claim_stale(bench.mch_id, lease_seconds=60) == []  # lease still held

    bench.clock.advance(bench.profile.lease_seconds + 1)
    [stale] = bench.store.claim_stale(bench.mch_id, lease_seconds=60)
    result = await drive_payout(stale, bench.driver())

    assert result.state is P.SENT
    assert bench.issued() == {bench.users[0]: 1}


async def test_notenough_defers_and_pauses_the_campaign(bench: Bench) -> None:
    campaign = bench.campaign(bench.users[:1])
    bench.store.set_campaign_state(campaign.id, CampaignState.PLANNED, CampaignState.RUNNING)
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(balance_fen=50))
    [claimed] = bench.claim()

    result = await drive_payout(claimed, bench.driver())

    assert result.state is P.DEFERRED
    expected = (
        "NOTENOUGH: balance too low: top up the merchant account, then "
        f"`hongbao campaign resume {campaign.id}`"
    )
    assert result.paused == expected
    paused = bench.store.get_campaign(campaign.id)
    assert (paused.state, paused.pause_reason) == (CampaignState.PAUSED, expected)
    assert bench.store.get_payout(claimed.id).err_code == "NOTENOUGH"
    assert bench.issued() == {}


async def test_freq_limit_holds_every_send_of_the_merchant(bench: Bench) -> None:
    bench.add_payout(bench.users[0])
    arm(bench, action="error", err_code="FREQ_LIMIT", count=1)
    driver = bench.driver()
    [claimed] = bench.claim()

    result = await drive_payout(claimed, driver)

    assert result.state is P.DEFERRED
    stored = bench.store.get_payout(claimed.id)
    assert stored.next_attempt_at == bench.clock.now() + timedelta(seconds=60)
    assert driver.send_pacer is not None
    before = bench.clock.monotonic()
    await driver.send_pacer.acquire()
    assert bench.clock.monotonic() - before >= 60


@pytest.mark.parametrize("policy", [LimitPolicy.DEFER, LimitPolicy.FAIL])
async def test_a_daily_limit_defers_to_the_next_beijing_day_or_fails(
    bench: Bench, policy: LimitPolicy
) -> None:
    bench.with_profile(limit_policy=policy)
    bench.add_payout(bench.users[0])
    arm(bench, action="error", err_code="SENDNUM_LIMIT", count=1)
    [claimed] = bench.claim()

    result = await drive_payout(claimed, bench.driver())

    stored = bench.store.get_payout(claimed.id)
    if policy is LimitPolicy.DEFER:
        assert result.state is P.DEFERRED
        assert stored.next_attempt_at == next_beijing_midnight(bench.clock.now())
    else:
        assert result.state is P.FAILED
        assert stored.bill_dead is False  # the bill is not dead: never re-issued
        assert result.reissued is None
    assert stored.err_code == "SENDNUM_LIMIT"


async def test_a_definitively_failed_bill_is_reissued_as_a_linked_payout(bench: Bench) -> None:
    old = bench.add_payout(bench.users[0], 123)
    arm(bench, action="error", err_code="SEND_FAILED", count=1)
    driver = bench.driver()
    [claimed] = bench.claim()

    result = await drive_payout(claimed, driver)

    assert result.state is P.FAILED
    assert bench.store.get_payout(old.id).bill_dead
    new = result.reissued
    assert new is not None
    assert (new.state, new.generation, new.previous_payout_id) == (P.PLANNED, 1, old.id)
    assert (new.natural_key, new.re_openid, new.total_amount) == (
        old.natural_key,
        old.re_openid,
        123,
    )
    assert new.mch_billno != old.mch_billno
    [again] = bench.claim()
    assert again.id == new.id
    assert (await drive_payout(again, driver)).state is P.SENT
    assert bench.issued() == {bench.users[0]: 1}


async def test_no_reissue_beyond_the_limit(bench: Bench) -> None:
    bench.add_payout(bench.users[0])
    arm(bench, action="error", err_code="SEND_FAILED", count=1)
    [claimed] = bench.claim()

    result = await drive_payout(claimed, bench.driver(reissue_limit=0))

    assert (result.state, result.reissued) == (P.FAILED, None)
    assert bench.claim() == []


async def test_a_dead_bill_waits_for_the_next_day_when_todays_bill_numbers_are_used_up(
    bench: Bench,
) -> None:
    old = bench.add_payout(bench.users[0])
    with bench.store.engine.begin() as conn:
        conn.execute(update(bill_serials).values(next_serial=SERIALS_PER_DAY))
    arm(bench, action="error", err_code="SEND_FAILED", count=1)
    [claimed] = bench.claim()

    result = await drive_payout(claimed, bench.driver())

    assert (result.state, result.reissued) == (P.FAILED, None)
    assert bench.store.get_payout(old.id).bill_dead  # left for the dead-bill sweep
    bench.clock.advance(24 * 3600)
    new = await bench.driver().reissue(bench.store.get_payout(old.id))
    assert new is not None
    assert new.previous_payout_id == old.id


async def test_processing_is_queried_later_and_settles(bench: Bench) -> None:
    bench.add_payout(bench.users[0])
    arm(bench, action="processing", seconds=600, count=1)
    driver = bench.driver()
    [claimed] = bench.claim()

    assert (await drive_payout(claimed, driver)).state is P.UNKNOWN
    assert bench.store.claim_stale(bench.mch_id) == []  # not before the processing wait

    bench.clock.advance(61)
    [stale] = bench.store.claim_stale(bench.mch_id)
    assert (await drive_payout(stale, driver)).state is P.UNKNOWN  # WeChat: still SENDING

    bench.sim.move_clock(advance_seconds=600)
    [stale] = bench.store.claim_stale(bench.mch_id)
    assert (await drive_payout(stale, driver)).state is P.SENT
    assert bench.issued() == {bench.users[0]: 1}


async def test_a_payout_taken_over_by_recovery_is_left_alone(bench: Bench) -> None:
    bench.add_payout(bench.users[0])
    transport = bench.transport()
    [claimed] = bench.claim()
    bench.clock.advance(bench.profile.lease_seconds + 1)
    [taken] = bench.store.claim_stale(bench.mch_id, lease_seconds=60)

    result = await drive_payout(claimed, bench.driver(bench.client(transport=transport)))

    assert result.lost
    assert transport.requests == []
    assert bench.store.get_payout(taken.id).state is P.UNKNOWN


async def test_only_a_leased_payout_can_be_driven(bench: Bench) -> None:
    payout = bench.add_payout(bench.users[0])
    with pytest.raises(IllegalTransitionError):
        await drive_payout(payout, bench.driver())
