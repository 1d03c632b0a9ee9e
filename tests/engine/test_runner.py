"""`run_campaign` in-process: to the end, after a crash, paused / cancelled from outside, and
within the merchant's limits (rate, per-user caps) as the simulator measures them."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import SecretStr

from hongbao.engine.campaign import (
    CampaignError,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
)
from hongbao.engine.runner import RunProgress, run_campaign
from hongbao.engine.states import next_beijing_midnight
from hongbao.errors import ConfigurationError
from hongbao.ledger import CampaignState, PayoutState, SendApi
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from hongbao.wire.transport import AsyncTransport, WireRequest, WireResponse
from tests.engine.enginekit import TEMPLATE, Bench, Crash, CrashingTransport, make_bench
from tests.ledgerkit import daily_usage

P = PayoutState
C = CampaignState


async def test_a_campaign_runs_to_the_end_and_reports_progress(any_bench: Bench) -> None:
    bench = any_bench
    campaign = bench.campaign()
    seen: list[RunProgress] = []

    summary = await bench.run(campaign.id, progress=seen.append)

    assert summary.stopped == "completed"
    assert summary.campaign_state is C.COMPLETED
    assert summary.totals[P.SENT].count == len(bench.users)
    assert bench.issued() == Counter(bench.users)
    assert [p.settled for p in seen] == list(range(1, len(bench.users) + 1))
    assert {(p.campaign_id, p.total) for p in seen} == {(campaign.id, len(bench.users))}


async def test_a_completed_campaign_runs_no_more(bench: Bench) -> None:
    campaign = bench.campaign()
    await bench.run(campaign.id)

    summary = await bench.run(campaign.id)

    assert (summary.stopped, summary.driven) == ("completed", 0)
    assert bench.issued() == Counter(bench.users)


@pytest.mark.parametrize("crash", ["before", "after"])
async def test_after_a_crash_a_new_run_carries_on_where_the_ledger_says(
    any_bench: Bench, crash: str
) -> None:
    bench = any_bench
    users = bench.sim.add_users(bench.creds.appid, 20)
    campaign = bench.campaign(users)
    crashing = CrashingTransport(bench.transport())
    crashing.arm(crash, skip=7)

    with pytest.raises(Crash):
        await bench.run(campaign.id, client=bench.client(transport=crashing))
    assert 0 < sum(bench.issued().values()) < len(users)

    bench.clock.advance(bench.profile.lease_seconds * 2)  # the dead process's leases run out
    summary = await bench.run(campaign.id)

    assert summary.stopped == "completed"
    assert bench.issued() == Counter(users)
    assert bench.states(campaign.id) == {P.SENT: len(users)}


class GbkSendAnswers(AsyncTransport):
    """Passes requests on; every send's answer comes back declaring GBK (undecodable)."""

    def __init__(self, inner: AsyncTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        response = await self.inner.handle_async_request(request)
        if request.path.endswith("/gethbinfo"):
            return response
        body = response.body.replace(b"<xml>", b'<?xml version="1.0" encoding="GBK"?><xml>', 1)
        return WireResponse(response.status, body, url=response.url)


async def test_undecodable_send_answers_leave_no_payout_sending_and_pay_each_once(
    any_bench: Bench,
) -> None:
    # Every send is paid but answered in an encoding expat refuses: the run must neither crash
    # nor leave payouts SENDING; each is an unknown outcome that a query resolves to SENT.
    bench = any_bench
    campaign = bench.campaign()
    gbk = GbkSendAnswers(bench.transport())

    summary = await bench.run(campaign.id, client=bench.client(transport=gbk))

    assert summary.stopped == "completed"
    assert bench.states(campaign.id) == {P.SENT: len(bench.users)}
    assert bench.issued() == Counter(bench.users)


async def test_a_pause_from_another_process_stops_the_run_and_resume_finishes(
    any_bench: Bench,
) -> None:
    bench = any_bench
    bench.with_profile(concurrency=1)
    campaign = bench.campaign()

    def pause_after_two(progress: RunProgress) -> None:
        if progress.settled == 2:
            pause_campaign(bench.store, campaign.id, "the boss said stop")

    summary = await bench.run(campaign.id, progress=pause_after_two)

    resume = f"`hongbao campaign resume {campaign.id}`"
    assert summary.stopped == f"paused: the boss said stop; then {resume}"
    sent = summary.totals[P.SENT].count
    assert 2 <= sent < len(bench.users)
    again = await bench.run(campaign.id)  # a paused campaign sends nothing, and says why
    assert (again.campaign_state, again.stopped) == (C.PAUSED, summary.stopped)
    assert sum(bench.issued().values()) == sent

    resume_campaign(bench.store, campaign.id, clock=bench.clock)
    assert (await bench.run(campaign.id)).stopped == "completed"
    assert bench.issued() == Counter(bench.users)


async def test_a_cancel_from_another_process_stops_the_run(bench: Bench) -> None:
    bench.with_profile(concurrency=1)
    campaign = bench.campaign()

    def cancel_after_one(progress: RunProgress) -> None:
        if progress.settled == 1:
            cancel_campaign(bench.store, campaign.id)

    summary = await bench.run(campaign.id, progress=cancel_after_one)

    assert summary.stopped == "cancelled"
    sent = summary.totals[P.SENT].count
    # The first outcome was committed together with the claim of the next payout (one commit
    # round), so that one was already on its way when the cancel came; nothing after it was.
    assert 1 <= sent <= 2
    assert summary.totals[P.CANCELLED].count == len(bench.users) - sent
    assert sum(bench.issued().values()) == sent


async def test_notenough_pauses_the_campaign_and_resume_completes_it(any_bench: Bench) -> None:
    bench = any_bench
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(balance_fen=250))
    campaign = bench.campaign()

    summary = await bench.run(campaign.id)

    assert summary.campaign_state is C.PAUSED
    assert summary.stopped.startswith("paused: NOTENOUGH: balance too low")
    assert summary.stopped.endswith(f"`hongbao campaign resume {campaign.id}`")
    assert sum(bench.issued().values()) == 2

    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(balance_fen=10_000))
    resume_campaign(bench.store, campaign.id, clock=bench.clock)
    summary = await bench.run(campaign.id)

    assert summary.stopped == "completed"
    assert bench.issued() == Counter(bench.users)


