"""Queries of the scale-out dispatcher (PostgreSQL only): runs, jobs, the shared pacer row.

The scale-out dispatcher (`hongbao.engine.distributed`) keeps its jobs in procrastinate's tables,
in the same database as the ledger, and its pacing state in `limiter_state`. What it asks of the
database beyond `LedgerStore` is here, as plain functions over a connection or an engine:

* `start_run` / `open_recipients` — inside the caller's transaction (the outbox): take the
  campaign to RUNNING and list the open payouts that need a job.
* `held_payout_ids`, `active_jobs`, `worker_progress` — read procrastinate's jobs table.
* `payout_times` — what a job needs to know about its own chunk.
* `take_slots` / `hold_slots` — GCRA over one `limiter_state` row per key, one atomic
  `UPDATE … RETURNING` each, on the database's clock: every process on every machine shares
  one schedule, and none of their clocks matters.

>>> waits = take_slots(engine, "1900000109", 2, period=0.0337)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update

from hongbao.ledger.db import read_transaction, write_transaction
from hongbao.ledger.schema import campaigns, payouts
from hongbao.ledger.states import CampaignState, PayoutState

__all__ = [
    "OPEN_STATES",
    "PayoutTimes",
    "WorkerProgress",
    "active_jobs",
    "due_at",
    "held_payout_ids",
    "hold_slots",
    "open_recipients",
    "payout_times",
    "start_run",
    "take_slots",
    "worker_progress",
]

P = PayoutState
OPEN_STATES = (P.PLANNED, P.DEFERRED, P.SENDING, P.UNKNOWN)
"""Payouts still to be driven: a job must hold each of them while its campaign runs."""


def start_run(conn: Connection, campaign_id: int, now: datetime) -> CampaignState:
    """Lock the campaign's row; a PLANNED campaign becomes RUNNING. Returns its state now.

    The lock serialises concurrent starters of one campaign (two `run --distributed`), so that
    they never defer jobs for the same payouts side by side.
    """
    state = conn.execute(
        select(campaigns.c.state).where(campaigns.c.id == campaign_id).with_for_update()
    ).scalar_one()
    if CampaignState(state) is not CampaignState.PLANNED:
        return CampaignState(state)
    conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id)
        .values(state=CampaignState.RUNNING, pause_reason=None, updated_at=now)
    )
    return CampaignState.RUNNING


def open_recipients(conn: Connection, campaign_id: int) -> list[tuple[int, str]]:
    """(id, re_openid) of the campaign's open payouts, by id."""
    rows = conn.execute(
        select(payouts.c.id, payouts.c.re_openid)
        .where(payouts.c.campaign_id == campaign_id, payouts.c.state.in_(OPEN_STATES))
        .order_by(payouts.c.id)
    ).all()
    return [(int(row[0]), str(row[1])) for row in rows]


def held_payout_ids(conn: Connection, task_name: str, campaign_id: int) -> set[int]:
    """Payout ids of the campaign that a job waiting or running already holds."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT (jsonb_array_elements(args->'payout_ids'))::bigint "
            "FROM procrastinate_jobs WHERE task_name = :task AND status IN ('todo', 'doing') "
            "AND (args->>'campaign_id')::bigint = :campaign_id"
        ),
        {"task": task_name, "campaign_id": campaign_id},
    ).all()
    return {int(row[0]) for row in rows}


def active_jobs(engine: Engine, task_name: str, campaign_id: int) -> int:
    """How many jobs of the campaign are waiting or running."""
    query = text(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
        "AND status IN ('todo', 'doing') AND (args->>'campaign_id')::bigint = :campaign_id"
    )
    params = {"task": task_name, "campaign_id": campaign_id}
    return int(read_transaction(engine, lambda conn: conn.execute(query, params).scalar_one()))


@dataclass(frozen=True, slots=True)
class WorkerProgress:
    """What one worker did for a campaign, read from the jobs it ran."""

    worker_id: int | None
    """procrastinate's worker id; None once the worker stopped or was pruned as stalled."""
    heartbeat_age: float | None
    """Seconds since the worker's last heartbeat (None: gone)."""
    running: int
    """Jobs of the campaign it is running now."""
    finished: int
    """Jobs of the campaign it finished (succeeded or failed)."""
    payouts: int
    """Payouts in those jobs."""
    settled: int
    """Of those, the payouts no longer open."""


