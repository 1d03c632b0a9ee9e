"""The webhook relay's side of the ledger: queueing events per endpoint and their attempts.

`webhook_deliveries` has one writer, the relay (`hongbao.service.webhook_relay`), through the
functions here; `webhook_outbox` is only read. Every function is one short transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, func, select, update

from hongbao.ledger.db import read_transaction, write_transaction
from hongbao.ledger.rows import upsert
from hongbao.ledger.schema import webhook_deliveries, webhook_outbox

__all__ = [
    "Delivery",
    "OutboxEvent",
    "backlog",
    "due_deliveries",
    "floor_before",
    "queue",
    "record_attempt",
    "take",
    "unqueued",
    "visible_floor",
]

D = webhook_deliveries.c
OB = webhook_outbox.c


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One row of the outbox."""

    id: int
    type: str
    at: datetime
    payout_id: int | None
    campaign_id: int | None
    state: str
    err_code: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one endpoint, and how its delivery went so far."""

    id: int
    outbox_id: int
    endpoint: str
    body: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime


def floor_before(engine: Engine, cutoff: datetime) -> int:
    """The last outbox id written before `cutoff` (0: none): where a new endpoint starts."""
    query = select(func.max(OB.id)).where(OB.at < cutoff)
    return int(read_transaction(engine, lambda conn: conn.execute(query).scalar()) or 0)


def visible_floor(engine: Engine, after: int, cutoff: datetime) -> int:
    """The last outbox id past `after` written before `cutoff`, or `after`."""
    query = select(func.max(OB.id)).where(OB.id > after, OB.at < cutoff)
    found = read_transaction(engine, lambda conn: conn.execute(query).scalar())
    return after if found is None else int(found)


def unqueued(
    engine: Engine, endpoint: str, types: Collection[str], after: int, limit: int
) -> list[OutboxEvent]:
    """Outbox events past id `after`, of `types`, that `endpoint` has no delivery for."""
    queued = exists().where(D.outbox_id == OB.id, D.endpoint == endpoint)
    query = (
        select(webhook_outbox)
        .where(OB.id > after, OB.type.in_(sorted(types)), ~queued)
        .order_by(OB.id)
        .limit(limit)
    )
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    return [OutboxEvent(**row._mapping) for row in rows]


def queue(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Queue deliveries (outbox_id, endpoint, body, next_attempt_at, created_at); a pair
    queued before (by another relay) is left alone."""
    if not rows:
        return

    def work(conn: Any) -> None:
        for row in rows:
            keys = ["outbox_id", "endpoint"]
            conn.execute(upsert(conn.dialect.name, webhook_deliveries, row, keys, None))

    write_transaction(engine, work)


def due_deliveries(engine: Engine, now: datetime, limit: int) -> list[Delivery]:
    """Deliveries due by `now`, the longest waiting first."""
    query = (
        select(D.id, D.outbox_id, D.endpoint, D.body, D.attempts, D.next_attempt_at, D.created_at)
        .where(D.delivered_at.is_(None), D.given_up_at.is_(None), D.next_attempt_at <= now)
        .order_by(D.next_attempt_at)
        .limit(limit)
    )
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    return [Delivery(**row._mapping) for row in rows]


def take(engine: Engine, delivery: Delivery, until: datetime) -> bool:
    """Hold a due delivery until `until` (compare-and-set): False when another relay took it.
    A relay that dies holding it leaves it due again at `until`."""
    stmt = (
        update(webhook_deliveries)
        .where(
            D.id == delivery.id,
            D.delivered_at.is_(None),
            D.next_attempt_at == delivery.next_attempt_at,
        )
        .values(next_attempt_at=until)
    )
    return bool(write_transaction(engine, lambda conn: conn.execute(stmt).rowcount) == 1)


def record_attempt(
    engine: Engine,
    delivery_id: int,
    *,
    now: datetime,
    status: int | None,
    error: str | None,
    delivered: bool,
    next_attempt_at: datetime | None,
) -> None:
    """What an attempt got: delivered, due again at `next_attempt_at`, or (None) given up."""
    values: dict[str, Any] = {
        "attempts": D.attempts + 1,
        "last_status": status,
        "last_error": error[:256] if error else None,
    }
    if delivered:
        values["delivered_at"] = now
    elif next_attempt_at is None:
        values["given_up_at"] = now
    else:
        values["next_attempt_at"] = next_attempt_at
    stmt = update(webhook_deliveries).where(D.id == delivery_id).values(**values)
    write_transaction(engine, lambda conn: conn.execute(stmt))


def backlog(engine: Engine) -> dict[str, tuple[int, int]]:
    """Per endpoint: deliveries not done yet, and deliveries given up."""
    query = select(
        D.endpoint,
        func.count().filter(and_(D.delivered_at.is_(None), D.given_up_at.is_(None))),
        func.count().filter(D.given_up_at.is_not(None)),
    ).group_by(D.endpoint)
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    return {str(row[0]): (int(row[1]), int(row[2])) for row in rows}
