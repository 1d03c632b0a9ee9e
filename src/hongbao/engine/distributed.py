"""The scale-out dispatcher: procrastinate jobs on PostgreSQL drive payouts through `drive_payout`.

Many `hongbao worker` processes, on any machines that reach the ledger's PostgreSQL, share one
campaign:

1. **The outbox.** `defer_campaign` takes the campaign PLANNED → RUNNING and defers the jobs for
   its open payouts *in the same transaction* (procrastinate inserts them on our connection):
   a campaign never runs with payouts no job holds, and no job names a payout that was rolled
   back. Run it again (`hongbao campaign run ID --distributed`) and it defers jobs only for open
   payouts no waiting or running job holds (after a pause, or a job that gave up).
2. **One job, one chunk, one lock.** A job holds up to `CHUNK_SIZE` payouts whose receivers fall
   in one of `RECIPIENT_LOCKS` buckets (a hash of the openid), with procrastinate's `lock` set to
   that bucket, so jobs of one bucket never run side by side — in any campaign of the merchant.
   A job drives its payouts one at a time through the same `drive_payout` as the embedded
   runner: no person ever has two sends in flight.
3. **Recovery first.** A job holds its chunk as a scope of the dispatch core
   (`hongbao.engine.dispatch`): it starts with the chunk's in-flight payouts whose lease ran
   out (`claim_stale`: gethbinfo, or a same-bill resend) and its dead bills, and looks for them
   again every `recovery_every` seconds, after a drive that lost its payout, and before it waits
   or ends; in between it claims a few payouts at a time (caps and budget are charged in each
   claim) and drives them one after the other. A worker's drives commit in group rounds.
   Workers heartbeat; a periodic job (`retry_stalled_jobs`) puts the jobs of a worker that went
   silent (`kill -9`, a lost machine) back to the queue, and the job that runs again resolves
   what the dead one left in flight before anything new.
4. **One pace.** Sends and queries are paced by `SharedPacer`s, one PostgreSQL row per merchant,
   so all workers together stay under the merchant's rate; FREQ_LIMIT holds them all. A worker
   reserves consecutive slots for the sends waiting at once with one update.

A job whose remaining payouts are not due for a long while (a daily limit: tomorrow) defers its
successor at that time and ends. The campaign is COMPLETED by whichever job finds nothing open.

>>> defer_campaign(store, campaign_id)            # hongbao campaign run ID --distributed
>>> asyncio.run(run_worker(url, config.profile))  # hongbao worker  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.types import JSONValue
from sqlalchemy import Connection, Engine, text

from hongbao.api import AsyncClient
from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign import OPEN_STATES, CampaignError
from hongbao.engine.dispatch import Dispatcher, Pace, build_driver
from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.job_queries import (
    WorkerProgress,
    active_jobs,
    campaign_jobs,
    held_payout_ids,
    job_counts,
    worker_progress,
)
from hongbao.engine.payout import PayoutDriver
from hongbao.engine.runner import RunProgress, RunSummary, paused_message
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.status import describe_jobs, describe_wait, report_every
from hongbao.errors import ConfigurationError
from hongbao.eventloop import in_thread
from hongbao.ledger import CampaignState, LedgerStore, Scope
from hongbao.ledger.db import display_url, normalise_url, read_transaction, write_transaction
from hongbao.ledger.dispatch import (
    due_at,
    open_recipients,
    payout_times,
    start_run,
)
from hongbao.printable import printable

__all__ = [
    "CHUNK_SIZE",
    "QUEUE",
    "RECIPIENT_LOCKS",
    "TASK_NAME",
    "ChunkDriver",
    "Deferral",
    "WorkerOptions",
    "campaign_workers",
    "conninfo",
    "defer_campaign",
    "follow_campaign",
    "follow_status",
    "install_schema",
    "make_app",
    "ran_distributed",
    "recipient_lock",
    "run_distributed",
    "run_worker",
]

logger = logging.getLogger("hongbao.engine")

C = CampaignState
A = ParamSpec("A")
T = TypeVar("T")

TASK_NAME = "hongbao.drive_payouts"
RETRY_STALLED_TASK = "hongbao.retry_stalled_jobs"
REMOVE_OLD_TASK = "hongbao.remove_old_jobs"
QUEUE = "hongbao"
"""The queue of every hongbao job."""
RECIPIENT_LOCKS = 64
"""Receivers fall into this many buckets per merchant; the jobs of one bucket run one at a time.
It bounds the sends in flight per merchant (64 at ~0.1 s a call is far above 1800/min)."""
CHUNK_SIZE = 200
"""Payouts per job at most."""
CLAIM_BATCH = 16
"""Payouts a job claims at once at most (it still drives them one at a time)."""
DRIVE_SLACK = 0.5
"""Seconds a claim's lease allows for each drive before a payout claimed with it."""
CLAIM_WAIT_SECONDS = 8.0
"""A job claims no more payouts at once than wait this long for their slots together."""
JOB_RETENTION_HOURS = 72
"""Finished jobs are kept this long (they are what `campaign status` shows per worker)."""
_RUNTIME = "hongbao"
_JOB_RETRY = RetryStrategy(max_attempts=100, wait=5)
"""A job that failed (the database restarting, a bug) runs again after 5 s, 100 times at most;
after that `hongbao campaign run ID --distributed` defers its payouts again."""


