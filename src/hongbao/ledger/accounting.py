"""What a payout commits: its campaign's budget and the daily counters, charged and released.

Charging happens inside a claim's transaction, releasing inside a transition's, so the figures
are always those of the payouts in money-committing states. Each charge is one atomic
conditional statement, safe under any concurrency: an UPDATE of the campaign's `committed_fen`
guarded by the budget (and by a CHECK constraint besides), and an upsert of the counter row
guarded by the caps.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import ColumnElement, Connection, and_, or_, select, update

from hongbao.ledger.records import DailyCaps, Payout
from hongbao.ledger.rows import upsert
from hongbao.ledger.schema import MERCHANT_TOTAL, campaigns, daily_counters

__all__ = ["release", "reserve"]


def reserve(
    conn: Connection, dialect: str, payout: Payout, day: date, caps: DailyCaps
) -> str | None:
    """Charge budget and counters for `payout`: None when all agreed, else why not (nothing kept).

    Reasons: over_budget, user_daily_count, user_daily_amount, merchant_daily_amount.
    """
    amount = payout.total_amount
    if payout.campaign_id is not None and not _charge_budget(conn, payout.campaign_id, amount):
        return "over_budget"
    refusal = _charge(
        conn, dialect, payout.mch_id, payout.re_openid, day, amount,
        caps.per_user_count, caps.per_user_amount_fen, "user",
    )  # fmt: skip
    if refusal is None:
        refusal = _charge(
            conn, dialect, payout.mch_id, MERCHANT_TOTAL, day, amount,
            None, caps.merchant_amount_fen, "merchant",
        )  # fmt: skip
        if refusal is not None:
            _uncharge(conn, payout.mch_id, payout.re_openid, day, amount)
    if refusal is not None and payout.campaign_id is not None:
        _release_budget(conn, payout.campaign_id, amount)
    return refusal


def release(conn: Connection, payout: Payout, counted_day: date | None) -> None:
    """Give back what `payout` committed: budget, and the counters of the day it was charged."""
    if payout.campaign_id is not None:
        _release_budget(conn, payout.campaign_id, payout.total_amount)
    if counted_day is not None:
        for openid in (payout.re_openid, MERCHANT_TOTAL):
            _uncharge(conn, payout.mch_id, openid, counted_day, payout.total_amount)


def _charge_budget(conn: Connection, campaign_id: int, amount: int) -> bool:
    within = or_(
        campaigns.c.budget_fen.is_(None),
        campaigns.c.committed_fen + amount <= campaigns.c.budget_fen,
    )
    result = conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, within)
        .values(committed_fen=campaigns.c.committed_fen + amount)
    )
    return result.rowcount == 1


def _release_budget(conn: Connection, campaign_id: int, amount: int) -> None:
    conn.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id)
        .values(committed_fen=campaigns.c.committed_fen - amount)
    )


def _charge(
    conn: Connection,
    dialect: str,
    mch_id: str,
    openid: str,
    day: date,
    amount: int,
    max_count: int | None,
    max_amount: int | None,
    who: str,
) -> str | None:
    if max_count is not None and max_count < 1:
        return f"{who}_daily_count"
    if max_amount is not None and amount > max_amount:
        return f"{who}_daily_amount"
    c = daily_counters.c
    limits: list[ColumnElement[bool]] = []
    if max_count is not None:
        limits.append(c.count + 1 <= max_count)
    if max_amount is not None:
        limits.append(c.amount_fen + amount <= max_amount)
    stmt = upsert(
        dialect,
        daily_counters,
        {"mch_id": mch_id, "openid": openid, "day": day, "count": 1, "amount_fen": amount},
        ["mch_id", "openid", "day"],
        {"count": c.count + 1, "amount_fen": c.amount_fen + amount},
        and_(*limits) if limits else None,
    )
    # RETURNING, not rowcount: drivers need not report a row count for an INSERT.
    if conn.execute(stmt.returning(c.count)).first() is not None:
        return None
    count = conn.execute(
        select(c.count).where(c.mch_id == mch_id, c.openid == openid, c.day == day)
    ).scalar_one()
    over_count = max_count is not None and count + 1 > max_count
    return f"{who}_daily_count" if over_count else f"{who}_daily_amount"


def _uncharge(conn: Connection, mch_id: str, openid: str, day: date, amount: int) -> None:
    c = daily_counters.c
    conn.execute(
        update(daily_counters)
        .where(c.mch_id == mch_id, c.openid == openid, c.day == day)
        .values(count=c.count - 1, amount_fen=c.amount_fen - amount)
    )
