"""The embedded dispatcher: asyncio workers that send a campaign's payouts from the ledger.

`run_campaign` works for one campaign of one merchant, whose `MerchantProfile` sets the pace
(the GCRA `Pacer`), the number of sends in flight and the daily caps:

1. **Recovery first.** Every in-flight payout whose lease ran out (`LedgerStore.claim_stale`) is
   resolved by gethbinfo or a same-bill resend, and every definitively failed bill gets its
   re-issue, before any new work is claimed — and again every `recovery_every` seconds.
2. **Claims** take due payouts for the free workers, several at once: one transaction commits
   them all SENDING, with the caps and the budget charged in it. Each claimed payout goes to
   `drive_payout`. The drives' outcomes are committed in rounds by a `GroupCommitter`, and a
   round also claims the payouts for the workers its drives free — outcomes and next work in
   one transaction, one commit — while each drive waits for its own commit before it goes on.
3. A claim takes only payouts of a RUNNING campaign, so `pause`, `cancel` (from any process) or
   a pause by the engine itself (NOTENOUGH, a setup error) stops the claims; the run ends once
   the payouts already in flight finish.
4. The run ends when nothing is left to do: the campaign is COMPLETED once no payout is open,
   or the run returns early when the next due payout is more than `max_idle_wait` away (a
   daily limit deferred it to tomorrow: run again then).

The ledger, not the process, is the memory: after `kill -9` a new `run_campaign` on the same
ledger carries on where the ledger says.

>>> summary = asyncio.run(run_campaign(store, campaign.id, profile))  # doctest: +SKIP
>>> summary.stopped
'completed'
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign import OPEN_STATES, CampaignError
from hongbao.engine.groupcommit import GroupCommitter, Refill
from hongbao.engine.limiter import DEFAULT_MARGIN, Pacer
from hongbao.engine.payout import DriveResult, PayoutDriver, drive_payout, resume_command
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ledger import (
    Campaign,
    CampaignState,
    ClaimRequest,
    ClaimResult,
    LedgerStore,
    Payout,
    PayoutState,
    StateTotal,
    Transition,
)

__all__ = ["CampaignRunner", "RunProgress", "RunSummary", "run_campaign"]

logger = logging.getLogger("hongbao.engine")

C = CampaignState
P = PayoutState

Sleep = Callable[[float], Awaitable[None]]

_HOLD_BACK = frozenset({P.DEFERRED, P.UNKNOWN})
"""Outcomes after which a commit round claims nothing new."""


def _pacer_burst(rate_per_minute: int) -> int:
    """The GCRA burst of a runner's pacer: 2 where the pacing margin has room for it, else 1.

    With burst 1 every late wake-up of a busy event loop is lost for good (the next slot counts
    from the late send), and a runner falls a few percent under its rate; with burst 2 the next
    send catches up. GCRA then allows `rate / (1 + margin) + 1` calls in any 60 s window, under
    WeChat's count as long as the margin is worth two calls a minute (200/min and more).
    """
    return 2 if rate_per_minute * DEFAULT_MARGIN >= 2 else 1


CLAIM_SLACK_SECONDS = 1.0
"""Added to a claim's lease: the hand-off to a worker and the wait for the group commit of
the run's other outcomes take time too, and a lease too short is renewed before the send."""


