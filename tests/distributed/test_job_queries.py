"""What the scale-out dispatcher reads in procrastinate's own tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from hongbao.engine.distributed import TASK_NAME, defer_campaign, install_schema
from hongbao.engine.job_queries import (
    active_jobs,
    held_payout_ids,
    jobs_installed,
    worker_progress,
)
from hongbao.ledger.db import read_transaction
from tests.engine.enginekit import Bench, make_bench

pytestmark = pytest.mark.postgres


@pytest.fixture
def bench(pg_url: str, tmp_path: Path) -> Iterator[Bench]:
    bench = make_bench(pg_url, tmp_path, users=6)
    yield bench
    bench.store.close()
    bench.sim.close()


def test_a_ledger_no_worker_used_has_no_job_tables_and_no_progress(bench: Bench) -> None:
    engine = bench.store.engine
    campaign = bench.campaign()
    assert not read_transaction(engine, jobs_installed)
    assert worker_progress(engine, TASK_NAME, campaign.id) == []

    assert install_schema(engine)

    assert read_transaction(engine, jobs_installed)


def test_deferred_jobs_hold_the_campaigns_payouts_until_they_finish(bench: Bench) -> None:
    engine = bench.store.engine
    install_schema(engine)
    campaign = bench.campaign()
    other = bench.campaign(name="other")

    deferral = defer_campaign(bench.store, campaign.id, chunk_size=2, clock=bench.clock)

    ids = {payout.id for payout in bench.store.iter_payouts(campaign.id)}
    held = read_transaction(engine, lambda conn: held_payout_ids(conn, TASK_NAME, campaign.id))
    assert held == ids
    assert active_jobs(engine, TASK_NAME, campaign.id) == deferral.jobs >= 3
    assert active_jobs(engine, TASK_NAME, other.id) == 0
    assert active_jobs(engine, "another_task", campaign.id) == 0
    assert worker_progress(engine, TASK_NAME, campaign.id) == []  # none ran yet

    with engine.begin() as conn:
        conn.execute(text("UPDATE procrastinate_jobs SET status = 'succeeded'"))

    assert read_transaction(engine, lambda c: held_payout_ids(c, TASK_NAME, campaign.id)) == set()
    assert active_jobs(engine, TASK_NAME, campaign.id) == 0
    [progress] = worker_progress(engine, TASK_NAME, campaign.id)
    assert (progress.worker_id, progress.running, progress.finished) == (None, 0, deferral.jobs)
    assert (progress.payouts, progress.settled) == (len(ids), 0)


def test_a_payout_held_by_several_jobs_counts_once(bench: Bench) -> None:
    engine = bench.store.engine
    install_schema(engine)
    campaign = bench.campaign()
    finish = text("UPDATE procrastinate_jobs SET status = 'succeeded'")
    # Jobs that finished without settling their payouts get successors holding the same ones.
    for _ in range(3):
        defer_campaign(bench.store, campaign.id, chunk_size=2, clock=bench.clock)
        with engine.begin() as conn:
            conn.execute(finish)

    [progress] = worker_progress(engine, TASK_NAME, campaign.id)

    assert (progress.payouts, progress.settled) == (len(bench.users), 0)
