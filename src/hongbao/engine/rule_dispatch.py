"""The rule-mode dispatcher: holds one merchant's rule payouts on the dispatch core.

Payouts of rule mode are recorded PLANNED with their payment (see `hongbao.engine.notify`);
`RuleDispatcher` sends them from the ledger through `hongbao.engine.dispatch.Dispatcher` with
the scope `Scope.rules(mch_id)`, like the campaign runner does for a campaign:

1. **Recovery first.** On start, every rule payout left SENDING/UNKNOWN by a crash whose lease
   ran out is taken over and resolved by gethbinfo or a same-bill resend, before anything new
   is claimed; the same look is taken every `recovery_every` seconds, and definitively failed
   bills get their re-issue.
2. **Claims** take due PLANNED/DEFERRED rule payouts of the merchant, as many as there are free
   sends (`MerchantProfile.concurrency`); the daily caps are charged in the claim's
   transaction. Each claimed payout goes to `drive_payout`, paced by the merchant's `Pace`.
3. Between claims it waits until `wake()` (a payment was just recorded) or `poll_seconds`.
4. Every `status_every` seconds, what its payouts wait for (WeChat's rate limit, an
   unreachable host, daily caps…) is logged at WARNING, if anything.

Only rule payouts are touched, so a campaign of the same merchant can run beside it. After
`kill -9`, a new dispatcher on the same ledger carries on. A server keeps going: a drive that
fails or a ledger that is briefly unreachable is logged, and recovery takes over.

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

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.dispatch import Dispatcher, Pace, build_driver
from hongbao.engine.payout import DriveResult
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.status import report_every
from hongbao.ledger import LedgerStore, Scope
from hongbao.printable import printable

__all__ = ["RuleDispatcher"]

logger = logging.getLogger("hongbao.engine")

Sleep = Callable[[float], Awaitable[None]]


class RuleDispatcher:
    """Drives the rule payouts of one merchant until `stop()`; see the module docstring.

    Without `client`, an `AsyncClient` (the merchant's certificate) is made and closed by `run`.
    Store calls run on `executor` (None: the loop's default); `wake()` may be called from any
    thread. `pace` shares the merchant's pacers with the other dispatchers of this process.
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
        pace: Pace | None = None,
    ) -> None:
        self.store = store
        self.profile = profile
        self.settings = settings or RunSettings()
        self.clock: Clock = clock or SystemClock()
        self._client = client
        self._sleep = sleep
        self._executor = executor
        self._pace = pace
        self._dispatcher: Dispatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self.driven = 0
        """Drives done since `run` started."""

    def __repr__(self) -> str:
        dispatcher = self._dispatcher
        in_flight = 0 if dispatcher is None else dispatcher.in_flight
        return f"RuleDispatcher({self.profile.name}, in_flight={in_flight})"

    def wake(self) -> None:
        """Look for work now (a payment was recorded); safe from any thread."""
        self._on_loop(lambda dispatcher: dispatcher.wake())

    def stop(self) -> None:
        """Ask `run` to return: nothing new is claimed, sends in flight finish first."""
        self._stopping = True
        self._on_loop(lambda dispatcher: dispatcher.stop())

    def _on_loop(self, call: Callable[[Dispatcher], None]) -> None:
        """`call(dispatcher)` on the dispatcher's event loop, from any thread; nothing when
        the dispatcher is not running."""
        with self._lock:
            loop, dispatcher = self._loop, self._dispatcher
        if loop is None or dispatcher is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            call(dispatcher)
        else:
            loop.call_soon_threadsafe(call, dispatcher)

    async def run(self) -> None:
        """Recover, then send due rule payouts as they come, until `stop()`."""
        client = self._client or AsyncClient(self.profile.merchant, clock=self.clock)
        pace = self._pace or Pace.local(self.profile, clock=self.clock, sleep=self._sleep)
        driver = build_driver(
            self.store,
            self.profile,
            client=client,
            settings=self.settings,
            pace=pace,
            clock=self.clock,
            executor=self._executor,
        )
        dispatcher = Dispatcher(
            driver,
            Scope.rules(self.profile.mch_id),
            settings=self.settings,
            keep_going=True,
            on_result=self._report,
            sleep=self._sleep,
        )
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._dispatcher = dispatcher
        if self._stopping:
            dispatcher.stop()
        reporter = asyncio.create_task(
            report_every(self.settings.status_every, dispatcher.status, self._show)
        )
        try:
            await dispatcher.run(self._idle)
        finally:
            reporter.cancel()
            # Sends in flight get the time of one call to finish; what is cut short is left to
            # recovery, exactly as after a crash.
            await dispatcher.drain(self.profile.lease_seconds)
            if self._client is None:
                await client.aclose()
            with self._lock:
                self._loop = self._dispatcher = None

    async def _idle(self, dispatcher: Dispatcher) -> bool:
        await dispatcher.wait_any()
        return True

    def _show(self, line: str | None) -> None:
        if line:
            logger.warning("rule payouts of %s wait: %s", self.profile.name, printable(line))

    def _report(self, result: DriveResult) -> None:
        self.driven += 1
        logger.info("rule payout %s: %s", result.payout_id, result.state.value)
