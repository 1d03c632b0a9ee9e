"""`hongbao campaign retry`: the users a campaign failed to pay are paid under new bill numbers,
each failed payout once, linked to it, sent by the campaign's own run within its budget."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from hongbao.engine.campaign import CampaignError, resume_campaign
from hongbao.engine.retry import retry_payouts
from hongbao.ledger import CampaignState, PayoutState
from hongbao.sim.faults import parse_fault
from tests.engine.enginekit import Bench

P = PayoutState
C = CampaignState


async def _run_with_fatal_errors(bench: Bench, failures: int, budget_fen: int | None = None) -> int:
    """A campaign of every user whose first `failures` sends answer FATAL_ERROR, run to its end."""
    campaign = bench.campaign(budget_fen=budget_fen)
    bench.sim.faults.add(
        parse_fault(
            {"endpoint": "sendredpack", "action": "error", "err_code": "FATAL_ERROR",
             "count": failures}
        )
    )  # fmt: skip
    await bench.run(campaign.id)
    if bench.store.get_campaign(campaign.id).state is C.PAUSED:  # FATAL_ERROR pauses it
        resume_campaign(bench.store, campaign.id, clock=bench.clock)
        await bench.run(campaign.id)
    assert bench.states(campaign.id)[P.FAILED] == failures
    return campaign.id


async def test_failed_users_are_paid_once_under_new_linked_bills(any_bench: Bench) -> None:
    bench = any_bench
    campaign_id = await _run_with_fatal_errors(bench, failures=2)
    failed = [p for p in bench.store.iter_payouts(campaign_id) if p.state is P.FAILED]
    assert bench.store.get_campaign(campaign_id).state is C.COMPLETED
    assert sum(bench.issued().values()) == 3

    report = retry_payouts(bench.store, campaign_id, err_code="FATAL_ERROR", clock=bench.clock)
    again = retry_payouts(bench.store, campaign_id, clock=bench.clock)
    await bench.run(campaign_id)

    assert (report.retried, report.retried_fen, report.unsafe, report.reopened) == (2, 200, 0, True)
    assert (again.retried, again.already) == (0, 0)
    assert bench.issued() == dict.fromkeys(bench.users, 1)  # everyone paid, nobody twice
    retries = {p.previous_payout_id: p for p in bench.store.iter_payouts(campaign_id)
               if p.previous_payout_id is not None}  # fmt: skip
    assert set(retries) == {p.id for p in failed}
    for old in failed:
        new = retries[old.id]
        assert (new.natural_key, new.generation, new.state) == (old.natural_key, 1, P.SENT)
        assert new.mch_billno != old.mch_billno
        assert (new.re_openid, new.total_amount) == (old.re_openid, old.total_amount)
        [event] = bench.store.events(new.id)[:1]
        assert event.kind == "retry"
        assert f"payout {old.id}" in (event.detail or "")
    assert bench.store.get_campaign(campaign_id).state is C.COMPLETED


async def test_concurrent_retries_re_issue_each_failed_payout_once(any_bench: Bench) -> None:
    bench = any_bench
    campaign_id = await _run_with_fatal_errors(bench, failures=3)

    with ThreadPoolExecutor(4) as pool:
        reports = list(
            pool.map(lambda _: retry_payouts(bench.store, campaign_id, clock=bench.clock), range(4))
        )

    assert sum(r.retried for r in reports) == 3
    linked = [p.previous_payout_id for p in bench.store.iter_payouts(campaign_id)]
    assert len([link for link in linked if link is not None]) == 3
    await bench.run(campaign_id)
    assert bench.issued() == dict.fromkeys(bench.users, 1)


async def test_retries_stay_within_the_budget(bench: Bench) -> None:
    # 5 users × 1.00 yuan, a budget of 4.00: one is skipped at the first claim, two fail.
    campaign_id = await _run_with_fatal_errors(bench, failures=2, budget_fen=400)
    assert bench.states(campaign_id)[P.SKIPPED] == 1

    failed = retry_payouts(bench.store, campaign_id, clock=bench.clock)
    await bench.run(campaign_id)
    skipped = retry_payouts(bench.store, campaign_id, state=P.SKIPPED, clock=bench.clock)
    await bench.run(campaign_id)

    assert (failed.retried, failed.budget_left_fen, failed.over_budget) == (2, 200, False)
    assert (skipped.retried, skipped.budget_left_fen, skipped.over_budget) == (1, 0, True)
    assert bench.issued_fen() == 400
    assert bench.store.get_campaign(campaign_id).committed_fen == 400
    latest = {p.natural_key: p for p in bench.store.iter_payouts(campaign_id)}  # by id: last wins
    assert sorted(p.state for p in latest.values()) == [P.SENT] * 4 + [P.SKIPPED]


async def test_a_payout_that_may_have_paid_is_never_retried(bench: Bench) -> None:
    campaign = bench.campaign(bench.users[:3])
    bench.store.set_campaign_state(campaign.id, C.PLANNED, C.RUNNING)
    refused, doubtful, unknown = bench.claim(limit=3)
    bench.store.transition(refused.id, P.SENDING, P.FAILED, err_code="FATAL_ERROR")
    # A FAILED record without a definitive answer (say, written by an older version).
    bench.store.transition(doubtful.id, P.SENDING, P.FAILED, err_code="SYSTEMERROR")
    bench.store.transition(unknown.id, P.SENDING, P.UNKNOWN, err_code="SYSTEMERROR")

    report = retry_payouts(bench.store, campaign.id, clock=bench.clock)

    assert (report.retried, report.unsafe) == (1, 1)
    linked = {p.previous_payout_id for p in bench.store.iter_payouts(campaign.id)}
    assert linked == {None, refused.id}
    with pytest.raises(CampaignError, match="UNKNOWN"):
        retry_payouts(bench.store, campaign.id, state=P.UNKNOWN, clock=bench.clock)
