"""Read-only aggregates for the dashboard, computed in SQL (GROUP BY), never row by row.

A campaign of 100,000 payouts must render in well under a second, so every figure here is one
query whose result has as many rows as there are states, campaigns or time buckets — never as
many as there are payouts.

* `totals_by_campaign`: count and fen per (campaign, state), for the campaigns page.
* `send_counts`: send calls of a campaign per time bucket (from the audit trail's `send`
  events, retries included: what WeChat counts against the merchant's rate).
* `outcome_counts`: payouts received, and refunded, per time bucket.
* `search_payouts`: payouts by receiver openid or bill number.

>>> totals = totals_by_campaign(store.engine)[campaign.id]  # doctest: +SKIP
>>> send_counts(store.engine, campaign.id, bucket_seconds=60)  # doctest: +SKIP
[Bucket(start=datetime(2024, 3, 15, 2, 0, tzinfo=UTC), count=30), ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
)

from hongbao.ledger.db import read_transaction
from hongbao.ledger.records import Origin, Payout, StateTotal
from hongbao.ledger.rows import payout_from_row
from hongbao.ledger.schema import payout_events, payouts
from hongbao.ledger.statements import LATEST, scope_clause
from hongbao.ledger.states import PayoutState

__all__ = [
    "Bucket",
    "outcome_counts",
    "recent_on_demand",
    "search_payouts",
    "send_counts",
    "totals_by_campaign",
]

_BILL_TAIL = 18
"""A bill number is `mch_id` + yyyymmdd + 10 digits: the merchant is all but the last 18."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """How many things happened in the time bucket starting at `start` (UTC)."""

    start: datetime
    count: int


def _epoch_bucket(column: Any, dialect: str, seconds: int) -> ColumnElement[Any]:
    """The start of `column`'s bucket of `seconds`, in Unix seconds (integer division)."""
    if seconds < 1:
        raise ValueError("bucket_seconds must be at least 1")
    width: ColumnElement[Any] = literal_column(str(int(seconds)))
    if dialect == "sqlite":
        # Stored as naive UTC text, which strftime('%s') reads as UTC.
        epoch: ColumnElement[Any] = cast(func.strftime("%s", column), Integer)
    else:
        epoch = cast(func.floor(func.extract("epoch", column)), BigInteger)
    return (epoch // width) * width


def _bucket(start: Any, count: Any) -> Bucket:
    return Bucket(datetime.fromtimestamp(int(start), UTC), int(count))


def totals_by_campaign(engine: Engine) -> dict[int, dict[PayoutState, StateTotal]]:
    """Count and fen of every campaign's payouts per state (states that occur only)."""
    query = (
        select(
            payouts.c.campaign_id,
            payouts.c.state,
            func.count(),
            func.coalesce(func.sum(payouts.c.total_amount), 0),
        )
        .where(payouts.c.campaign_id.is_not(None))
        .group_by(payouts.c.campaign_id, payouts.c.state)
    )
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    totals: dict[int, dict[PayoutState, StateTotal]] = {}
    for campaign_id, state, count, amount in rows:
        totals.setdefault(int(campaign_id), {})[PayoutState(state)] = StateTotal(
            int(count), int(amount)
        )
    return totals


def send_counts(engine: Engine, campaign_id: int, *, bucket_seconds: int = 60) -> list[Bucket]:
    """Send calls (every attempt) of a campaign per bucket, oldest first; empty ones left out."""
    e, p = payout_events.c, payouts.c
    bucket = _epoch_bucket(e.at, engine.dialect.name, bucket_seconds).label("bucket")
    query = (
        # Only indexed payout columns: the (campaign_id, state) index answers the payout side.
        select(bucket, func.count())
        .select_from(payouts.join(payout_events, e.payout_id == p.id))
        .where(p.campaign_id == campaign_id, e.kind == "send")
        .group_by(bucket)
        .order_by(bucket)
    )
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    return [_bucket(start, count) for start, count in rows]


def outcome_counts(
    engine: Engine, campaign_id: int, *, bucket_seconds: int = 60
) -> tuple[list[Bucket], list[Bucket]]:
    """Payouts of a campaign received, and refunded, per bucket, oldest first (one scan)."""
    p = payouts.c
    # RECEIVED and REFUNDED exclude each other: a payout has at most one of the two times.
    received = p.received_at.is_not(None)
    when = func.coalesce(p.received_at, p.refunded_at)
    bucket = _epoch_bucket(when, engine.dialect.name, bucket_seconds).label("bucket")
    kind = case((received, 1), else_=0).label("received")
    query = (
        select(kind, bucket, func.count())
        .where(p.campaign_id == campaign_id, or_(received, p.refunded_at.is_not(None)))
        .group_by(kind, bucket)
        .order_by(bucket)
    )
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    opened = [_bucket(start, count) for was_received, start, count in rows if was_received]
    refunded = [_bucket(start, count) for was_received, start, count in rows if not was_received]
    return opened, refunded


def search_payouts(engine: Engine, text: str, *, limit: int = 50) -> list[Payout]:
    """Payouts whose receiver openid or bill number is `text`, newest first."""
    text = text.strip()
    if not text:
        return []
    p = payouts.c
    # Two queries rather than one OR: a bill number names its merchant, so the (mch_id,
    # mch_billno) index answers it alone.
    by_openid = select(payouts).where(p.re_openid == text).order_by(p.id.desc()).limit(limit)
    by_bill = select(payouts).where(p.mch_id == text[:-_BILL_TAIL], p.mch_billno == text)

    def work(conn: Connection) -> list[Any]:
        rows = list(conn.execute(by_openid).all())
        if len(text) > _BILL_TAIL and text.isascii() and text.isdigit():
            rows += conn.execute(by_bill).all()
        return rows

    found = {row.id: payout_from_row(row) for row in read_transaction(engine, work)}
    return sorted(found.values(), key=lambda payout: -payout.id)[:limit]


def recent_on_demand(engine: Engine, *, limit: int = 50) -> list[Payout]:
    """The newest payouts on demand of every merchant (their latest bill), newest first."""
    on_demand = scope_clause((False, False, False, Origin.ON_DEMAND))
    query = select(payouts).where(on_demand, LATEST).order_by(payouts.c.id.desc()).limit(limit)
    rows = read_transaction(engine, lambda conn: conn.execute(query).all())
    return [payout_from_row(row) for row in rows]
