"""Concurrent claimers on one ledger: exactly-once claims, no budget or cap ever overshot."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest

from hongbao.ledger import DailyCaps, LedgerBusy, LedgerStore, PayoutState, upgrade
from hongbao.ledger.db import SQLITE_BUSY_TIMEOUT_MS, create_ledger_engine, write_transaction
from hongbao.ledger.states import COMMITTING
from tests.ledgerkit import daily_usage

from .conftest import MCH_ID, PayoutFactory

P = PayoutState
THREADS = 8
USERS = 12
PER_USER = 5
AMOUNT = 100
TODAY = date(2024, 3, 15)


def _plan(store: LedgerStore, make_payout: PayoutFactory, campaign: int) -> None:
    store.add_payouts(
        make_payout(f"user{u}", AMOUNT, campaign_id=campaign, key=f"c{campaign}:u{u}:{n}")
        for u in range(USERS)
        for n in range(PER_USER)
    )


def _in_parallel(work: Callable[[], list[int]]) -> list[int]:
    start = threading.Barrier(THREADS)

    def worker() -> list[int]:
        start.wait()
        return work()

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker) for _ in range(THREADS)]
        return [payout_id for future in futures for payout_id in future.result()]


def test_concurrent_claims_never_double_claim_or_overshoot(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: Callable[..., int]
) -> None:
    budget = 30 * AMOUNT  # binding: the caps alone would let 36 through
    caps = DailyCaps(per_user_count=3, per_user_amount_fen=None)
    campaign = running_campaign(budget_fen=budget)
    _plan(store, make_payout, campaign)

    def claim_until_dry() -> list[int]:
        mine: list[int] = []
        while True:
            result = store.claim(MCH_ID, limit=4, caps=caps)
            if not (result.claimed or result.deferred or result.skipped):
                return mine
            mine.extend(p.id for p in result.claimed)

    claimed = _in_parallel(claim_until_dry)

    assert len(claimed) == len(set(claimed)) == 30
    payouts = [store.get_payout(payout_id) for payout_id in claimed]
    assert {p.state for p in payouts} == {P.SENDING}
    assert store.get_campaign(campaign).committed_fen == 30 * AMOUNT
    per_user = Counter(p.re_openid for p in payouts)
    assert max(per_user.values()) <= 3
    for user, count in per_user.items():
        assert daily_usage(store, MCH_ID, user, TODAY).count == count
    totals = store.totals_by_state(campaign)
    assert sum(t.count for t in totals.values()) == USERS * PER_USER
    assert totals[P.PLANNED].count == 0


def test_claims_racing_releases_keep_budget_and_counters_exact(
    store: LedgerStore, make_payout: PayoutFactory, running_campaign: Callable[..., int]
) -> None:
    budget = 25 * AMOUNT
    caps = DailyCaps(per_user_count=4, per_user_amount_fen=None)
    campaign = running_campaign(budget_fen=budget)
    _plan(store, make_payout, campaign)

    def claim_and_settle() -> list[int]:
        mine: list[int] = []
        while True:
            result = store.claim(MCH_ID, limit=3, caps=caps)
            if not (result.claimed or result.deferred or result.skipped):
                return mine
            for payout in result.claimed:
                mine.append(payout.id)
                # Every other send fails definitively: its budget and count go back at once.
                outcome = P.FAILED if payout.id % 2 else P.SENT
                assert store.transition(payout.id, P.SENDING, outcome)

    claimed = _in_parallel(claim_and_settle)

    assert len(claimed) == len(set(claimed))
    totals = store.totals_by_state(campaign)
    committed = sum(totals[state].amount_fen for state in COMMITTING)
    campaign_row = store.get_campaign(campaign)
    assert campaign_row.committed_fen == committed <= budget
    sent = store.find_payouts([P.SENT], campaign_id=campaign, limit=1000)
    per_user = Counter(p.re_openid for p in sent)
    assert max(per_user.values()) <= 4
    for user in (f"user{u}" for u in range(USERS)):
        assert daily_usage(store, MCH_ID, user, TODAY).count == per_user[user]
    for payout_id in claimed:
        claims = [e for e in store.events(payout_id) if e.to_state is P.SENDING]
        assert len(claims) == 1


@pytest.mark.timeout(10)  # waiting for the lock would take the busy timeout: 30 s
def test_a_write_told_not_to_wait_is_refused_at_once_while_another_holds_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    upgrade(f"sqlite:///{path}")
    engine = create_ledger_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(LedgerBusy):
            write_transaction(engine, lambda conn: conn.exec_driver_sql("SELECT 1"), wait=False)
        other.execute("ROLLBACK")

        assert write_transaction(engine, lambda conn: 7, wait=False) == 7
        # The connection keeps its busy timeout for every other transaction.
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        other.close()
        engine.dispose()
