"""Reads the tests make of the ledger's tables and no user needs."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from hongbao.ledger import LedgerStore, StateTotal
from hongbao.ledger.db import read_transaction
from hongbao.ledger.schema import daily_counters


def daily_usage(store: LedgerStore, mch_id: str, openid: str, day: date) -> StateTotal:
    """Packets and fen committed to `openid` by `mch_id` on a UTC+8 day ("" = merchant)."""
    c = daily_counters.c
    query = select(c.count, c.amount_fen).where(
        c.mch_id == mch_id, c.openid == openid, c.day == day
    )
    row = read_transaction(store.engine, lambda conn: conn.execute(query).first())
    return StateTotal(int(row[0]), int(row[1])) if row is not None else StateTotal(0, 0)
