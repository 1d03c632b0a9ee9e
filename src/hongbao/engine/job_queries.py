"""SQL over procrastinate's own tables (PostgreSQL only): what the scale-out dispatcher reads there.

The scale-out dispatcher (`hongbao.engine.distributed`) keeps its jobs in procrastinate's tables,
in the same database as the ledger. Those tables are procrastinate's, not the ledger's, so the
queries that read them live here, beside the dispatcher, and not in `hongbao.ledger`:

* `held_payout_ids` — inside the caller's transaction (the outbox): the payouts a waiting or
  running job already holds.
* `active_jobs` — how many jobs of a campaign are waiting or running.
* `job_counts` — a campaign's jobs running, ready and scheduled later, and the live workers.
* `campaign_jobs` — how many jobs a campaign ever had (was it run `--distributed`?).
* `worker_progress` — per worker, the campaign's jobs it ran and how far their payouts got.
* `jobs_installed` — whether procrastinate's tables exist in this database.

A job's arguments carry `campaign_id` and `payout_ids` (see `ChunkDriver`); `task_name` picks
the dispatcher's task among any others sharing the tables.

>>> active_jobs(engine, TASK_NAME, campaign_id)  # doctest: +SKIP
0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from hongbao.ledger.db import read_transaction

__all__ = [
    "JobCounts",
    "WorkerProgress",
    "active_jobs",
    "campaign_jobs",
    "held_payout_ids",
    "job_counts",
    "jobs_installed",
    "worker_progress",
]


def jobs_installed(conn: Connection) -> bool:
    """True once procrastinate's tables are installed in the connection's database."""
    return conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None


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
class JobCounts:
    """Where a campaign's open jobs are, and how many workers could take them."""

    running: int
    ready: int
    """Waiting for a worker now."""
    later: int
    """Scheduled for later (a successor deferred to when its payouts are due)."""
    workers: int
    """Workers that heartbeat within `alive_within` seconds, whatever their campaign."""


def job_counts(
    engine: Engine, task_name: str, campaign_id: int, *, alive_within: float = 60.0
) -> JobCounts:
    """The campaign's waiting and running jobs, and the live workers."""
    query = text(
        "SELECT count(*) FILTER (WHERE status = 'doing'),"
        " count(*) FILTER (WHERE status = 'todo' AND (scheduled_at IS NULL"
        "  OR scheduled_at <= now())),"
        " count(*) FILTER (WHERE status = 'todo' AND scheduled_at > now()),"
        " (SELECT count(*) FROM procrastinate_workers"
        "  WHERE last_heartbeat > now() - make_interval(secs => :alive))"
        " FROM procrastinate_jobs WHERE task_name = :task AND status IN ('todo', 'doing')"
        " AND (args->>'campaign_id')::bigint = :campaign_id"
    )
    params = {"task": task_name, "campaign_id": campaign_id, "alive": alive_within}
    row = read_transaction(engine, lambda conn: conn.execute(query, params).one())
    return JobCounts(*(int(value) for value in row))


def campaign_jobs(engine: Engine, task_name: str, campaign_id: int) -> int:
    """How many jobs the campaign ever had, in any state (0 without procrastinate's tables)."""
    query = text(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task "
        "AND (args->>'campaign_id')::bigint = :campaign_id"
    )
    params = {"task": task_name, "campaign_id": campaign_id}

    def work(conn: Connection) -> int:
        return int(conn.execute(query, params).scalar_one()) if jobs_installed(conn) else 0

    return read_transaction(engine, work)


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
    """Payouts in those jobs, each counted once: for the worker of the last job that held it."""
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
        # A payout is held by every job that took it (a retried job, a job deferred again for
        # what was left): it counts once, for the worker of the last of them.
        " held AS ("
        "  SELECT DISTINCT ON (id) id, worker_id FROM ("
        "   SELECT jobs.id AS job_id, jobs.worker_id,"
        "    (jsonb_array_elements(jobs.args->'payout_ids'))::bigint AS id FROM jobs) taken"
        "  ORDER BY id, job_id DESC),"
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
        if not jobs_installed(conn):
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