def worker_progress(engine: Engine, task_name: str, campaign_id: int) -> list[WorkerProgress]:
    """Per worker: the campaign's jobs it ran or runs, and how far their payouts got.

    Empty when procrastinate's tables are not installed (a ledger no worker ever used).
    """
    query = text(
        "WITH jobs AS ("
        "  SELECT id, worker_id, status, args FROM procrastinate_jobs"
        "  WHERE task_name = :task AND status IN ('doing', 'succeeded', 'failed')"
        "  AND (args->>'campaign_id')::bigint = :campaign_id),"
        " held AS ("
        "  SELECT jobs.worker_id, (jsonb_array_elements(jobs.args->'payout_ids'))::bigint AS id"
        "  FROM jobs),"
        " counted AS ("
        "  SELECT held.worker_id, count(*) AS payouts,"
        "   count(*) FILTER (WHERE payouts.state NOT IN ('PLANNED', 'DEFERRED', 'SENDING',"
        "   'UNKNOWN')) AS settled"
        "  FROM held JOIN payouts ON payouts.id = held.id GROUP BY held.worker_id)"
        " SELECT jobs.worker_id,"
        "  extract(epoch FROM clock_timestamp() - max(w.last_heartbeat)) AS age,"
        "  count(*) FILTER (WHERE jobs.status = 'doing') AS running,"
        "  count(*) FILTER (WHERE jobs.status <> 'doing') AS finished,"
        "  max(counted.payouts) AS payouts, max(counted.settled) AS settled"
        " FROM jobs LEFT JOIN procrastinate_workers w ON w.id = jobs.worker_id"
        " LEFT JOIN counted ON counted.worker_id IS NOT DISTINCT FROM jobs.worker_id"
        " GROUP BY jobs.worker_id ORDER BY jobs.worker_id NULLS LAST"
    )
    params = {"task": task_name, "campaign_id": campaign_id}

    def work(conn: Connection) -> Sequence[Any]:
        if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            return []  # no worker ever ran: the job tables are not installed
        return conn.execute(query, params).all()

    rows = read_transaction(engine, work)
    return [
        WorkerProgress(
            worker_id=None if row[0] is None else int(row[0]),
            heartbeat_age=None if row[1] is None else float(row[1]),
            running=int(row[2]),
            finished=int(row[3]),
            payouts=int(row[4] or 0),
            settled=int(row[5] or 0),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class PayoutTimes:
    """An open payout's state and the times that say when it needs action."""

    id: int
    state: PayoutState
    lease_until: datetime | None
    next_attempt_at: datetime | None


def payout_times(engine: Engine, ids: Collection[int]) -> list[PayoutTimes]:
    """The open payouts among `ids`, by id."""
    query = (
        select(payouts.c.id, payouts.c.state, payouts.c.lease_until, payouts.c.next_attempt_at)
        .where(payouts.c.id.in_(sorted(ids)), payouts.c.state.in_(OPEN_STATES))
        .order_by(payouts.c.id)
    )
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    return [PayoutTimes(int(r[0]), PayoutState(r[1]), r[2], r[3]) for r in rows]


def due_at(payout: PayoutTimes, now: datetime) -> datetime:
    """When an open payout needs action, by the rules of `LedgerStore.next_due`."""
    if payout.state is P.PLANNED:
        return now
    if payout.state is P.DEFERRED:
        return payout.next_attempt_at or now
    if payout.state is P.SENDING:
        return payout.lease_until or now
    times = [t for t in (payout.lease_until, payout.next_attempt_at) if t is not None]
    return max(times) if times else now


def _ensure_row(conn: Connection, key: str) -> None:
    conn.execute(
        text("INSERT INTO limiter_state (mch_id, tat) VALUES (:key, 0) ON CONFLICT DO NOTHING"),
        {"key": key},
    )


def take_slots(
    engine: Engine, key: str, count: int = 1, *, period: float, burst: int = 1
) -> list[float]:
    """Reserve the next `count` send slots of `key`; returns when each starts, in seconds from now.

    GCRA with the theoretical arrival time in `limiter_state.tat` (seconds since the epoch on
    the database's clock): the slots are `count` consecutive ones from `max(now, tat)`, each
    allowed `(burst - 1) * period` early (never before now), and `tat` moves past them in the same
    statement, so no two callers get one slot. The slots are exactly those `count` calls one after
    the other would get.

    The transaction commits with `synchronous_commit = off`: it does not wait for the WAL flush,
    so the row's lock is held for the statement, not for a disk write, and every worker's
    reservations do not queue behind each other's flushes. Safe because a reservation moves no
    money: only a crash of the database itself can lose one (the last ~0.6 s of commits at
    most), and then the schedule restarts a little early. The slots given out before the crash
    lie at most one per waiting job ahead, and a worker whose database calls failed sends again
    only after its job runs again (5 s later), when those slots are past; the worst a very quick
    restart can do is put a few sends closer than the period, and the worst that follows is a
    FREQ_LIMIT answer, which `drive_payout` defers and retries like any other.
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    params = {"key": key, "span": period * count}

    def work(conn: Connection) -> float:
        conn.execute(_ASYNC_COMMIT)
        row = conn.execute(_TAKE, params).first()
        if row is None:
            _ensure_row(conn, key)
            row = conn.execute(_TAKE, params).one()
        return float(row[0])

    first = write_transaction(engine, work) - (burst - 1) * period
    return [max(0.0, first + n * period) for n in range(count)]


_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
_TAKE = text(
    "WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) "
    "UPDATE limiter_state SET tat = greatest(limiter_state.tat, clock.now) + :span "
    "FROM clock WHERE limiter_state.mch_id = :key "
    "RETURNING limiter_state.tat - :span - clock.now"
)
"""The reserved slots start at `max(tat, now)`: returned as seconds from now (never negative)."""


def hold_slots(engine: Engine, key: str, seconds: float, *, period: float, burst: int = 1) -> None:
    """Start no slot of `key` earlier than `seconds` from now (FREQ_LIMIT, for every worker)."""

    def work(conn: Connection) -> None:
        _ensure_row(conn, key)
        conn.execute(
            text(
                "UPDATE limiter_state SET tat = greatest(tat, "
                "extract(epoch FROM clock_timestamp())::float8 + :seconds "
                "+ (:burst - 1) * :period) WHERE mch_id = :key"
            ),
            {"key": key, "seconds": seconds, "period": period, "burst": burst},
        )

    write_transaction(engine, work)
