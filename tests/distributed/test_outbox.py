"""The outbox: a distributed run starts its campaign and defers its jobs in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procrastinate import App
from sqlalchemy import text

from hongbao.engine.distributed import (
    RECIPIENT_LOCKS,
    TASK_NAME,
    conninfo,
    defer_campaign,
    install_schema,
    recipient_lock,
)
from hongbao.ledger import CampaignState, LedgerStore
from tests.engine.enginekit import Bench, make_bench

pytestmark = pytest.mark.postgres


@pytest.fixture
def bench(pg_url: str, tmp_path: Path) -> Iterator[Bench]:
    bench = make_bench(pg_url, tmp_path, users=30)
    assert install_schema(bench.store.engine)
    assert not install_schema(bench.store.engine)
    yield bench
    bench.store.close()
    bench.sim.close()


def _jobs(store: LedgerStore) -> list[Any]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT lock, args, status FROM procrastinate_jobs WHERE task_name = :t "
                    "ORDER BY id"
                ),
                {"t": TASK_NAME},
            ).all()
        )


def test_every_open_payout_gets_one_job_locked_on_its_receiver(bench: Bench) -> None:
    campaign = bench.campaign()
    deferral = defer_campaign(bench.store, campaign.id, chunk_size=4, clock=bench.clock)
    assert bench.store.get_campaign(campaign.id).state is CampaignState.RUNNING
    jobs = _jobs(bench.store)
    assert deferral.jobs == len(jobs)
    assert deferral.payouts == 30
    held = [payout_id for _, args, _ in jobs for payout_id in args["payout_ids"]]
    payouts = {p.id: p for p in bench.store.iter_payouts(campaign.id)}
    assert sorted(held) == sorted(payouts)
    for lock, args, status in jobs:
        assert status == "todo"
        assert args["campaign_id"] == campaign.id
        assert len(args["payout_ids"]) <= 4
        assert {recipient_lock(bench.mch_id, payouts[i].re_openid) for i in args["payout_ids"]} == {
            lock
        }
    # Deferring again finds every open payout held by a job: nothing new.
    assert defer_campaign(bench.store, campaign.id, clock=bench.clock).jobs == 0


def test_one_receiver_has_one_lock_in_every_campaign(bench: Bench) -> None:
    openid = bench.users[0]
    first = bench.campaign([openid], name="first")
    second = bench.campaign([openid], name="second")
    defer_campaign(bench.store, first.id, clock=bench.clock)
    defer_campaign(bench.store, second.id, clock=bench.clock)
    locks = [lock for lock, _, _ in _jobs(bench.store)]
    assert locks == [recipient_lock(bench.mch_id, openid)] * 2
    spread = {recipient_lock(bench.mch_id, user) for user in bench.users}
    assert 1 < len(spread) <= RECIPIENT_LOCKS


def test_a_failed_deferral_leaves_no_job_and_the_campaign_planned(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = bench.campaign()
    configure = App.configure_task
    calls = 0

    def failing(self: App, name: str, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the database went away")
        return configure(self, name, **kwargs)

    monkeypatch.setattr(App, "configure_task", failing)
    with pytest.raises(RuntimeError):
        defer_campaign(bench.store, campaign.id, chunk_size=4, clock=bench.clock)
    assert _jobs(bench.store) == []
    assert bench.store.get_campaign(campaign.id).state is CampaignState.PLANNED


def test_a_paused_campaign_gets_no_jobs(bench: Bench) -> None:
    campaign = bench.campaign()
    defer_campaign(bench.store, campaign.id, clock=bench.clock)
    bench.store.set_campaign_state(campaign.id, CampaignState.RUNNING, CampaignState.PAUSED)
    jobs = len(_jobs(bench.store))
    assert defer_campaign(bench.store, campaign.id, clock=bench.clock).jobs == 0
    assert len(_jobs(bench.store)) == jobs


def test_conninfo_keeps_the_schema_and_refuses_sqlite(pg_url: str) -> None:
    info = conninfo(pg_url)
    assert info.startswith("postgresql://")
    assert "search_path" in info
    with pytest.raises(Exception, match="PostgreSQL"):
        conninfo("sqlite:///ledger.db")
