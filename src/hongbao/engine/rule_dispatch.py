"""The rule-mode dispatcher: sends one merchant's rule payouts with the same `drive_payout`.

Payouts of rule mode are recorded PLANNED with their payment (see `hongbao.engine.notify`);
`RuleDispatcher` sends them from the ledger, like the campaign runner does for a campaign:

1. **Recovery first.** On start, every rule payout left SENDING/UNKNOWN by a crash whose lease
   ran out is taken over (`LedgerStore.claim_stale`) and resolved by gethbinfo or a same-bill
   resend, before anything new is claimed; the same look is taken every `recovery_every`
   seconds, and definitively failed bills get their re-issue.
2. **Claims** take due PLANNED/DEFERRED rule payouts of the merchant, as many as there are free
   sends (`MerchantProfile.concurrency`); the daily caps are charged in the claim's
   transaction. Each claimed payout goes to `drive_payout`, paced by the merchant's `Pacer`.
3. Between claims it sleeps until `wake()` (a payment was just recorded) or `poll_seconds`.

Only rule payouts (natural key `rule:…`, no campaign) are touched, so a campaign of the same
merchant can run beside it. After `kill -9`, a new dispatcher on the same ledger carries on.

>>> dispatcher = RuleDispatcher(store, profile)  # doctest: +SKIP
>>> task = asyncio.create_task(dispatcher.run())  # doctest: +SKIP
>>> dispatcher.wake()  # a payment was recorded  # doctest: +SKIP
>>> dispatcher.stop(); await task  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.limiter import Pacer
from hongbao.engine.payout import DriveResult, PayoutDriver, drive_payout
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ledger import LedgerStore, Payout
from hongbao.ledger.rules_store import RULE_KEY_PREFIX, RuleLedger

__all__ = ["RuleDispatcher"]

logger = logging.getLogger("hongbao.engine")

Sleep = Callable[[float], Awaitable[None]]


class RuleDispatcher:
    """Drives the rule payouts of one merchant until `stop()`; see the module docstring.

    Without `client`, an `AsyncClient` (the merchant's certificate) is made and closed by `run`.
    Store calls run on `executor` (None: the loop's default); `wake()` may be called from any
    thread.
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
        executor: Executor | None = None,
    ) -> None:
        self.store = store
        self.ledger = RuleLedger(store.engine, clock=clock)
        self.profile = profile
        self.settings = settings or RunSettings()
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self._sleep = sleep
        self._executor = executor
        self._inflight: dict[int, asyncio.Task[DriveResult]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self.driven = 0
        """Drives done since `run` started."""

    def __repr__(self) -> str:
        return f"RuleDispatcher({self.profile.name}, in_flight={len(self._inflight)})"

    def wake(self) -> None:
        """Look for work now (a payment was recorded); safe from any thread."""
        with self._lock:
            loop, event = self._loop, self._wakeup
        if loop is None or event is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        else:
            loop.call_soon_threadsafe(event.set)

    def stop(self) -> None:
        """Ask `run` to return: nothing new is claimed, sends in flight finish first."""
        self._stopping = True
        self.wake()

    async def run(self) -> None:
        """Recover, then send due rule payouts as they come, until `stop()`."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
        client = self._client or AsyncClient(self.profile.merchant, clock=self.clock)
        driver = PayoutDriver(
            store=self.store,
            client=client,
            profile=self.profile,
            policy=self.settings.policy,
            clock=self.clock,
            send_pacer=Pacer(self.profile.rate_per_minute, clock=self.clock, sleep=self._sleep),
            query_pacer=Pacer(
                self.profile.query_rate_per_minute, clock=self.clock, sleep=self._sleep
            ),
            reissue_limit=self.settings.reissue_limit,
            executor=self._executor,
        )
        try:
            await self._recover_first(driver)
            last_recovery = self.clock.monotonic()
            while not self._stopping:
                try:
                    if self.clock.monotonic() - last_recovery >= self.settings.recovery_every:
                        await self._recover(driver)
                        last_recovery = self.clock.monotonic()
                    if not await self._claim(driver):
                        await self._idle()
                except SQLAlchemyError:
                    # The ledger is unreachable for now: keep the server up and try again; what
                    # was committed stays, what was not is done again (every step is idempotent).
                    logger.exception("rule dispatcher of %s: ledger error", self.profile.name)
                    await self._sleep(self.settings.poll_seconds)
        finally:
            await self._finish()
            if self._client is None:
                await client.aclose()
            with self._lock:
                self._loop = self._wakeup = None

    async def _recover_first(self, driver: PayoutDriver) -> None:
        """Resolve every stale in-flight payout before any new claim (design §4)."""
        while not self._stopping and (await self._recover(driver) or self._inflight):
            await self._wait_any()

    async def _recover(self, driver: PayoutDriver) -> int:
        taken = 0
        free = self.profile.concurrency - len(self._inflight)
        if free > 0:
            ids = await driver.db(
                self.ledger.stale_payouts,
                self.profile.mch_id,
                limit=free,
                exclude=set(self._inflight),
            )
            if ids:
                assert driver.query_pacer is not None
                lease = self.profile.lease_seconds + len(ids) * driver.query_pacer.period
                stale = await driver.db(
                    self.store.claim_stale, payout_ids=ids, limit=len(ids), lease_seconds=lease
                )
                for payout in stale:
                    self._spawn(driver, payout)
                taken = len(stale)
        return taken + await self._reissue_dead(driver)

    async def _reissue_dead(self, driver: PayoutDriver) -> int:
        dead = await driver.db(
            self.store.dead_bills,
            mch_id=self.profile.mch_id,
            max_generation=self.settings.reissue_limit,
        )
        made = 0
        for payout in dead:
            if payout.campaign_id is None and payout.natural_key.startswith(RULE_KEY_PREFIX):
                made += await driver.reissue(payout) is not None
        return made

    async def _claim(self, driver: PayoutDriver) -> bool:
        free = self.profile.concurrency - len(self._inflight)
        if free <= 0:
            await self._wait_any()
            return True
        ids = await driver.db(
            self.ledger.due_payouts, self.profile.mch_id, limit=free, exclude=set(self._inflight)
        )
        if not ids:
            return False
        # The lease covers the wait for the pacer's slots as well as the call itself.
        assert driver.send_pacer is not None
        lease = self.profile.lease_seconds + len(ids) * driver.send_pacer.period
        batch = await driver.db(
            self.store.claim,
            payout_ids=ids,
            limit=len(ids),
            lease_seconds=lease,
            caps=self.profile.caps,
            on_cap=self.profile.cap_policy,
        )
        for payout in batch.claimed:
            self._spawn(driver, payout)
        return bool(batch.claimed or batch.deferred or batch.skipped)

    async def _idle(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None
        signal: asyncio.Future[Any] = asyncio.ensure_future(wakeup.wait())
        waits: set[asyncio.Future[Any]] = set(self._inflight.values())
        try:
            await asyncio.wait(
                {*waits, signal},
                timeout=self.settings.poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            signal.cancel()
        wakeup.clear()

    async def _wait_any(self) -> None:
        if self._inflight:
            await asyncio.wait(
                set(self._inflight.values()),
                timeout=self.settings.poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        else:
            await self._sleep(self.settings.poll_seconds)

    def _spawn(self, driver: PayoutDriver, payout: Payout) -> None:
        task = asyncio.create_task(drive_payout(payout, driver), name=f"payout-{payout.id}")
        self._inflight[payout.id] = task
        task.add_done_callback(lambda done: self._done(payout.id, done))

    def _done(self, payout_id: int, task: asyncio.Task[DriveResult]) -> None:
        self._inflight.pop(payout_id, None)
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            # A server keeps going: the payout stays leased, and recovery takes it over.
            logger.error("driving rule payout %s failed", payout_id, exc_info=failure)
            return
        self.driven += 1
        result = task.result()
        logger.info("rule payout %s: %s", payout_id, result.state.value)

    async def _finish(self) -> None:
        # Sends in flight get the time of one call to finish; what is cut short is left to
        # recovery, exactly as after a crash.
        tasks = list(self._inflight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.profile.lease_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
