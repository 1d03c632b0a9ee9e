"""The one dispatch core: every payout, whatever its origin, is driven here by `drive_payout`.

A `Dispatcher` holds a *scope* of the ledger (`hongbao.ledger.Scope`: a campaign, the rule
payouts, the payouts on demand, a scale-out job's chunk, or chosen ids) and drives it:

1. **Recovery first.** The scope's in-flight payouts whose lease ran out are taken over
   (`LedgerStore.claim_stale`) and resolved by gethbinfo or a same-bill resend, and its
   definitively failed bills get their re-issue, before anything new is claimed — and again
   every `RunSettings.recovery_every` seconds, and after a drive lost its payout.
2. **Claims** take the scope's due payouts for the free sends (`concurrency`), several at once:
   one transaction commits them SENDING with the caps and budgets charged. With a
   `GroupCommitter` whose `refill` is the dispatcher, a commit round of outcomes claims the next
   payouts in the same transaction.
3. **Pacing** is the driver's: every send waits for the merchant's `Pace` (`Pace.local` in one
   process, `Pace.shared` — a PostgreSQL row — across processes).
4. **Idle**: when nothing can be claimed and nothing is in flight, the holder's `idle` hook says
   whether to go on (after waiting for work) or to stop.
5. **Never silent, never forever**: `status()` says what the scope waits for
   (`hongbao.engine.status`), and a campaign none of whose sends reached WeChat for
   `RunSettings.pause_after` seconds is paused with the reason.

Who recovers what — so that no payout is left with no one to recover it, and no two
dispatchers fight over one:

* **a campaign, embedded** (`Scope.campaign`): every `hongbao campaign run ID` of it.
* **a campaign, scale-out** (`Scope.ids`, a job's chunk): the job holding the chunk
  (`hongbao worker`); the job of a dead worker runs again, and `campaign run ID --distributed`
  defers jobs for the open payouts no job holds.
* **a rule (满额送)** (`Scope.rules`): the merchant's rule dispatcher in `hongbao rules serve`.
* **on demand** (`Scope.on_demand`): the dispatcher of `Payouts` / `AsyncPayouts` (started by
  the first `pay(wait=False)`, or `start()`; `hongbao serve` on SQLite), every `hongbao worker`
  (scale-out) and `hongbao payouts run`; `pay(key)` of a key also resolves that key's own
  payout (`Scope.ids`), taking it over as soon as its lease ran out.

Scopes of different origins never overlap. Where two holders share payouts (two runs of one
campaign, `pay(key)` beside the on-demand dispatcher), the ledger arbitrates: a claim and a
take-over are leases committed with `FOR UPDATE SKIP LOCKED` (PostgreSQL) or `BEGIN IMMEDIATE`
(SQLite), every outcome is a compare-and-set, and a drive whose payout was taken over writes
nothing (`DriveResult.lost`). A recovery never takes a payout whose lease is live.

>>> driver = build_driver(store, profile, client=client)  # doctest: +SKIP
>>> dispatcher = Dispatcher(driver, Scope.on_demand(profile.mch_id))  # doctest: +SKIP
>>> await dispatcher.run(until_idle)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.limiter import DEFAULT_MARGIN, Pacer
from hongbao.engine.payout import DriveResult, PayoutDriver, drive_payout
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.status import describe_wait
from hongbao.ledger import (
    ClaimRequest,
    ClaimResult,
    LedgerStore,
    Payout,
    PayoutState,
    Scope,
    Transition,
)
from hongbao.ledger.states import OPEN_STATES

__all__ = ["CLAIM_SLACK_SECONDS", "Dispatcher", "Idle", "Pace", "build_driver", "claim_lease"]

logger = logging.getLogger("hongbao.engine")

P = PayoutState
Sleep = Callable[[float], Awaitable[None]]

CLAIM_SLACK_SECONDS = 1.0
"""Added to a claim's lease: the hand-off to a drive and the wait for the group commit of
other outcomes take time too, and a lease too short is renewed before the send."""

_CAUSE_MAX = 120
"""Characters of a failure's text a pause reason quotes (the reason holds 256 in all)."""
_HOLD_BACK = frozenset({P.DEFERRED, P.UNKNOWN})
"""Outcomes after which a commit round claims nothing new."""