@dataclass(frozen=True, slots=True)
class RunProgress:
    """Where a run stands, after each payout it drove (for a progress bar)."""

    campaign_id: int
    total: int
    """Payouts of the campaign (re-issues included)."""
    settled: int
    """Payouts no longer open (sent, failed, skipped, cancelled…)."""
    driven: int
    """Drives done by this run (a payout may be driven more than once)."""
    last: DriveResult | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended."""

    campaign_id: int
    campaign_state: CampaignState
    stopped: str
    """Why the run ended: "completed", "paused: <reason>", "cancelled", or "waiting: …"."""
    driven: int
    """Drives done by this run."""
    totals: dict[PayoutState, StateTotal] = field(default_factory=dict)
    next_due: datetime | None = None
    """When the next open payout is due (set when the run stopped to wait)."""


class CampaignRunner:
    """Runs one campaign with asyncio workers; see the module docstring for the order of work.

    Without `client`, an `AsyncClient` (aiohttp, the merchant's certificate) is created and
    closed by the run. `sleep` is how idle waits and the pacers wait (tests pass a fake clock's).
    """

    def __init__(
        self,
        store: LedgerStore,
        profile: MerchantProfile,
        *,
        settings: RunSettings | None = None,
        client: AsyncClient | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        progress: Callable[[RunProgress], None] | None = None,
    ) -> None:
        self.store = store
        self.profile = profile
        self.settings = settings or RunSettings()
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self._sleep = sleep
        self._progress = progress
        self._inflight: set[asyncio.Task[DriveResult]] = set()
        self._reserved = 0
        """Workers promised to claims under way."""
        self._refill = False
        """Whether commit rounds may claim (not during recovery, nor once the run ends)."""
        self._driver: PayoutDriver | None = None
        self._wake: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._campaign_id = 0
        self._driven = 0
        self._total = 0
        self._settled = 0

    async def run(self, campaign_id: int) -> RunSummary:
        """Run the campaign until it is done, paused, cancelled, or waiting for a later day."""
        self._campaign_id = campaign_id
        self._driven = self._total = self._settled = 0
        self._failure = None
        # The client first: a missing certificate must stop the run before the ledger changes.
        client = self._client or AsyncClient(self.profile.merchant, clock=self.clock)
        try:
            campaign = await self._start(campaign_id)
        except BaseException:
            if self._client is None:
                await client.aclose()
            raise
        if campaign.state is C.COMPLETED:
            if self._client is None:
                await client.aclose()
            return await self._summary(campaign_id, "completed")
        # SQLite has one writer at a time: threads racing for it only sleep in its busy handler,
        # so its calls go through one thread; PostgreSQL takes them side by side.
        sqlite = self.store.engine.dialect.name == "sqlite"
        workers = 1 if sqlite else self.profile.concurrency + 2
        with ThreadPoolExecutor(workers, thread_name_prefix="hongbao-ledger") as executor:
            committer = GroupCommitter(self.store, executor=executor, refill=_RoundClaims(self))
            driver = self._driver = PayoutDriver(
                store=self.store,
                client=client,
                profile=self.profile,
                policy=self.settings.policy,
                clock=self.clock,
                send_pacer=self._pacer(self.profile.rate_per_minute),
                query_pacer=self._pacer(self.profile.query_rate_per_minute),
                reissue_limit=self.settings.reissue_limit,
                executor=executor,
                committer=committer,
            )
            try:
                return await self._run(driver, campaign)
            finally:
                self._refill = False
                await self._cancel_inflight()
                await committer.aclose()
                self._driver = None
                if self._client is None:
                    await client.aclose()

    def _pacer(self, rate: int) -> Pacer:
        return Pacer(rate, burst=_pacer_burst(rate), clock=self.clock, sleep=self._sleep)

    async def _start(self, campaign_id: int) -> Campaign:
        campaign = self.store.get_campaign(campaign_id)
        if (campaign.merchant, campaign.mch_id) != (self.profile.name, self.profile.mch_id):
            raise CampaignError(
                f"campaign {campaign_id} pays from merchant {campaign.merchant} "
                f"({campaign.mch_id}), not {self.profile.name} ({self.profile.mch_id})",
                field="merchant",
            )
        if campaign.state is C.DRAFT:
            raise CampaignError(
                f"campaign {campaign_id} is not planned yet: plan it (`hongbao campaign plan "
                f"{campaign_id}`), then run it"
            )
        if campaign.state is C.PAUSED:
            raise CampaignError(
                f"campaign {campaign_id} is paused ({campaign.pause_reason}); fix the cause, "
                f"then {resume_command(campaign_id)}"
            )
        if campaign.state is C.PLANNED:
            self.store.set_campaign_state(campaign_id, C.PLANNED, C.RUNNING)
            campaign = self.store.get_campaign(campaign_id)
        return campaign

    async def _run(self, driver: PayoutDriver, campaign: Campaign) -> RunSummary:
        cid = campaign.id
        totals = await driver.db(self.store.totals_by_state, cid)
        self._total = sum(total.count for total in totals.values())
        self._settled = self._total - sum(totals[state].count for state in OPEN_STATES)
        await self._recover_all(driver)
        last_recovery = self.clock.monotonic()
        self._refill = True
        # Claim when a few workers are free, not one by one: a claim is a transaction.
        batch = max(1, self.profile.concurrency // 4)
        while True:
            self._raise_failure()
            if self.clock.monotonic() - last_recovery >= self.settings.recovery_every:
                # Rounds stop claiming until recovery had the workers it needs.
                self._refill = False
                if self._free() < 1 and self._inflight:
                    await self._wait_any()
                    continue
                await self._recover(driver)
                last_recovery = self.clock.monotonic()
                self._refill = True
            free = self._free()
            # None free at all: a commit round's claim holds the workers it reserved.
            if free < 1 or (free < batch and self._inflight):
                await self._wait_any()
                continue
            # Nothing claimed: none due, or the campaign is no longer RUNNING (claims take
            # only a running campaign's payouts).
            if await self._claim(driver, free):
                continue
            if self._inflight:
                await self._wait_any()
                continue
            # Idle: the last drives may have paused the campaign while the claim ran.
            campaign = await driver.db(self.store.get_campaign, cid)
            if campaign.state is not C.RUNNING:
                return await self._stop(driver, campaign)
            if await self._reissue_dead(driver, cid):
                continue
            due = await driver.db(self.store.next_due, cid)
            if due is None:
                await driver.db(self.store.set_campaign_state, cid, C.RUNNING, C.COMPLETED)
                return await self._summary(cid, "completed")
            wait = (due - self.clock.now()).total_seconds()
            if wait > self.settings.max_idle_wait:
                stopped = f"waiting: the next payout is due at {due.isoformat()}; run again then"
                return await self._summary(cid, stopped, due)
            if wait <= 0 and await self._recover(driver):
                last_recovery = self.clock.monotonic()
                continue
            await self._sleep(max(0.0, min(wait, self.settings.poll_seconds)))

    def _free(self) -> int:
        """Workers neither driving a payout nor promised to a claim under way."""
        return self.profile.concurrency - len(self._inflight) - self._reserved

    def _claim_request(self, free: int) -> ClaimRequest:
        """A claim of the campaign's due payouts for `free` workers (their slots reserved)."""
        driver = self._driver
        assert driver is not None
        assert driver.send_pacer is not None
        self._reserved += free
        # The lease covers the wait for the pacer's slots as well as the call itself.
        lease = self.profile.lease_seconds + free * driver.send_pacer.period + CLAIM_SLACK_SECONDS
        return ClaimRequest(
            mch_id=self.profile.mch_id,
            limit=free,
            lease_seconds=lease,
            caps=self.profile.caps,
            on_cap=self.profile.cap_policy,
            campaign_id=self._campaign_id,
        )

    def _claimed(self, request: ClaimRequest, result: ClaimResult | None) -> None:
        """Hand what a claim took to drives, and give its unused reservation back."""
        self._reserved -= request.limit
        if result is None:
            return
        driver = self._driver
        assert driver is not None
        for payout in result.claimed:
            self._spawn(driver, payout)
        self._settled += len(result.skipped)

    async def _claim(self, driver: PayoutDriver, free: int) -> bool:
        request = self._claim_request(free)
        result = None
        try:
            result = await driver.db(
                self.store.claim,
                request.mch_id,
                limit=request.limit,
                lease_seconds=request.lease_seconds,
                caps=request.caps,
                on_cap=request.on_cap,
                campaign_id=request.campaign_id,
            )
        finally:
            self._claimed(request, result)
        return bool(result.claimed or result.deferred or result.skipped)

    async def _recover_all(self, driver: PayoutDriver) -> None:
        """Resolve every stale in-flight payout before any new claim (design §4)."""
        while await self._recover(driver) or self._inflight:
            await self._wait_any()
            self._raise_failure()

    async def _recover(self, driver: PayoutDriver) -> int:
        """Take over in-flight payouts whose lease ran out, and re-issue dead bills."""
        free = self._free()
        taken = 0
        if free > 0:
            assert driver.query_pacer is not None
            lease = self.profile.lease_seconds + free * driver.query_pacer.period
            stale = await driver.db(
                self.store.claim_stale, self.profile.mch_id, limit=free, lease_seconds=lease
            )
            for payout in stale:
                self._spawn(driver, payout)
            taken = len(stale)
        return taken + await self._reissue_dead(driver, None)

    async def _reissue_dead(self, driver: PayoutDriver, campaign_id: int | None) -> int:
        dead = await driver.db(
            self.store.dead_bills,
            campaign_id=campaign_id,
            mch_id=self.profile.mch_id,
            max_generation=self.settings.reissue_limit,
        )
        made = 0
        for payout in dead:
            if await driver.reissue(payout) is not None:
                made += 1
                if payout.campaign_id is not None:
                    self._total += 1
        return made

    def _spawn(self, driver: PayoutDriver, payout: Payout) -> None:
        task = asyncio.create_task(drive_payout(payout, driver), name=f"payout-{payout.id}")
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[DriveResult]) -> None:
        self._inflight.discard(task)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            self._failure = self._failure or failure
            return
        result = task.result()
        self._driven += 1
        if not result.lost and result.state not in OPEN_STATES:
            self._settled += 1
        if result.reissued is not None:
            self._total += 1
        if self._progress is not None:
            self._progress(
                RunProgress(
                    campaign_id=self._campaign_id,
                    total=self._total,
                    settled=self._settled,
                    driven=self._driven,
                    last=result,
                )
            )

    async def _wait_any(self) -> None:
        """Until a drive ends (at most `poll_seconds`), or a poll's sleep when none is running."""
        if not self._inflight:
            await self._sleep(self.settings.poll_seconds)
            return
        # One future that `_done` resolves: cheaper than watching every task in flight.
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait({self._wake}, timeout=self.settings.poll_seconds)
        finally:
            self._wake = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _stop(self, driver: PayoutDriver, campaign: Campaign) -> RunSummary:
        # Paused or cancelled: what is in flight finishes (money may be on its way).
        while self._inflight:
            await self._wait_any()
        self._raise_failure()
        campaign = await driver.db(self.store.get_campaign, campaign.id)
        if campaign.state is C.PAUSED:
            return await self._summary(campaign.id, f"paused: {campaign.pause_reason}")
        return await self._summary(campaign.id, campaign.state.value.lower())

    async def _cancel_inflight(self) -> None:
        # Only after a failure: what the cancelled drives committed stays, like after a crash.
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _summary(
        self, campaign_id: int, stopped: str, due: datetime | None = None
    ) -> RunSummary:
        campaign = self.store.get_campaign(campaign_id)
        return RunSummary(
            campaign_id=campaign_id,
            campaign_state=campaign.state,
            stopped=stopped,
            driven=self._driven,
            totals=self.store.totals_by_state(campaign_id),
            next_due=due,
        )


class _RoundClaims(Refill):
    """The runner's side of the commit rounds: what a round claims, and where it goes."""

    def __init__(self, runner: CampaignRunner) -> None:
        self.runner = runner

    def claim_for(self, finishing: Sequence[Transition]) -> ClaimRequest | None:
        runner = self.runner
        if not runner._refill or runner._failure is not None:
            return None
        if any(change.to_state in _HOLD_BACK for change in finishing):
            # A limit, the balance or an unknown outcome: new work waits until these drives
            # have backed off or paused the campaign (the main loop claims then).
            return None
        # The finishing drives are still in flight, but their workers are free once it commits.
        free = runner._free() + len(finishing)
        return runner._claim_request(free) if free > 0 else None

    def claimed(self, request: ClaimRequest, result: ClaimResult | None) -> None:
        self.runner._claimed(request, result)


async def run_campaign(
    store: LedgerStore,
    campaign_id: int,
    profile: MerchantProfile,
    *,
    settings: RunSettings | None = None,
    client: AsyncClient | None = None,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    progress: Callable[[RunProgress], None] | None = None,
) -> RunSummary:
    """Send a planned campaign's payouts until done, paused, cancelled or waiting for tomorrow.

    Raises `CampaignError` when the campaign is not planned, is paused, or belongs to another
    merchant, and `ConfigurationError` when the merchant has no certificate — before anything
    is claimed. After a crash, run it again: the ledger says where to carry on.

    >>> summary = asyncio.run(run_campaign(store, 7, profile, progress=print))  # doctest: +SKIP
    >>> summary.stopped, summary.totals[PayoutState.SENT]
    """
    runner = CampaignRunner(
        store,
        profile,
        settings=settings,
        client=client,
        clock=clock,
        sleep=sleep,
        progress=progress,
    )
    return await runner.run(campaign_id)
