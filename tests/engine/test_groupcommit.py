"""Group commit: many drives' outcomes in one transaction, each drive waiting for its own commit.

What a user relies on: no outcome is lost or mixed up when drives share a round, one bad
transition does not fail the others, and a crash before the round commits leaves the payouts
SENDING — in flight, for recovery to resolve — never recorded as something they are not.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hongbao.engine.groupcommit import GroupCommitter
from hongbao.engine.payout import drive_payout
from hongbao.ledger import (
    ClaimRequest,
    ClaimResult,
    IllegalTransitionError,
    LedgerStore,
    Payout,
    PayoutState,
    Transition,
    upgrade,
)
from tests.engine.enginekit import Bench, Crash, make_bench

P = PayoutState


class GatedStore(LedgerStore):
    """Holds the first round until the test opens the gate; counts the rounds and their sizes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.rounds: list[int] = []
        self.crash: str | None = None

    def transition_many(
        self, transitions: Sequence[Transition], *, wait: bool = True
    ) -> list[bool]:
        self.rounds.append(len(transitions))
        if len(self.rounds) == 1:
            self.gate.wait(10)
        if self.crash == "before":
            raise Crash("killed before the round committed")
        moved = super().transition_many(transitions, wait=wait)
        if self.crash == "after":
            raise Crash("killed after the round committed")
        return moved


def _gated(bench: Bench) -> GatedStore:
    return GatedStore(bench.store.engine, clock=bench.clock)


def _claimed(bench: Bench, count: int) -> list[Payout]:
    """`count` payouts to the bench's users, claimed (SENDING)."""
    for openid in bench.users[:count]:
        bench.add_payout(openid)
    return bench.claim(limit=count)


async def _until_queued(committer: GroupCommitter, count: int) -> None:
    for _ in range(10_000):
        if committer.pending >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{committer.pending} transitions queued, expected {count}")


async def test_drives_that_finish_together_share_a_round_and_each_gets_its_own_answer(
    bench: Bench,
) -> None:
    store = _gated(bench)
    committer = GroupCommitter(store)
    driver = bench.driver(store=store, committer=committer)
    claimed = _claimed(bench, 5)
    drives = [asyncio.create_task(drive_payout(payout, driver)) for payout in claimed]
    # The first outcome's round is held open while the other four queue behind it.
    await _until_queued(committer, 4)
    store.gate.set()
    results = await asyncio.gather(*drives)

    assert store.rounds == [1, 4]
    assert [result.state for result in results] == [P.SENT] * 5
    assert bench.issued() == Counter(p.re_openid for p in claimed)
    for payout in claimed:
        stored = bench.store.get_payout(payout.id)
        assert stored.state is P.SENT
        assert stored.send_listid
        assert [(e.kind, e.to_state) for e in bench.store.events(payout.id)] == [
            ("claim", P.SENDING),
            ("send", P.SENT),
        ]


async def test_an_illegal_transition_fails_alone_and_the_rest_of_its_round_commits(
    bench: Bench,
) -> None:
    first, second = _claimed(bench, 2)
    committer = GroupCommitter(bench.store)

    good, bad = await asyncio.gather(
        committer.transition(Transition(first.id, P.SENDING, P.SENT, fields={"send_listid": "1"})),
        committer.transition(Transition(second.id, P.SENDING, P.SENDING)),
        return_exceptions=True,
    )

    assert good is True
    assert isinstance(bad, IllegalTransitionError)
    assert bench.store.get_payout(first.id).state is P.SENT
    assert bench.store.get_payout(second.id).state is P.SENDING


async def test_a_stale_transition_in_a_round_is_refused_without_touching_the_others(
    bench: Bench,
) -> None:
    first, second = _claimed(bench, 2)
    assert bench.store.transition(second.id, P.SENDING, P.UNKNOWN)
    committer = GroupCommitter(bench.store)

    moved = await asyncio.gather(
        committer.transition(Transition(first.id, P.SENDING, P.SENT, fields={"send_listid": "1"})),
        committer.transition(Transition(second.id, P.SENDING, P.SENT, fields={"send_listid": "2"})),
    )

    assert list(moved) == [True, False]
    assert bench.store.get_payout(second.id).state is P.UNKNOWN


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_crash_around_a_round_loses_no_payment_and_recovery_settles_it(
    bench: Bench, when: str
) -> None:
    store = _gated(bench)
    store.gate.set()
    store.crash = when
    committer = GroupCommitter(store)
    driver = bench.driver(store=store, committer=committer)
    claimed = _claimed(bench, 3)

    results = await asyncio.gather(
        *(drive_payout(payout, driver) for payout in claimed), return_exceptions=True
    )

    assert all(isinstance(result, Crash) for result in results)
    states = {bench.store.get_payout(p.id).state for p in claimed}
    # Paid by WeChat either way; the ledger says so only if the round committed.
    assert states == ({P.SENDING} if when == "before" else {P.SENT})
    assert bench.issued() == Counter(p.re_openid for p in claimed)

    # The restarted process: the leases run out, recovery asks WeChat and records the truth.
    bench.clock.advance(bench.profile.lease_seconds + 1)
    restarted = bench.driver(committer=GroupCommitter(bench.store))
    stale = bench.store.claim_stale(bench.mch_id, limit=10, lease_seconds=60)
    await asyncio.gather(*(drive_payout(payout, restarted) for payout in stale))
    assert {bench.store.get_payout(p.id).state for p in claimed} == {P.SENT}
    assert bench.issued() == Counter(p.re_openid for p in claimed)