async def test_a_wrong_api_key_pauses_the_campaign_and_pays_nothing(bench: Bench) -> None:
    wrong = replace(bench.profile.merchant, api_key=SecretStr("W" * 32))
    profile = replace(bench.profile, merchant=wrong)
    campaign = bench.campaign()

    summary = await bench.run(campaign.id, profile=profile, client=bench.client(wrong))

    assert summary.campaign_state is C.PAUSED
    assert "SIGN_ERROR" in summary.stopped
    assert "W" * 32 not in summary.stopped
    assert bench.issued() == {}
    assert summary.totals[P.SENT].count == 0
    assert summary.totals[P.PLANNED].count + summary.totals[P.DEFERRED].count == len(bench.users)


async def test_a_missing_certificate_stops_the_run_before_the_ledger_changes(bench: Bench) -> None:
    profile = replace(bench.profile, merchant=replace(bench.profile.merchant, certificate=None))
    campaign = bench.campaign()

    with pytest.raises(ConfigurationError, match="certificate"):
        await run_campaign(bench.store, campaign.id, profile, clock=bench.clock)

    assert bench.store.get_campaign(campaign.id).state is C.PLANNED
    assert bench.states(campaign.id) == {P.PLANNED: len(bench.users)}


async def test_a_campaign_of_another_merchant_is_refused(bench: Bench) -> None:
    campaign = bench.campaign()
    other = replace(bench.profile, name="other")
    with pytest.raises(CampaignError, match="merchant"):
        await bench.run(campaign.id, profile=other)


