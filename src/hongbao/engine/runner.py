"""The embedded dispatcher: asyncio workers that send a campaign's payouts from the ledger.

`run_campaign` works for one campaign of one merchant, whose `MerchantProfile` sets the pace
(the GCRA `Pacer`), the number of sends in flight and the daily caps:

1. **Recovery first.** Every in-flight payout whose lease ran out (`LedgerStore.claim_stale`) is
   resolved by gethbinfo or a same-bill resend, and every definitively failed bill gets its
   re-issue, before any new work is claimed — and again every `recovery_every` seconds.
2. **Claims** take as many due payouts as there are free workers; the caps and the budget are
   charged inside the claim's transaction. Each claimed payout goes to `drive_payout`.
3. Between claims the campaign's state is read from the ledger, so `pause`, `cancel` (from
   any process) or a pause by the engine itself (NOTENOUGH, a setup error) stops the run; the
   payouts already in flight finish first.
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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign import OPEN_STATES, CampaignError
from hongbao.engine.limiter import Pacer
from hongbao.engine.payout import DriveResult, PayoutDriver, drive_payout, resume_command
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ledger import Campaign, CampaignState, LedgerStore, Payout, PayoutState, StateTotal

__all__ = ["CampaignRunner", "RunProgress", "RunSummary", "run_campaign"]

logger = logging.getLogger("hongbao.engine")

C = CampaignState
P = PayoutState

Sleep = Callable[[float], Awaitable[None]]


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
            driver = PayoutDriver(
                store=self.store,
                client=client,
                profile=self.profile,
                policy=self.settings.policy,
                clock=self.clock,
                send_pacer=self._pacer(self.profile.rate_per_minute),
                query_pacer=self._pacer(self.profile.query_rate_per_minute),
                reissue_limit=self.settings.reissue_limit,
                executor=executor,
            )
            try:
                return await self._run(driver, campaign)
            finally:
                await self._cancel_inflight()
                if self._client is None:
                    await client.aclose()

    def _pacer(self, rate: int) -> Pacer:
        return Pacer(rate, clock=self.clock, sleep=self._sleep)

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
        while True:
            self._raise_failure()
            campaign = await driver.db(self.store.get_campaign, cid)
            if campaign.state is not C.RUNNING:
                return await self._stop(driver, campaign)
            if self.clock.monotonic() - last_recovery >= self.settings.recovery_every:
                await self._recover(driver)
                last_recovery = self.clock.monotonic()
            free = self.profile.concurrency - len(self._inflight)
            if free <= 0:
                await self._wait_any()
                continue
            if await self._claim(driver, cid, free):
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

    async def _claim(self, driver: PayoutDriver, campaign_id: int, free: int) -> bool:
        # The lease covers the wait for the pacer's slots as well as the call itself.
        assert driver.send_pacer is not None
        lease = self.profile.lease_seconds + free * driver.send_pacer.period
        batch = await driver.db(
            self.store.claim,
            self.profile.mch_id,
            limit=free,
            lease_seconds=lease,
            caps=self.profile.caps,
            on_cap=self.profile.cap_policy,
            campaign_id=campaign_id,
        )
        for payout in batch.claimed:
            self._spawn(driver, payout)
        self._settled += len(batch.skipped)
        return bool(batch.claimed or batch.deferred or batch.skipped)

    async def _recover_all(self, driver: PayoutDriver) -> None:
        """Resolve every stale in-flight payout before any new claim (design §4)."""
        while await self._recover(driver) or self._inflight:
            await self._wait_any()
            self._raise_failure()

    async def _recover(self, driver: PayoutDriver) -> int:
        """Take over in-flight payouts whose lease ran out, and re-issue dead bills."""
        free = self.profile.concurrency - len(self._inflight)
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
        if self._inflight:
            await asyncio.wait(
                self._inflight,
                timeout=self.settings.poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        else:
            await self._sleep(self.settings.poll_seconds)

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
