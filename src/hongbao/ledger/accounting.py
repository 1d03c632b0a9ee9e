"""What a payout commits: its campaign's budget and the daily counters, charged and released.

Charging happens inside a claim's transaction, releasing inside a transition's, so the figures
are always those of the payouts in money-committing states. Each charge is one atomic
conditional statement, safe under any concurrency: an UPDATE of the campaign's `committed_fen`
guarded by the budget (and by a CHECK constraint besides), and an upsert of the counter row
guarded by the caps.

A claim of many payouts first tries `reserve_all`: the same guarded statements, once per
campaign, receiver and merchant for the whole batch, inside a savepoint. When everything fits —
the usual case — each payout fits on its own too, whatever the order; when anything does not,
the savepoint is rolled back and the claim charges payout by payout with `reserve`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, and_, select, update

from hongbao.ledger.records import DailyCaps
from hongbao.ledger.rows import upsert
from hongbao.ledger.schema import MERCHANT_TOTAL, campaigns, daily_counters
from hongbao.ledger.statements import charge_budget, charge_counters, savepoint

__all__ = ["Charged", "release", "reserve", "reserve_all"]


class Charged(Protocol):
    """What charging reads of a payout: a `Payout`, or the store's brief row of one."""

    @property
    def campaign_id(self) -> int | None: ...

    @property
    def mch_id(self) -> str: ...

    @property
    def re_openid(self) -> str: ...

    @property
    def total_amount(self) -> int: ...


class _DoesNotFit(Exception):
    """Raised inside `reserve_all`'s savepoint to undo a partial charge."""


def reserve_all(conn: Connection, batch: Sequence[Charged], day: date, caps: DailyCaps) -> bool:
    """Charge budget and counters for every payout of `batch` at once: True when all fit.

    False when any would be refused; then nothing is kept, and `reserve` must decide payout by
    payout which ones fit.
    """
    if not batch:
        return True
    budgets: Counter[int] = Counter()
    users: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    merchants: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for payout in batch:
        if payout.campaign_id is not None:
            budgets[payout.campaign_id] += payout.total_amount
        for total in (users[payout.mch_id, payout.re_openid], merchants[payout.mch_id]):
            total[0] += 1
            total[1] += payout.total_amount
    # Sorted: concurrent claimers lock counter rows in one order (PostgreSQL deadlocks less).
    user_rows = [_row(mch, openid, day, total) for (mch, openid), total in sorted(users.items())]
    merchant_rows = [
        _row(mch, MERCHANT_TOTAL, day, total) for mch, total in sorted(merchants.items())
    ]
    if not (
        _within(user_rows, caps.per_user_count, caps.per_user_amount_fen)
        and _within(merchant_rows, None, caps.merchant_amount_fen)
    ):
        return False
    try:
        with savepoint(conn):
            for campaign_id, amount in sorted(budgets.items()):
                if not _charge_budget(conn, campaign_id, amount):
                    raise _DoesNotFit
            limits = (caps.per_user_count, caps.per_user_amount_fen)
            for rows, (max_count, max_amount) in (
                (user_rows, limits),
                (merchant_rows, (None, caps.merchant_amount_fen)),
            ):
                if not _charge_rows(conn, rows, max_count, max_amount):
                    raise _DoesNotFit
    except _DoesNotFit:
        return False
    return True


def _row(mch_id: str, openid: str, day: date, total: list[int]) -> dict[str, Any]:
    return {"mch_id": mch_id, "openid": openid, "day": day, "count": total[0],
            "amount_fen": total[1]}  # fmt: skip


def _within(rows: list[dict[str, Any]], max_count: int | None, max_amount: int | None) -> bool:
    """Whether each row's own charge stays under the caps (before adding what is counted)."""
    return all(
        (max_count is None or row["count"] <= max_count)
        and (max_amount is None or row["amount_fen"] <= max_amount)
        for row in rows
    )


def _charge_rows(
    conn: Connection,
    rows: list[dict[str, Any]],
    max_count: int | None,
    max_amount: int | None,
) -> bool:
    """Add each row to its counter if the caps allow; True when every row was added."""
    stmt = charge_counters(max_count=max_count is not None, max_amount=max_amount is not None)
    caps = {"max_count": max_count, "max_amount": max_amount}
    return stmt.run(conn, [{**row, **caps} for row in rows]) == len(rows)


def reserve(
    conn: Connection, dialect: str, payout: Charged, day: date, caps: DailyCaps
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


def release(conn: Connection, payout: Charged, counted_day: date | None) -> None:
    """Give back what `payout` committed: budget, and the counters of the day it was charged."""
    if payout.campaign_id is not None:
        _release_budget(conn, payout.campaign_id, payout.total_amount)
    if counted_day is not None:
        for openid in (payout.re_openid, MERCHANT_TOTAL):
            _uncharge(conn, payout.mch_id, openid, counted_day, payout.total_amount)


def _charge_budget(conn: Connection, campaign_id: int, amount: int) -> bool:
    return charge_budget().count(conn, {"campaign_id": campaign_id, "amount": amount}) == 1


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