def pacer_burst(rate_per_minute: int) -> int:
    """The GCRA burst of a merchant's pacer: 2 where the pacing margin has room for it, else 1.

    With burst 1 every late wake-up of a busy event loop is lost for good (the next slot counts
    from the late send), and a dispatcher falls a few percent under its rate; with burst 2 the
    next send catches up. GCRA then allows `rate / (1 + margin) + 1` calls in any 60 s window,
    under WeChat's count as long as the margin is worth two calls a minute (200/min and more).
    """
    return 2 if rate_per_minute * DEFAULT_MARGIN >= 2 else 1


@dataclass(frozen=True, slots=True)
class Pace:
    """A merchant's send and query pacers: share one between every dispatcher paying from it."""

    send: Pacer
    query: Pacer

    @classmethod
    def local(
        cls, profile: MerchantProfile, *, clock: Clock | None = None, sleep: Sleep = asyncio.sleep
    ) -> Pace:
        """Pacers of this process (the embedded dispatchers of one event loop, or several)."""
        clock = clock or SystemClock()
        return cls(
            Pacer(
                profile.rate_per_minute,
                burst=pacer_burst(profile.rate_per_minute),
                clock=clock,
                sleep=sleep,
            ),
            Pacer(
                profile.query_rate_per_minute,
                burst=pacer_burst(profile.query_rate_per_minute),
                clock=clock,
                sleep=sleep,
            ),
        )

    @classmethod
    def shared(
        cls, store: LedgerStore, profile: MerchantProfile, *, executor: Executor | None = None
    ) -> Pace:
        """Pacers every process on every machine shares: a PostgreSQL row per merchant."""
        from hongbao.engine.pglimiter import SharedPacer

        engine, mch_id = store.engine, profile.mch_id
        return cls(
            SharedPacer(engine, mch_id, profile.rate_per_minute, executor=executor),
            SharedPacer(
                engine, f"{mch_id}:query", profile.query_rate_per_minute, executor=executor
            ),
        )


def build_driver(
    store: LedgerStore,
    profile: MerchantProfile,
    *,
    client: AsyncClient,
    settings: RunSettings | None = None,
    pace: Pace | None = None,
    clock: Clock | None = None,
    executor: Executor | None = None,
    committer: GroupCommitter | None = None,
) -> PayoutDriver:
    """The `PayoutDriver` of a merchant: every dispatcher builds its driver here, once."""
    settings = settings or RunSettings()
    clock = clock or SystemClock()
    pace = pace or Pace.local(profile, clock=clock)
    return PayoutDriver(
        store=store,
        client=client,
        profile=profile,
        policy=settings.policy,
        clock=clock,
        send_pacer=pace.send,
        query_pacer=pace.query,
        reissue_limit=settings.reissue_limit,
        executor=executor,
        committer=committer,
    )


def claim_lease(driver: PayoutDriver, claimed: int, slot_wait: float | None = None) -> float:
    """Seconds a claim of `claimed` payouts is leased: the call, and the wait for their send
    slots (`slot_wait` each; default the send pacer's period)."""
    assert driver.send_pacer is not None
    wait = driver.send_pacer.period if slot_wait is None else slot_wait
    return driver.profile.lease_seconds + claimed * wait + CLAIM_SLACK_SECONDS


Idle = Callable[["Dispatcher"], Awaitable[bool]]
"""Called when nothing can be claimed and nothing is in flight: wait for work and return True
to go on, or return False to end the run."""