def recipient_lock(mch_id: str, openid: str) -> str:
    """The procrastinate lock of every job that pays `openid` from merchant `mch_id`."""
    digest = hashlib.blake2b(openid.encode(), digest_size=8).digest()
    return f"hongbao:{mch_id}:recipients:{int.from_bytes(digest) % RECIPIENT_LOCKS}"


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (query options kept)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError(
            f"the scale-out dispatcher needs a PostgreSQL ledger, not {display_url(url)}"
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


# -- schema -----------------------------------------------------------------------------------


def install_schema(engine: Engine) -> bool:
    """Install procrastinate's tables and functions beside the ledger; False if present."""
    from procrastinate.schema import SchemaManager

    def work(conn: Connection) -> bool:
        if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
            return False
        # The raw driver connection: the schema is many statements with $$ bodies.
        conn.connection.driver_connection.execute(SchemaManager.get_schema())  # type: ignore[union-attr]
        return True

    return write_transaction(engine, work)


def _check_schema(engine: Engine) -> None:
    def work(conn: Connection) -> object:
        return conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()

    if read_transaction(engine, work) is None:
        raise ConfigurationError(
            f"the ledger {display_url(engine.url)} has no job tables: run `hongbao db upgrade`"
        )


# -- the outbox -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deferral:
    """What `defer_campaign` did."""

    campaign_id: int
    jobs: int
    """Jobs deferred now."""
    payouts: int
    """Open payouts those jobs hold."""


def _outbox_app() -> App:
    # Never opened: jobs deferred through it go onto the caller's connection.
    return App(connector=PsycopgConnector())


def defer_campaign(
    store: LedgerStore,
    campaign_id: int,
    *,
    chunk_size: int = CHUNK_SIZE,
    clock: Clock | None = None,
) -> Deferral:
    """Start a planned campaign and defer the jobs for its open payouts, in one transaction.

    A running campaign gets jobs only for the open payouts that no waiting or running job holds.
    Raises `CampaignError` for a campaign that is not planned yet; a paused one gets no jobs.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    now = (clock or SystemClock()).now()
    campaign = store.get_campaign(campaign_id)
    app = _outbox_app()

    def work(conn: Connection) -> Deferral:
        state = start_run(conn, campaign_id, now)
        if state is C.DRAFT:
            raise CampaignError(
                f"campaign {campaign_id} is not planned yet: plan it (`hongbao campaign plan "
                f"{campaign_id}`), then run it"
            )
        if state is not C.RUNNING:  # paused, cancelled, completed: following it says so
            return Deferral(campaign_id, 0, 0)
        held = held_payout_ids(conn, TASK_NAME, campaign_id)
        buckets: dict[str, list[int]] = {}
        for payout_id, openid in open_recipients(conn, campaign_id):
            if payout_id not in held:
                buckets.setdefault(recipient_lock(campaign.mch_id, openid), []).append(payout_id)
        driver_connection = conn.connection.driver_connection
        jobs = payouts = 0
        for lock, ids in sorted(buckets.items()):
            for start in range(0, len(ids), chunk_size):
                chunk = ids[start : start + chunk_size]
                app.configure_task(
                    TASK_NAME, queue=QUEUE, lock=lock, connection=driver_connection
                ).defer(campaign_id=campaign_id, payout_ids=list[JSONValue](chunk))
                jobs += 1
                payouts += len(chunk)
        return Deferral(campaign_id, jobs, payouts)

    return write_transaction(store.engine, work)


# -- the worker side --------------------------------------------------------------------------


@dataclass(slots=True)
class _Merchant:
    driver: PayoutDriver
    client: AsyncClient
    committer: GroupCommitter


class ChunkDriver:
    """A worker's side of the jobs: holds each job's chunk on the dispatch core.

    One per worker process: it owns one `AsyncClient`, the shared `Pace` (PostgreSQL rows) and
    one `GroupCommitter` of each merchant it met (the outcomes of all its jobs' drives commit
    together, a round per commit), and runs ledger calls on `executor`. `profiles` gives a
    merchant's profile by its configuration name (`HongbaoConfig.profile`).
    """

    def __init__(
        self,
        store: LedgerStore,
        profiles: Callable[[str], MerchantProfile],
        *,
        settings: RunSettings | None = None,
        executor: Executor | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.profiles = profiles
        self.settings = settings or RunSettings()
        self.executor = executor
        self.clock: Clock = clock or SystemClock()
        self._merchants: dict[str, _Merchant] = {}
        self._jobs: set[Dispatcher] = set()

    async def status(self) -> str | None:
        """What the jobs running now wait for, per campaign, in one line (None: nothing)."""
        by_campaign: dict[int, list[Dispatcher]] = {}
        for job in list(self._jobs):
            if job.scope.campaign_id is not None:
                by_campaign.setdefault(job.scope.campaign_id, []).append(job)
        lines = []
        for campaign_id, jobs in sorted(by_campaign.items()):
            ids = frozenset().union(*(job.scope.payout_ids or frozenset() for job in jobs))
            scope = Scope.ids(ids, campaign_id=campaign_id)
            groups = await self.db(self.store.open_groups, scope)
            pauses = [left for job in jobs if (left := job.pause_in()) is not None]
            line = describe_wait(groups, self.clock.now(), pause_in=min(pauses, default=None))
            if line:
                lines.append(f"campaign {campaign_id}: {line}")
        return "; ".join(lines) or None

    @staticmethod
    def show(line: str | None) -> None:
        """Log what the jobs wait for (nothing when they wait for nothing)."""
        if line:
            logger.warning("waiting: %s", printable(line))

    async def db(self, work: Callable[A, T], *args: A.args, **kwargs: A.kwargs) -> T:
        """Run a blocking ledger call off the event loop."""
        return await in_thread(self.executor, work, *args, **kwargs)

    def driver(self, merchant: str) -> PayoutDriver:
        """The `PayoutDriver` of a merchant (by configuration name), made on first use."""
        known = self._merchants.get(merchant)
        if known is None:
            profile = self.profiles(merchant)
            client = AsyncClient(profile.merchant, clock=self.clock)
            committer = GroupCommitter(self.store, executor=self.executor)
            driver = build_driver(
                self.store,
                profile,
                client=client,
                settings=self.settings,
                pace=Pace.shared(self.store, profile, executor=self.executor),
                clock=self.clock,
                executor=self.executor,
                committer=committer,
            )
            known = self._merchants[merchant] = _Merchant(driver, client, committer)
        return known.driver

    async def aclose(self) -> None:
        """Commit what is queued, close the clients."""
        for merchant in self._merchants.values():
            await merchant.committer.aclose()
            await merchant.client.aclose()
        self._merchants.clear()

    def _slot_wait(self, driver: PayoutDriver) -> float:
        # Each claimed payout may wait for its slot behind one send of every other bucket, and
        # behind the drive of the payout claimed before it.
        assert driver.send_pacer is not None
        return RECIPIENT_LOCKS * driver.send_pacer.period + DRIVE_SLACK

    def _claim_size(self, driver: PayoutDriver) -> int:
        # Claim several payouts at once where the pace leaves them little to wait for.
        assert driver.send_pacer is not None
        wait = RECIPIENT_LOCKS * driver.send_pacer.period
        return max(1, min(CLAIM_BATCH, int(CLAIM_WAIT_SECONDS / wait)))

    async def drive(
        self, campaign_id: int, payout_ids: Iterable[int], *, defer_later: DeferLater
    ) -> str:
        """Drive the payouts `payout_ids` of a campaign until none is left to do now.

        The chunk is the job's scope on the dispatch core, driven one payout at a time (the
        job holds one receiver bucket): its stale in-flight payouts and dead bills first, again
        every `recovery_every` seconds, after a drive that lost its payout, and before the job
        waits or ends. Returns what the job achieved, for procrastinate's log.
        """
        campaign = await self.db(self.store.get_campaign, campaign_id)
        if campaign.state is not C.RUNNING:
            return f"campaign {campaign_id} is {campaign.state.value}"
        driver = self.driver(campaign.merchant)
        dispatcher = Dispatcher(
            driver,
            Scope.ids(payout_ids, campaign_id=campaign_id),
            settings=self.settings,
            concurrency=1,
            serial=True,
            claim_size=self._claim_size(driver),
            slot_wait=self._slot_wait(driver),
        )
        ended: list[str] = []

        async def idle(dispatcher: Dispatcher) -> bool:
            if await dispatcher.recover():
                return True  # recover once more before waiting
            ids = dispatcher.scope.payout_ids or frozenset()
            done = f"{dispatcher.driven} drives"
            waiting = await self.db(payout_times, self.store.engine, ids)
            if not waiting:
                await self._complete(campaign_id)
                ended.append(f"{done}; every payout of the chunk settled")
                return False
            campaign = await self.db(self.store.get_campaign, campaign_id)
            if campaign.state is not C.RUNNING:
                ended.append(f"{done}; campaign {campaign_id} is {campaign.state.value}")
                return False
            now = self.clock.now()
            due = min(due_at(payout, now) for payout in waiting)
            wait = (due - now).total_seconds()
            if wait > self.settings.max_idle_wait:
                await defer_later(due, [payout.id for payout in waiting])
                ended.append(f"{done}; {len(waiting)} payouts wait until {due.isoformat()}")
                return False
            await asyncio.sleep(max(0.0, min(wait, self.settings.poll_seconds)))
            return True

        self._jobs.add(dispatcher)
        try:
            await dispatcher.run(idle)
        except BaseException:
            await dispatcher.cancel()
            raise
        finally:
            self._jobs.discard(dispatcher)
        return ended[0] if ended else f"{dispatcher.driven} drives"

    async def _complete(self, campaign_id: int) -> None:
        if await self.db(self.store.next_due, campaign_id) is None:
            await self.db(self.store.set_campaign_state, campaign_id, C.RUNNING, C.COMPLETED)


DeferLater = Callable[[datetime, list[int]], Any]
"""Defers a successor job for the payouts still open, at the time they are due."""


def _runtime(context: JobContext) -> ChunkDriver:
    runtime = context.additional_context.get(_RUNTIME)
    if not isinstance(runtime, ChunkDriver):
        raise ConfigurationError("hongbao jobs run in `hongbao worker` only")
    return runtime


async def _drive_payouts(context: JobContext, campaign_id: int, payout_ids: list[int]) -> str:
    """The job: drive a chunk of one campaign's payouts (see the module docstring)."""
    job = context.job

    async def defer_later(due: datetime, ids: list[int]) -> None:
        try:
            await context.app.configure_task(
                TASK_NAME,
                queue=QUEUE,
                lock=job.lock,
                # Deferred once, even when this job runs again after a crash.
                queueing_lock=f"hongbao:after:{job.id}",
                schedule_at=due,
            ).defer_async(campaign_id=campaign_id, payout_ids=list[JSONValue](ids))
        except AlreadyEnqueued:
            logger.info("job %s: its successor was deferred before", job.id)

    count = len(payout_ids)
    what = f"job {job.id} (campaign {campaign_id}, {count} payout{'' if count == 1 else 's'})"
    started = asyncio.get_running_loop().time()
    try:
        result = await _runtime(context).drive(campaign_id, payout_ids, defer_later=defer_later)
    except asyncio.CancelledError:
        logger.warning("%s: cut short (the worker stops)", what)
        raise
    except Exception as exc:
        failed = printable(f"{type(exc).__name__}: {exc}")
        logger.warning("%s failed (procrastinate runs it again): %s", what, failed)
        raise
    took = asyncio.get_running_loop().time() - started
    logger.info("%s in %.1f s: %s", what, took, printable(result))
    return result