async def test_a_busy_run_never_loses_a_transition(ledger_url: str, tmp_path: Path) -> None:
    bench = make_bench(ledger_url, tmp_path, users=40, concurrency=8)
    try:
        campaign = bench.campaign()
        summary = await bench.run(campaign.id)

        assert summary.stopped == "completed"
        assert summary.totals[P.SENT].count == 40
        assert bench.issued() == Counter(bench.users)
        for payout in bench.store.iter_payouts(campaign.id):
            kinds = [(e.kind, e.to_state) for e in bench.store.events(payout.id)]
            assert kinds == [("claim", P.SENDING), ("send", P.SENT)], kinds
    finally:
        bench.store.close()
        bench.sim.close()


class RecordingRefill:
    """Asks each round to claim two payouts, and keeps what each round reported back."""

    def __init__(self, mch_id: str) -> None:
        self.mch_id = mch_id
        self.reports: list[ClaimResult | None] = []

    def claim_for(self, finishing: Sequence[Transition]) -> ClaimRequest | None:
        return ClaimRequest(mch_id=self.mch_id, limit=2, lease_seconds=60)

    def claimed(self, request: ClaimRequest, result: ClaimResult | None) -> None:
        self.reports.append(result)


async def test_a_round_claims_the_next_payouts_with_its_outcomes(bench: Bench) -> None:
    [first] = _claimed(bench, 1)
    for openid in bench.users[1:3]:
        bench.add_payout(openid)
    refill = RecordingRefill(bench.mch_id)
    committer = GroupCommitter(bench.store, refill=refill)

    moved = await committer.transition(
        Transition(first.id, P.SENDING, P.SENT, fields={"send_listid": "1"})
    )

    assert moved is True
    [report] = refill.reports
    assert report is not None
    assert sorted(p.re_openid for p in report.claimed) == sorted(bench.users[1:3])
    assert {bench.store.get_payout(p.id).state for p in report.claimed} == {P.SENDING}


async def test_a_failed_round_claims_nothing_and_says_so(bench: Bench) -> None:
    first, second = _claimed(bench, 2)
    bench.add_payout(bench.users[2])
    refill = RecordingRefill(bench.mch_id)
    committer = GroupCommitter(bench.store, refill=refill)

    good, bad = await asyncio.gather(
        committer.transition(Transition(first.id, P.SENDING, P.SENT, fields={"send_listid": "1"})),
        committer.transition(Transition(second.id, P.SENDING, P.SENDING)),
        return_exceptions=True,
    )

    assert good is True
    assert isinstance(bad, IllegalTransitionError)
    # The runner gets its reserved workers back; the waiting payout stays for a later claim.
    assert refill.reports == [None]
    assert bench.store.find_payouts([P.PLANNED])[0].re_openid == bench.users[2]


class ThreadNotingStore(LedgerStore):
    """Notes on which thread, and whether waiting for the write lock, each round ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rounds: list[tuple[int, bool]] = []

    def transition_many(
        self, transitions: Sequence[Transition], *, wait: bool = True
    ) -> list[bool]:
        self.rounds.append((threading.get_ident(), wait))
        return super().transition_many(transitions, wait=wait)


def _sent(payout: Payout) -> Transition:
    return Transition(payout.id, P.SENDING, P.SENT, fields={"send_listid": str(payout.id)})


async def test_on_sqlite_an_inline_round_runs_on_the_loop_and_waits_for_a_held_lock_on_a_thread(
    bench: Bench,
) -> None:
    store = ThreadNotingStore(bench.store.engine, clock=bench.clock)
    committer = GroupCommitter(store, inline=True)
    first, second = _claimed(bench, 2)
    loop_thread = threading.get_ident()

    assert await committer.transition(_sent(first)) is True
    assert store.rounds == [(loop_thread, False)]

    # Another process holds the write lock: the loop must not stall for it.
    database = bench.store.engine.url.database
    assert database is not None
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.create_task(committer.transition(_sent(second)))
        for _ in range(20):  # the loop keeps turning while the round waits
            await asyncio.sleep(0.01)
        assert not waiting.done()
        other.execute("ROLLBACK")
        assert await waiting is True
    finally:
        other.close()

    # Tried on the loop without waiting, then waited for on a thread of its own.
    assert store.rounds[1] == (loop_thread, False)
    assert store.rounds[2][0] != loop_thread
    assert store.rounds[2][1] is True
    assert {bench.store.get_payout(p.id).state for p in (first, second)} == {P.SENT}
    assert [(e.kind, e.to_state) for e in bench.store.events(second.id)] == [
        ("claim", P.SENDING),
        ("transition", P.SENT),
    ]


def test_rounds_run_inline_only_on_sqlite(ledger_url: str) -> None:
    upgrade(ledger_url)
    with LedgerStore.open(ledger_url) as store:
        on_sqlite = store.engine.dialect.name == "sqlite"
        # PostgreSQL's rounds wait on the network: on the loop they would stall it.
        assert GroupCommitter(store, inline=True).inline is on_sqlite
        assert GroupCommitter(store).inline is False
