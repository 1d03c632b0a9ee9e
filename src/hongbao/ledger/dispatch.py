"""Queries of the scale-out dispatcher (PostgreSQL only) over the ledger's own tables.

The scale-out dispatcher (`hongbao.engine.distributed`) keeps its pacing state in
`limiter_state`. What it asks of the ledger's tables beyond `LedgerStore` is here, as plain
functions over a connection or an engine (what it reads in procrastinate's own tables is in
`hongbao.engine.job_queries`, beside the dispatcher):

* `start_run` / `open_recipients` — inside the caller's transaction (the outbox): take the
  campaign to RUNNING and list the open payouts that need a job.
* `payout_times` — what a job needs to know about its own chunk.
* `take_slots` / `hold_slots` — GCRA over one `limiter_state` row per key, one atomic
  `UPDATE … RETURNING` each, on the database's clock: every process on every machine shares
  one schedule, and none of their clocks matters.

>>> waits = take_slots(engine, "1900000109", 2, period=0.0337)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select, text, update

from hongbao.ledger.db import read_transaction, write_transaction
from hongbao.ledger.schema import campaigns, payouts
from hongbao.ledger.states import OPEN_STATES, CampaignState, PayoutState

__all__ = [
    "OPEN_STATES",
    "PayoutTimes",
    "due_at",
    "hold_slots",
    "open_recipients",
    "payout_times",
    "start_run",
    "take_slots",
]

P = PayoutState


def start_run(conn: Connection, campaign_id: int, now: datetime) -> CampaignState:
    """Lock the campaign's row; a PLANNED or INTERRUPTED campaign becomes RUNNING. Returns its
    state now.

    The lock serialises concurrent starters of one campaign (two `run --distributed`), so that
    they never defer jobs for the same payouts side by side.
    """
    state = conn.execute(
        select(campaigns.c.state).where(campaigns.c.id == campaign_id).with_for_update()
    ).scalar_one()
    if CampaignState(state) not in (CampaignState.PLANNED, CampaignState.INTERRUPTED):
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