@pytest.mark.parametrize("cap", [30, 300])
async def test_the_send_rate_stays_under_the_cap_the_simulator_counts(
    bench: Bench, cap: int
) -> None:
    """Pacer and simulator share one clock: the cap holds exactly, without real waiting.

    At 300/min the pacer may send two back to back (burst 2) and the cap still holds."""
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(rate_per_minute=cap))
    bench.with_profile(rate_per_minute=cap, concurrency=8, lease_seconds=3600)
    users = bench.sim.add_users(bench.creds.appid, cap * 5 // 2)
    campaign = bench.campaign(users)

    summary = await bench.run(campaign.id)

    assert summary.stopped == "completed"
    _, records = bench.sim.state.ledger(bench.mch_id)
    times = sorted(record.send_time for record in records)
    assert len(times) == len(users)
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t - start < timedelta(seconds=60)]
        assert len(in_window) <= cap
    freq_limited = [
        event
        for payout in bench.store.iter_payouts(campaign.id)
        for event in bench.store.events(payout.id)
        if event.err_code == "FREQ_LIMIT"
    ]
    assert freq_limited == []


async def test_a_retry_within_a_call_waits_for_its_own_slot(bench: Bench) -> None:
    """A call the network dropped after WeChat paid is retried with the same bytes: that retry
    is a send call WeChat counts, so it must take a slot of the pace like any other."""
    cap = 30
    bench.sim.state.update_merchant(bench.mch_id, MerchantSettings(rate_per_minute=cap))
    bench.with_profile(rate_per_minute=cap, concurrency=8, lease_seconds=3600)
    bench.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "pay_then_drop", "probability": 0.5})
    )
    users = bench.sim.add_users(bench.creds.appid, cap * 2)
    campaign = bench.campaign(users)

    summary = await bench.run(campaign.id)

    assert summary.stopped == "completed"
    assert bench.issued() == Counter(users)
    answers = Counter(
        event.err_code
        for payout in bench.store.iter_payouts(campaign.id)
        for event in bench.store.events(payout.id)
        if event.kind == "send"
    )
    assert answers["FREQ_LIMIT"] == 0


async def test_per_user_caps_hold_across_concurrent_campaigns(any_bench: Bench) -> None:
    bench = any_bench
    bench.with_profile(per_user_daily_count=2)
    campaigns = [bench.campaign(name=f"wave {n}") for n in range(4)]

    summaries = await asyncio.gather(*(bench.run(c.id) for c in campaigns))

    assert bench.issued() == Counter({user: 2 for user in bench.users})
    for user in bench.users:
        usage = daily_usage(bench.store, bench.mch_id, user, bench.clock.now().date())
        assert usage.count == 2
    deferred = sum(s.totals[P.DEFERRED].count for s in summaries)
    assert deferred == 2 * len(bench.users)
    assert {s.stopped.split(":")[0] for s in summaries} <= {"completed", "waiting"}


async def test_a_day_later_deferred_payouts_go(bench: Bench) -> None:
    bench.with_profile(per_user_daily_count=1)
    first = bench.campaign(name="morning")
    second = bench.campaign(name="evening")
    await bench.run(first.id)

    waiting = await bench.run(second.id)

    tomorrow = next_beijing_midnight(bench.clock.now())
    assert waiting.stopped.startswith("waiting")
    assert waiting.next_due == tomorrow
    assert waiting.campaign_state is C.RUNNING
    bench.clock.advance((tomorrow - bench.clock.now()).total_seconds())
    assert (await bench.run(second.id)).stopped == "completed"
    assert bench.issued() == Counter({user: 2 for user in bench.users})


@pytest.mark.parametrize("api", [SendApi.SENDGROUPREDPACK, SendApi.SENDMINIPROGRAMHB])
async def test_fission_and_mini_program_campaigns_pay(
    tmp_path_factory: pytest.TempPathFactory, api: SendApi
) -> None:
    tmp = tmp_path_factory.mktemp("bench")
    bench = make_bench(f"sqlite:///{tmp / 'ledger.db'}", tmp)
    template = TEMPLATE
    users = bench.users
    if api is SendApi.SENDGROUPREDPACK:
        template = replace(TEMPLATE, api=api, total_num=3, amount_fen=300)
    else:
        template = replace(TEMPLATE, api=api)
        users = bench.sim.add_users(bench.creds.mini_appid, 3)
    campaign = bench.campaign(users, template=template)

    summary = await bench.run(campaign.id)

    assert summary.stopped == "completed"
    assert bench.issued() == Counter(users)
    _, records = bench.sim.state.ledger(bench.mch_id)
    assert {record.api for record in records} == {api.value}
    bench.store.close()
