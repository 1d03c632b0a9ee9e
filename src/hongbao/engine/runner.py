"""The embedded dispatcher: asyncio workers that send a campaign's payouts from the ledger.

`run_campaign` works for one campaign of one merchant, whose `MerchantProfile` sets the pace
(the GCRA `Pacer`), the number of sends in flight and the daily caps. It holds the campaign's
scope on the dispatch core (`hongbao.engine.dispatch`), which does steps 1 and 2:

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
5. `interrupt()` (the first Ctrl-C) stops the claims, lets the packets in flight resolve and
   leaves the campaign INTERRUPTED; the next run continues it. Every `status_every` seconds
   `on_status` hears what the run waits for (`Dispatcher.status`).

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
from dataclasses import dataclass, field, replace
from datetime import datetime

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign import OPEN_STATES, CampaignError
from hongbao.engine.dispatch import Dispatcher, Pace, build_driver
from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.payout import DriveResult, resume_command
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.status import report_every
from hongbao.ledger import (
    Campaign,
    CampaignState,
    LedgerStore,
    PayoutState,
    Scope,
    StateTotal,
)

__all__ = ["CampaignRunner", "RunProgress", "RunSummary", "paused_message", "run_campaign"]

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
    interrupted: bool = False
    """The run was interrupted (`CampaignRunner.interrupt`)."""


def paused_message(campaign: Campaign) -> str:
    """Why a run stopped at a paused campaign, with the command that resumes it."""
    reason = campaign.pause_reason or "paused"
    command = resume_command(campaign.id)
    return f"paused: {reason}" if command in reason else f"paused: {reason}; then {command}"


class CampaignRunner:
    """Runs one campaign on the dispatch core; see the module docstring for the order of work.

    Without `client`, an `AsyncClient` (the merchant's certificate) is created and
    closed by the run. `sleep` is how idle waits and the pacers wait (tests pass a fake clock's).
    `pace` shares the merchant's pacers with the other dispatchers of this process.
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
        pace: Pace | None = None,
        on_status: Callable[[str | None], None] | None = None,
    ) -> None:
        self.store = store
        self.profile = profile
        self.settings = settings or RunSettings()
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self._sleep = sleep
        self._progress = progress
        self._pace = pace
        self._campaign_id = 0
        self._total = 0
        self._settled = 0
        self._summary: RunSummary | None = None
        self._dispatcher: Dispatcher | None = None
        self._on_status = on_status
        self._interrupted = False
        self._draining = 0

    def interrupt(self) -> None:
        """Stop claiming; the run returns once the packets in flight resolved (call it on the
        run's event loop, e.g. from a SIGINT handler)."""
        self._interrupted = True
        if self._dispatcher is not None:
            self._dispatcher.stop()
            self._dispatcher.driver.halt()

    async def status(self) -> str | None:
        """What the run waits for, in one line (None: nothing, or not started)."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return None
        line = await dispatcher.status()
        if self._interrupted:
            waiting = f"interrupted: waiting for {dispatcher.in_flight} in flight to resolve"
            return f"{waiting} (Ctrl-C again to stop at once)" + (f"; {line}" if line else "")
        return line

    async def run(self, campaign_id: int) -> RunSummary:
        """Run the campaign until it is done, paused, cancelled, or waiting for a later day."""
        self._campaign_id = campaign_id
        self._summary = None
        # The client first: a missing certificate must stop the run before the ledger changes.
        client = self._client or AsyncClient(self.profile.merchant, clock=self.clock)
        reporter = None
        if self._on_status is not None:
            reporter = asyncio.create_task(
                report_every(self.settings.status_every, self.status, self._on_status)
            )
        try:
            campaign = await self._start(campaign_id)
            if campaign.state is C.COMPLETED:
                return await self._finish(campaign_id, "completed")
            if campaign.state is C.PAUSED:
                return await self._finish(campaign_id, paused_message(campaign))
            return await self._dispatch(client, campaign)
        finally:
            if reporter is not None:
                reporter.cancel()
            if self._client is None:
                await client.aclose()

    async def _dispatch(self, client: AsyncClient, campaign: Campaign) -> RunSummary:
        # SQLite has one writer at a time: threads racing for it only sleep in its busy handler,
        # so its calls go through one thread; PostgreSQL takes them side by side.
        sqlite = self.store.engine.dialect.name == "sqlite"
        workers = 1 if sqlite else self.profile.concurrency + 2
        pace = self._pace or Pace.local(self.profile, clock=self.clock, sleep=self._sleep)
        with ThreadPoolExecutor(workers, thread_name_prefix="hongbao-ledger") as executor:
            committer = GroupCommitter(self.store, executor=executor, inline=True)
            driver = build_driver(
                self.store,
                self.profile,
                client=client,
                settings=self.settings,
                pace=pace,
                clock=self.clock,
                executor=executor,
                committer=committer,
            )
            dispatcher = Dispatcher(
                driver,
                Scope.campaign(self.profile.mch_id, campaign.id),
                settings=self.settings,
                on_result=self._report,
                sleep=self._sleep,
            )
            committer.refill = dispatcher
            try:
                totals = await driver.db(self.store.totals_by_state, campaign.id)
                self._total = sum(total.count for total in totals.values())
                self._settled = self._total - sum(totals[state].count for state in OPEN_STATES)
                self._dispatcher = dispatcher
                if self._interrupted:
                    dispatcher.stop()
                    driver.halt()
                await dispatcher.run(self._idle)
                if self._summary is None:  # stopped by `interrupt()`
                    return await self._drain(dispatcher)
                return self._summary
            except BaseException:
                await dispatcher.cancel()
                raise
            finally:
                await committer.aclose()

    async def _drain(self, dispatcher: Dispatcher) -> RunSummary:
        """After `interrupt()`: let the drives in flight end, and leave the campaign
        INTERRUPTED (or COMPLETED, when nothing is left open)."""
        in_flight = dispatcher.in_flight
        await dispatcher.drain()
        cid, store = self._campaign_id, self.store
        driver = dispatcher.driver
        if await driver.db(store.next_due, cid) is None:
            await driver.db(store.set_campaign_state, cid, C.RUNNING, C.COMPLETED)
            return await self._finish(cid, "completed")
        await driver.db(store.set_campaign_state, cid, C.RUNNING, C.INTERRUPTED)
        totals = await driver.db(store.totals_by_state, cid)
        sent = sum(totals[state].count for state in (P.SENT, P.RECEIVED, P.REFUNDED))
        total = sum(t.count for t in totals.values())
        summary = await self._finish(
            cid,
            f"interrupted: {in_flight} in flight resolved, {sent} of {total} sent; "
            "run again to continue",
        )
        self._summary = replace(summary, interrupted=True)
        return self._summary

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
        if campaign.state in (C.PLANNED, C.INTERRUPTED):
            self.store.set_campaign_state(campaign_id, campaign.state, C.RUNNING)
            campaign = self.store.get_campaign(campaign_id)
        return campaign

    async def _idle(self, dispatcher: Dispatcher) -> bool:
        """Nothing claimable, nothing in flight: stop, or wait for what is due next."""
        driver, cid = dispatcher.driver, self._campaign_id
        # The last drives may have paused the campaign while the claim ran.
        campaign = await driver.db(self.store.get_campaign, cid)
        if campaign.state is C.INTERRUPTED and not self._interrupted:
            # Another run of it was interrupted; this one goes on.
            await driver.db(self.store.set_campaign_state, cid, C.INTERRUPTED, C.RUNNING)
            return True
        if campaign.state is not C.RUNNING:
            if campaign.state is C.PAUSED:
                await self._finish(cid, paused_message(campaign))
            else:
                await self._finish(cid, campaign.state.value.lower())
            return False
        if await dispatcher.reissue_dead():
            return True
        due = await driver.db(self.store.next_due, cid)
        if due is None:
            await driver.db(self.store.set_campaign_state, cid, C.RUNNING, C.COMPLETED)
            await self._finish(cid, "completed")
            return False
        wait = (due - self.clock.now()).total_seconds()
        if wait > self.settings.max_idle_wait:
            stopped = f"waiting: the next payout is due at {due.isoformat()}; run again then"
            await self._finish(cid, stopped, due)
            return False
        if wait <= 0 and await dispatcher.recover():
            return True
        await self._sleep(max(0.0, min(wait, self.settings.poll_seconds)))
        return True

    def _report(self, result: DriveResult) -> None:
        if self._progress is None:
            return
        dispatcher = self._dispatcher
        assert dispatcher is not None
        self._progress(
            RunProgress(
                campaign_id=self._campaign_id,
                total=self._total + dispatcher.reissued,
                settled=self._settled + dispatcher.settled,
                driven=dispatcher.driven,
                last=result,
            )
        )

    async def _finish(
        self, campaign_id: int, stopped: str, due: datetime | None = None
    ) -> RunSummary:
        campaign = self.store.get_campaign(campaign_id)
        dispatcher = self._dispatcher
        self._summary = RunSummary(
            campaign_id=campaign_id,
            campaign_state=campaign.state,
            stopped=stopped,
            driven=0 if dispatcher is None else dispatcher.driven,
            totals=self.store.totals_by_state(campaign_id),
            next_due=due,
        )
        return self._summary


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
    pace: Pace | None = None,
    on_status: Callable[[str | None], None] | None = None,
) -> RunSummary:
    """Send a planned campaign's payouts until done, paused, cancelled or waiting for tomorrow.

    A paused campaign sends nothing: the summary says so, with how to resume it. Raises
    `CampaignError` when the campaign is not planned or belongs to another merchant, and
    `ConfigurationError` when the merchant has no certificate — before anything is claimed.
    After a crash, run it again: the ledger says where to carry on.

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
        pace=pace,
        on_status=on_status,
    )
    return await runner.run(campaign_id)