async def _retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put back to the queue the jobs of workers that stopped heartbeating."""
    manager = context.app.job_manager
    after = context.additional_context.get("stalled_seconds", 30.0)
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=after))
    for job in stalled:
        logger.warning("job %s of a silent worker goes back to the queue", job.id)
        await manager.retry_job(job)
    return len(stalled)


async def _remove_old_jobs(context: JobContext, timestamp: int) -> None:
    """Delete hongbao jobs finished more than `JOB_RETENTION_HOURS` ago."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=JOB_RETENTION_HOURS, queue=QUEUE, include_failed=False
    )


def make_app(url: str, *, retry_stalled_every: int = 10) -> App:
    """The procrastinate app of the ledger at `url`, with hongbao's tasks registered.

    `retry_stalled_every` (seconds, 1–59) is how often a worker looks for stalled jobs.
    """
    if not 1 <= retry_stalled_every <= 59:
        raise ValueError("retry_stalled_every must be 1 to 59 seconds")
    app = App(connector=PsycopgConnector(conninfo=conninfo(url)))
    app.task(name=TASK_NAME, queue=QUEUE, pass_context=True, retry=_JOB_RETRY)(_drive_payouts)
    retry_stalled = app.task(
        name=RETRY_STALLED_TASK, queue=QUEUE, queueing_lock=RETRY_STALLED_TASK, pass_context=True
    )(_retry_stalled_jobs)
    app.periodic(cron=f"* * * * * */{retry_stalled_every}", periodic_id="stalled")(retry_stalled)
    remove_old = app.task(
        name=REMOVE_OLD_TASK, queue=QUEUE, queueing_lock=REMOVE_OLD_TASK, pass_context=True
    )(_remove_old_jobs)
    app.periodic(cron="17 * * * *", periodic_id="cleanup")(remove_old)
    return app


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """How a `hongbao worker` runs."""

    concurrency: int = 16
    """Jobs run at once (each drives one payout at a time)."""
    queues: list[str] = field(default_factory=lambda: [QUEUE])
    name: str | None = None
    stalled_seconds: float = 30.0
    """A worker silent this long is taken for dead and its jobs run again elsewhere."""
    settings: RunSettings = field(default_factory=RunSettings)
    on_demand: tuple[str, ...] = ()
    """Merchants (by configuration name) whose payouts on demand this worker sends: what
    `hongbao serve` and `pay(wait=False)` recorded. Every worker may send them; a claim is a
    lease, so each goes out once."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.stalled_seconds < 3:
            raise ValueError("stalled_seconds must be at least 3")

    @property
    def heartbeat_seconds(self) -> float:
        """How often the worker heartbeats: three times per stall period."""
        return self.stalled_seconds / 3


async def run_worker(
    url: str,
    profiles: Callable[[str], MerchantProfile],
    options: WorkerOptions | None = None,
    *,
    clock: Clock | None = None,
) -> None:
    """Run a worker on the ledger at `url` until it is stopped (SIGINT / SIGTERM)."""
    options = options or WorkerOptions()
    app = make_app(url, retry_stalled_every=max(1, min(59, int(options.heartbeat_seconds))))
    threads = options.concurrency + 4
    # A connection per ledger thread, kept (a smaller pool would open and close connections
    # all the time), and no ping before each transaction: after a database restart the first
    # call on a dead connection fails (its job runs again) and the pool replaces them all.
    store = LedgerStore.open(
        url, clock=clock, pool_size=threads, max_overflow=0, pool_pre_ping=False
    )
    with store:
        _check_schema(store.engine)
        with ThreadPoolExecutor(threads, thread_name_prefix="hongbao-ledger") as pool:
            runtime = ChunkDriver(
                store, profiles, settings=options.settings, executor=pool, clock=clock
            )
            reporter = asyncio.create_task(
                report_every(options.settings.status_every, runtime.status, runtime.show)
            )
            senders = [
                asyncio.create_task(_send_on_demand(runtime, name), name=f"on-demand-{name}")
                for name in options.on_demand
            ]
            try:
                async with app.open_async():
                    await app.run_worker_async(
                        queues=options.queues,
                        concurrency=options.concurrency,
                        name=options.name or "hongbao-worker",
                        additional_context={
                            _RUNTIME: runtime,
                            "stalled_seconds": options.stalled_seconds,
                        },
                        update_heartbeat_interval=options.heartbeat_seconds,
                        stalled_worker_timeout=options.stalled_seconds,
                        shutdown_graceful_timeout=options.heartbeat_seconds,
                    )
            finally:
                reporter.cancel()
                for sender in senders:
                    sender.cancel()
                await asyncio.gather(*senders, return_exceptions=True)
                await runtime.aclose()


async def _send_on_demand(runtime: ChunkDriver, merchant: str) -> None:
    """Drive a merchant's payouts on demand on this worker until cancelled (recovery first,
    then every `recovery_every`; new ones are looked for every `poll_seconds`)."""
    driver = runtime.driver(merchant)
    dispatcher = Dispatcher(
        driver,
        Scope.on_demand(driver.profile.mch_id),
        settings=runtime.settings,
        keep_going=True,
    )

    async def idle(dispatcher: Dispatcher) -> bool:
        await dispatcher.wait_any()
        return True

    try:
        await dispatcher.run(idle)
    finally:
        # A cancelled worker leaves the payouts in flight leased: recovery takes them over.
        await dispatcher.cancel()


# -- following a campaign ---------------------------------------------------------------------


def ran_distributed(store: LedgerStore, campaign_id: int) -> bool:
    """Whether the campaign was handed to the workers (`campaign run ID --distributed`)."""
    if store.engine.dialect.name != "postgresql":
        return False
    return campaign_jobs(store.engine, TASK_NAME, campaign_id) > 0


def campaign_workers(store: LedgerStore, campaign_id: int) -> list[WorkerProgress]:
    """Per worker, the jobs of the campaign it ran and how far their payouts got."""
    return worker_progress(store.engine, TASK_NAME, campaign_id)


async def follow_campaign(
    store: LedgerStore,
    campaign_id: int,
    *,
    settings: RunSettings | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    clock: Clock | None = None,
    on_status: Callable[[str | None], None] | None = None,
) -> RunSummary:
    """Watch the workers send a campaign, until it completes, stops, or waits for a later day.

    When open payouts are left that no job holds (a job gave up after its retries), their jobs
    are deferred again. Every `status_every` seconds `on_status` hears what the campaign waits
    for (`follow_status`).
    """
    settings = settings or RunSettings()
    clock = clock or SystemClock()
    reporter = None
    if on_status is not None:

        async def status() -> str | None:
            return await follow_status(store, campaign_id, clock=clock)

        reporter = asyncio.create_task(report_every(settings.status_every, status, on_status))
    try:
        return await _follow(store, campaign_id, settings, progress, clock)
    finally:
        if reporter is not None:
            reporter.cancel()


async def follow_status(store: LedgerStore, campaign_id: int, *, clock: Clock) -> str | None:
    """What a distributed campaign waits for, in one line: its jobs (is a worker there to take
    them?) and its open payouts not in flight at a worker (None: nothing)."""
    campaign = await in_thread(None, store.get_campaign, campaign_id)
    scope = Scope.campaign(campaign.mch_id, campaign_id)
    groups = await in_thread(None, store.open_groups, scope)
    jobs = await in_thread(None, job_counts, store.engine, TASK_NAME, campaign_id)
    # Payouts a worker holds in flight are its progress, not a wait.
    waits = describe_wait([g for g in groups if not g.leased], clock.now())
    return "; ".join(line for line in (describe_jobs(jobs), waits) if line) or None


async def _follow(
    store: LedgerStore,
    campaign_id: int,
    settings: RunSettings,
    progress: Callable[[RunProgress], None] | None,
    clock: Clock,
) -> RunSummary:
    async def db(work: Callable[A, T], *args: A.args, **kwargs: A.kwargs) -> T:
        return await in_thread(None, work, *args, **kwargs)

    while True:
        totals = await db(store.totals_by_state, campaign_id)
        campaign = await db(store.get_campaign, campaign_id)
        total = sum(t.count for t in totals.values())
        open_ = sum(totals[state].count for state in OPEN_STATES)
        if progress is not None:
            progress(RunProgress(campaign_id, total=total, settled=total - open_, driven=0))
        stopped: str | None = None
        due: datetime | None = None
        if campaign.state is C.PAUSED:
            stopped = paused_message(campaign)
        elif campaign.state is not C.RUNNING:
            stopped = campaign.state.value.lower()
        elif open_ == 0:
            await db(store.set_campaign_state, campaign_id, C.RUNNING, C.COMPLETED)
            stopped = "completed"
        else:
            due = await db(store.next_due, campaign_id)
            if due is not None and due - clock.now() > timedelta(seconds=settings.max_idle_wait):
                # The jobs deferred their successors to that time: the workers carry on then.
                stopped = f"waiting: the next payout is due at {due.isoformat()}"
            elif await db(active_jobs, store.engine, TASK_NAME, campaign_id) == 0:
                await db(defer_campaign, store, campaign_id, clock=clock)
        if stopped is not None:
            campaign = await db(store.get_campaign, campaign_id)
            totals = await db(store.totals_by_state, campaign_id)
            return RunSummary(
                campaign_id=campaign_id,
                campaign_state=campaign.state,
                stopped=stopped,
                driven=0,
                totals=totals,
                next_due=due,
            )
        await asyncio.sleep(settings.poll_seconds)


async def run_distributed(
    store: LedgerStore,
    campaign_id: int,
    *,
    settings: RunSettings | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    clock: Clock | None = None,
    on_status: Callable[[str | None], None] | None = None,
) -> RunSummary:
    """`hongbao campaign run ID --distributed`: defer the campaign's jobs, then follow them
    (saying every `status_every` seconds what they wait for to `on_status`)."""
    if store.engine.dialect.name != "postgresql":
        raise ConfigurationError(
            "--distributed needs the ledger on PostgreSQL; this one is "
            f"{display_url(store.engine.url)}"
        )
    _check_schema(store.engine)
    deferral = defer_campaign(store, campaign_id, clock=clock)
    logger.info("campaign %s: %d jobs deferred", campaign_id, deferral.jobs)
    return await follow_campaign(
        store, campaign_id, settings=settings, progress=progress, clock=clock, on_status=on_status
    )
