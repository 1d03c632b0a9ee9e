"""Chaos: a campaign of 2,000 payouts against the simulator served over mutual TLS, with faults
injected on every endpoint, its runner process killed with SIGKILL at random moments and
restarted; afterwards the simulator's ledger (the ground truth) must show every intended openid
paid exactly once, our ledger nothing unresolved, and `reconcile` no mismatch."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hongbao.engine.campaign import create_campaign, plan_campaign
from hongbao.engine.tracker import reconcile
from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.ledger.schema import payout_events
from hongbao.sim.entities import ISSUED
from hongbao.sim.faults import parse_fault
from hongbao.sim.server import SimServer
from tests.engine.chaos_runner import CHAOS_RUN, chaos_config, profile_from
from tests.engine.enginekit import TEMPLATE
from tests.sim_served.servedkit import wall_clock_server

PAYOUTS = 2000
KILLS = 3
READ_TIMEOUT = 1.5
ROOT = Path(__file__).resolve().parents[2]
SEED = 20240315
FAULTS: list[dict[str, Any]] = [
    {"action": "error", "err_code": "SYSTEMERROR", "probability": 0.03},
    {"action": "http_status", "status": 502, "probability": 0.03},
    {"action": "hang", "seconds": READ_TIMEOUT * 2, "probability": 0.01},
    {"action": "pay_then_drop", "probability": 0.03},
]
OPEN = (PayoutState.PLANNED, PayoutState.DEFERRED, PayoutState.SENDING, PayoutState.UNKNOWN)


@pytest.fixture
def served() -> Iterator[SimServer]:
    """A simulator on the wall clock (its rate window must move), served over mutual TLS."""
    with wall_clock_server(SEED) as server:
        yield server


def _start(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.engine.chaos_runner", str(config_file)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _sent(store: LedgerStore, campaign_id: int) -> int:
    return store.totals_by_state(campaign_id)[PayoutState.SENT].count


def test_kill_9_under_faults_pays_every_openid_exactly_once(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    config = chaos_config(served, tmp_path, ledger_url, read_timeout=READ_TIMEOUT)
    profile = profile_from(config)
    sim = served.sim
    openids = sim.add_users(config["appid"], PAYOUTS)
    amounts = {openid: 100 + rng.randrange(100) for openid in openids}
    source = tmp_path / "openids.csv"
    source.write_text("".join(f"{o},{amounts[o] / 100:.2f}\n" for o in openids), encoding="utf-8")
    upgrade(ledger_url)
    store = LedgerStore.open(ledger_url)
    campaign = create_campaign(store, profile, name="chaos", template=TEMPLATE, source=source)
    assert plan_campaign(store, profile, campaign.id).good == PAYOUTS
    config["campaign_id"] = campaign.id
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    for n, fault in enumerate(FAULTS):
        sim.faults.add(parse_fault({**fault, "endpoint": "*", "seed": SEED + n}))

    # Kill at random points of the campaign's progress, so each kill lands mid-run.
    targets = sorted(rng.uniform(0.1, 0.8) * PAYOUTS for _ in range(KILLS))
    log = tmp_path / "runner.log"
    killed = 0
    for target in targets:
        process = _start(config_file, log)
        deadline = time.monotonic() + 120
        while _sent(store, campaign.id) < target and process.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert process.poll() is None, f"the runner ended before its kill:\n{log.read_text()}"
        time.sleep(rng.uniform(0, 0.05))
        process.kill()
        process.wait()
        killed += 1

    final = _start(config_file, log)
    assert final.wait(timeout=180) == 0, log.read_text()
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    assert (killed, summary["stopped"]) == (KILLS, "completed")

    # The ground truth: every intended openid paid exactly once, with its amount.
    _, records = sim.state.ledger(config["mch_id"])
    paid = [record for record in records if record.status in ISSUED]
    assert Counter(record.re_openid for record in paid) == Counter(openids)
    assert {record.re_openid: record.total_amount for record in paid} == amounts
    totals = store.totals_by_state(campaign.id)
    assert [totals[state].count for state in OPEN] == [0] * len(OPEN)
    assert totals[PayoutState.SENT].count == PAYOUTS
    assert totals[PayoutState.SENT].amount_fen == sum(amounts.values())

    # The run really went through crashes and unknown outcomes, and resolved them.
    with store.engine.connect() as conn:
        kinds: dict[str, int] = dict(
            conn.execute(
                select(payout_events.c.kind, func.count()).group_by(payout_events.c.kind)
            ).all()
        )
    assert kinds["recover"] > 0
    assert kinds["query"] > 0

    sim.faults.clear()
    report = asyncio.run(reconcile(store, profile, campaign_id=campaign.id, settings=CHAOS_RUN))
    assert report.mismatches == []
    assert report.ledger_issued == report.wechat_issued
    assert report.checked == PAYOUTS
    store.close()