class Dispatcher:
    """Drives the payouts of one scope with one `PayoutDriver`; see the module docstring.

    `concurrency` bounds the drives in flight (default: the merchant's). With `serial`, the
    payouts of a claim (up to `claim_size`) are driven one after another by one task: a
    scale-out job holds one receiver bucket. `slot_wait` is how long each claimed payout may
    wait for its send slot (default: the send pacer's period), which sizes the claim's lease.
    Drives that raise end the run with that error, unless `keep_going` (a server: the payout
    stays leased and recovery takes it over; ledger errors are logged and retried too).
    `on_result` sees every drive's result.
    """

    def __init__(
        self,
        driver: PayoutDriver,
        scope: Scope,
        *,
        settings: RunSettings | None = None,
        concurrency: int | None = None,
        serial: bool = False,
        claim_size: int = 1,
        slot_wait: float | None = None,
        keep_going: bool = False,
        on_result: Callable[[DriveResult], None] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.driver = driver
        self.scope = scope
        self.settings = settings or RunSettings()
        self.concurrency = concurrency or driver.profile.concurrency
        self.serial = serial
        self.claim_size = max(1, claim_size)
        assert driver.send_pacer is not None
        self.slot_wait = driver.send_pacer.period if slot_wait is None else slot_wait
        self.keep_going = keep_going
        self.on_result = on_result
        self._sleep = sleep
        self.refill = False
        """Whether commit rounds may claim for this dispatcher (not during recovery)."""
        self.driven = 0
        """Drives done."""
        self.settled = 0
        """Drives that left their payout settled, and payouts a claim skipped."""
        self.reissued = 0
        """New payouts (new bill numbers) made for definitively failed ones."""
        self._inflight: set[asyncio.Task[None]] = set()
        self._driving = 0
        self._ready: deque[Payout] = deque()
        self._top_up_due = False
        self._reserved = 0
        self._wake: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._stopping = False
        self._last_recovery: float | None = None
        self._unreached_since: float | None = None
        self._unreached = ""
        self._gave_up = False

    def __repr__(self) -> str:
        return f"Dispatcher({self.scope.describe()}, in_flight={self._driving})"

    @property
    def clock(self) -> Clock:
        """The driver's clock."""
        return self.driver.clock

    @property
    def in_flight(self) -> int:
        """Drives under way (a serial dispatcher's: claims), those handed over not yet begun
        included."""
        return self._driving

    def stop(self) -> None:
        """Ask `run` to return: nothing new is claimed; see `drain` for what is in flight."""
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        """Look for work now (call from the dispatcher's event loop)."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, idle: Idle, *, recover: bool = True) -> None:
        """Recover first, then claim and drive until `idle` says stop, or `stop()`.

        `recover=False` skips the first recovery: for a scope of payouts just recorded by the
        caller, which nobody can have left in flight.
        """
        if recover:
            await self.recover_first()
        else:
            self._last_recovery = self.clock.monotonic()
        self.refill = True
        # Claim when a few sends are free, not one by one: a claim is a transaction.
        batch = max(1, self.concurrency // 4)
        try:
            while not self._stopping:
                try:
                    if not await self._step(batch, idle):
                        return
                except SQLAlchemyError:
                    if not self.keep_going:
                        raise
                    # The ledger is unreachable for now: what was committed stays, what was
                    # not is done again (every step is idempotent).
                    logger.exception("dispatcher of %s: ledger error", self.scope.describe())
                    await self._sleep(self.settings.poll_seconds)
        finally:
            self.refill = False

    async def _step(self, batch: int, idle: Idle) -> bool:
        self.raise_failure()
        await self._pause_if_unreached()
        if self.recovery_due():
            # Rounds stop claiming until recovery had the sends it needs.
            self.refill = False
            if self.free() < 1 and self._driving:
                await self.wait_any()
                return True
            await self.recover()
            self.refill = True
        free = self.free()
        # None free at all: a commit round's claim holds the sends it reserved.
        if free < 1 or (free < batch and self._driving):
            await self.wait_any()
            return True
        if await self.claim(free):
            return True
        if self._driving:
            await self.wait_any()
            return True
        return await idle(self)

    # -- what it waits for ------------------------------------------------------------------

    async def status(self) -> str | None:
        """What the scope's open payouts wait for, in one line (None: nothing)."""
        groups = await self.driver.db(self.driver.store.open_groups, self.scope)
        return describe_wait(groups, self.clock.now(), pause_in=self.pause_in())

    def pause_in(self) -> float | None:
        """Seconds until a campaign nothing of which reaches WeChat is paused (None: it is
        reaching WeChat, or the scope is no campaign's)."""
        since = self._unreached_since
        if since is None or self.scope.campaign_id is None or self._gave_up:
            return None
        return self.settings.pause_after - (self.clock.monotonic() - since)

    def _note(self, result: DriveResult) -> None:
        if result.lost:
            return
        if result.unreached is None:
            self._unreached_since = None
            return
        self._unreached = result.unreached
        if self._unreached_since is None:
            self._unreached_since = self.clock.monotonic()

    async def _pause_if_unreached(self) -> None:
        left = self.pause_in()
        campaign_id = self.scope.campaign_id
        if left is None or left > 0 or campaign_id is None:
            return
        self._gave_up = True
        cause = self._unreached[:_CAUSE_MAX]
        await self.driver.pause(
            campaign_id,
            f"nothing reached WeChat for {self.settings.pause_after:.0f} s ({cause}): "
            "check base_url, ca_bundle and the network, then resume",
        )

    def recovery_due(self) -> bool:
        """Whether it is time to look for stale in-flight payouts again."""
        last = self._last_recovery
        return last is None or self.clock.monotonic() - last >= self.settings.recovery_every

    async def recover_first(self) -> None:
        """Resolve every stale in-flight payout of the scope before any new claim."""
        while not self._stopping and (await self.recover() or self._driving):
            await self.wait_any()
            self.raise_failure()

    async def recover(self) -> int:
        """Take over the scope's in-flight payouts whose lease ran out; re-issue dead bills."""
        self._last_recovery = self.clock.monotonic()
        free = self.free()
        taken = 0
        if free > 0:
            driver = self.driver
            assert driver.query_pacer is not None
            lease = driver.profile.lease_seconds + free * driver.query_pacer.period
            stale = await driver.db(
                driver.store.claim_stale, scope=self.scope, limit=free, lease_seconds=lease
            )
            if stale:
                self._spawn(stale)
            taken = len(stale)
        return taken + await self.reissue_dead()

    async def reissue_dead(self) -> int:
        """A new bill number for each definitively failed payout of the scope not re-issued."""
        driver = self.driver
        dead = await driver.db(
            driver.store.dead_bills, scope=self.scope, max_generation=driver.reissue_limit
        )
        made = 0
        for payout in dead:
            new = await driver.reissue(payout)
            if new is not None:
                self._reissued(new)
                made += 1
        return made

    def free(self) -> int:
        """Sends neither driving a payout nor promised to a claim under way."""
        return self.concurrency - self._driving - self._reserved

    def lease(self, claimed: int) -> float:
        """The lease of a claim of `claimed` payouts: the call, and the wait for their slots."""
        return claim_lease(self.driver, claimed, self.slot_wait)

    def claim_request(self, free: int) -> ClaimRequest:
        """A claim of the scope's due payouts for `free` sends (their places reserved)."""
        # A serial dispatcher's claim fills one task, with up to `claim_size` payouts.
        limit = self.claim_size if self.serial else free
        self._reserved += 1 if self.serial else free
        profile = self.driver.profile
        return ClaimRequest(
            scope=self.scope,
            limit=limit,
            lease_seconds=self.lease(limit),
            caps=profile.caps,
            on_cap=profile.cap_policy,
        )

    def claimed(self, request: ClaimRequest, result: ClaimResult | None) -> None:
        """Hand what a claim took to drives, and give its unused reservation back."""
        self._reserved -= 1 if self.serial else request.limit
        if result is None:
            return
        if result.claimed:
            self._spawn(result.claimed)
        self.settled += len(result.skipped)

    async def claim(self, free: int) -> bool:
        """Claim for `free` sends; True when the claim changed anything (took, deferred…)."""
        request = self.claim_request(free)
        result = None
        driver = self.driver
        try:
            result = await driver.db(
                driver.store.claim,
                scope=request.scope,
                limit=request.limit,
                lease_seconds=request.lease_seconds,
                caps=request.caps,
                on_cap=request.on_cap,
            )
        finally:
            self.claimed(request, result)
        return bool(result.claimed or result.deferred or result.skipped)

    def adopt(self, payouts: Sequence[Payout]) -> None:
        """Drive payouts the caller claimed itself (SENDING under its lease) as if claimed here."""
        if payouts:
            self._spawn(payouts)

    # -- commit rounds (the `Refill` of a `GroupCommitter`) ---------------------------------

    def claim_for(self, finishing: Sequence[Transition]) -> ClaimRequest | None:
        """What a commit round claims for this dispatcher as these drives end."""
        if not self.refill or self._failure is not None or self._stopping or self.serial:
            return None
        if any(change.to_state in _HOLD_BACK for change in finishing):
            # A limit, the balance or an unknown outcome: new work waits until these drives
            # have backed off or paused the campaign (the loop claims then).
            return None
        # The finishing drives are still in flight, but their sends are free once it commits.
        free = self.free() + len(finishing)
        return self.claim_request(free) if free > 0 else None

    # -- drives -----------------------------------------------------------------------------

    def _spawn(self, payouts: Sequence[Payout]) -> None:
        """Hand payouts to drives: a serial dispatcher's claim to a task of its own; otherwise
        each payout to a sender (`_sender`).

        Senders live as long as there are payouts to drive: one that finishes a drive takes
        the next handed-over payout, so a busy dispatcher keeps about `concurrency` tasks
        instead of making one per payout (a task per payout, its start and its done callback
        were some 5% of the event loop's CPU). Senders for the payouts left over are started
        on the loop's next turn (`_top_up`): the drives whose commit round made this claim
        were woken before it, and take their share first.
        """
        if self.serial:
            self._driving += 1
            self._start(self._drive(payouts), f"payouts-{payouts[0].id}")
            return
        self._ready.extend(payouts)
        self._driving += len(payouts)
        if not self._top_up_due:
            self._top_up_due = True
            asyncio.get_running_loop().call_soon(self._top_up)

    def _top_up(self) -> None:
        self._top_up_due = False
        while self._ready:
            payout = self._ready.popleft()
            self._start(self._sender(payout), f"payout-{payout.id}")

    def _start(self, drive: Coroutine[None, None, None], name: str) -> None:
        task = asyncio.create_task(drive, name=name)
        self._inflight.add(task)
        task.add_done_callback(self._done)

    async def _sender(self, payout: Payout) -> None:
        while True:
            try:
                result = await drive_payout(payout, self.driver)
            except Exception as exc:
                self._failed(f"payout-{payout.id}", exc)
            else:
                self._took(result)
            finally:
                self._driving -= 1
                self.wake()
            if not self._ready:
                return
            payout = self._ready.popleft()

    async def _drive(self, payouts: Sequence[Payout]) -> None:
        try:
            for payout in payouts:
                self._took(await drive_payout(payout, self.driver))
        finally:
            self._driving -= 1

    def _took(self, result: DriveResult) -> None:
        self._note(result)
        self.driven += 1
        if not result.lost and result.state not in OPEN_STATES:
            self.settled += 1
        if result.lost:
            self._last_recovery = None  # someone took it over: look for what else is stale
        if result.reissued is not None:
            self._reissued(result.reissued)
        if self.on_result is not None:
            self.on_result(result)

    def _reissued(self, new: Payout) -> None:
        self.reissued += 1
        ids = self.scope.payout_ids
        if ids is not None:
            # The same receiver and intent: whoever holds the old bill holds the new one.
            self.scope = self.scope.with_ids(ids | {new.id})

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake()
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            self._failed(task.get_name(), failure)

    def _failed(self, what: str, failure: BaseException) -> None:
        if self.keep_going:
            # A server keeps going: the payout stays leased, and recovery takes it over.
            logger.error("driving %s failed", what, exc_info=failure)
        else:
            self._failure = self._failure or failure

    async def wait_any(self, at_most: float | None = None) -> None:
        """Until a drive ends or `wake()` (at most `at_most` s, default `poll_seconds`)."""
        timeout = self.settings.poll_seconds if at_most is None else at_most
        if not self._driving and self._stopping:
            return
        # One future that `_done` and `wake` resolve: cheaper than watching every task.
        self._wake = asyncio.get_running_loop().create_future()
        try:
            if self._driving:
                await asyncio.wait({self._wake}, timeout=timeout)
            else:
                sleeper = asyncio.ensure_future(self._sleep(timeout))
                try:
                    await asyncio.wait({self._wake, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
        finally:
            self._wake = None

    def raise_failure(self) -> None:
        """Raise what a drive raised (unless `keep_going`)."""
        if self._failure is not None:
            raise self._failure

    async def drain(self, at_most: float | None = None) -> None:
        """Let the drives in flight finish (within `at_most` s; the rest are cancelled: what
        they committed stays, like after a crash, and recovery takes over the rest)."""
        self._top_up()
        tasks = list(self._inflight)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=at_most)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """Cancel the drives in flight (after a failure: what they committed stays)."""
        # Handed over but never begun: they stay SENDING under their lease, like after a crash.
        self._driving -= len(self._ready)
        self._ready.clear()
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
