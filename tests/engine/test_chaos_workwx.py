"""Chaos for WeCom red packets: a year-end campaign of 1,000 employees of a corp, sent with
sendworkwxredpack over mutual TLS under SYSTEMERROR, HTTP 502 and pay-then-drop on every
endpoint, its runner killed with SIGKILL twice and restarted. Afterwards the simulator's ledger
shows every employee paid exactly once; tracking (queryworkwxredpack) sees the packets opened
in WeCom as RECEIVED and the rest, a day later, as REFUNDED; `reconcile` finds no mismatch."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hongbao.engine.campaign import Template, create_campaign, plan_campaign
from hongbao.engine.tracker import reconcile, track
from hongbao.ledger import LedgerStore, PayoutState, SendApi, upgrade
from hongbao.sim.app import Simulator
from hongbao.sim.entities import ISSUED, Api
from hongbao.sim.faults import parse_fault
from hongbao.sim.server import SimServer
from tests.engine.chaos_runner import CHAOS_RUN, chaos_config, profile_from

EMPLOYEES = 1000
KILLS = 2
READ_TIMEOUT = 1.5
ROOT = Path(__file__).resolve().parents[2]
SEED = 20250124
FAULTS: list[dict[str, Any]] = [
    {"action": "error", "err_code": "SYSTEMERROR", "probability": 0.04},
    {"action": "http_status", "status": 502, "probability": 0.02},
    {"action": "pay_then_drop", "probability": 0.04},
]
OPEN = (PayoutState.PLANNED, PayoutState.DEFERRED, PayoutState.SENDING, PayoutState.UNKNOWN)
TEMPLATE = Template(
    api=SendApi.SENDWORKWXREDPACK,
    amount_fen=888,
    sender_name="HR Team",
    wishing="感谢您一年来的辛勤付出，新春快乐！",
    act_name="2024年会红包",
    remark="年会抽奖",
)


class ShiftedClock:
    """The wall clock (the rate window must move), which the test can also move a day on."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def served() -> Iterator[tuple[SimServer, ShiftedClock]]:
    clock = ShiftedClock()
    sim = Simulator(clock=clock, seed=SEED)
    with SimServer(sim) as server:
        yield server, clock
    sim.close()


def _start(config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.engine.chaos_runner", str(config_file)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_a_wecom_campaign_under_kill_9_and_faults_pays_each_employee_once_and_is_tracked(
    served: tuple[SimServer, ShiftedClock], sqlite_url: str, tmp_path: Path
) -> None:
    server, clock = served
    rng = random.Random(SEED)
    config = chaos_config(server, tmp_path, sqlite_url, read_timeout=READ_TIMEOUT, wecom=True)
    profile = profile_from(config)
    sim = server.sim
    employees = sim.add_users(config["wecom_corpid"], EMPLOYEES)
    source = tmp_path / "employees.txt"
    source.write_text("".join(f"{openid}\n" for openid in employees), encoding="utf-8")
    upgrade(sqlite_url)
    store = LedgerStore.open(sqlite_url)
    campaign = create_campaign(store, profile, name="nianhui", template=TEMPLATE, source=source)
    assert plan_campaign(store, profile, campaign.id).good == EMPLOYEES
    [payout] = store.find_payouts([PayoutState.PLANNED], campaign_id=campaign.id, limit=1)
    # The frozen parameters hold the workwx_sign, never the secret that made it.
    assert len(str(payout.params["workwx_sign"])) == 32
    assert config["wecom_secret"] not in json.dumps(payout.params)
    config["campaign_id"] = campaign.id
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    for n, fault in enumerate(FAULTS):
        sim.faults.add(parse_fault({**fault, "endpoint": "*", "seed": SEED + n}))

    log = tmp_path / "runner.log"
    for target in sorted(rng.uniform(0.15, 0.75) * EMPLOYEES for _ in range(KILLS)):
        process = _start(config_file, log)
        deadline = time.monotonic() + 120
        while (
            store.totals_by_state(campaign.id)[PayoutState.SENT].count < target
            and process.poll() is None
        ):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        assert process.poll() is None, f"the runner ended before its kill:\n{log.read_text()}"
        process.kill()
        process.wait()
    final = _start(config_file, log)
    assert final.wait(timeout=180) == 0, log.read_text()
    assert json.loads(log.read_text().strip().splitlines()[-1])["stopped"] == "completed"

    # The ground truth: every employee paid exactly once, all by sendworkwxredpack.
    _, records = sim.state.ledger(config["mch_id"])
    paid = [record for record in records if record.status in ISSUED]
    assert Counter(record.re_openid for record in paid) == Counter(employees)
    assert {record.api for record in records} == {Api.WORKWX.value}
    totals = store.totals_by_state(campaign.id)
    assert [totals[state].count for state in OPEN] == [0] * len(OPEN)
    assert totals[PayoutState.SENT].count == EMPLOYEES

    # 70 % open theirs in WeCom; a day later the rest is refunded. Tracking asks
    # queryworkwxredpack (still under faults: a failed query is simply asked again).
    opened = employees[: EMPLOYEES * 7 // 10]
    bills = {record.re_openid: record.mch_billno for record in paid}
    for openid in opened:
        sim.state.open_packet(config["mch_id"], bills[openid])
    clock.offset = timedelta(hours=25)
    sim.state.run_due()
    received = refunded = 0
    for _ in range(10):
        summary = asyncio.run(track(store, profile, campaign_id=campaign.id, due_only=False))
        received += summary.received
        refunded += summary.refunded
        if received + refunded == EMPLOYEES:
            break
    assert (received, refunded) == (len(opened), EMPLOYEES - len(opened))
    totals = store.totals_by_state(campaign.id)
    assert totals[PayoutState.RECEIVED].count == len(opened)
    assert totals[PayoutState.REFUNDED].count == EMPLOYEES - len(opened)

    sim.faults.clear()
    report = asyncio.run(reconcile(store, profile, campaign_id=campaign.id, settings=CHAOS_RUN))
    assert report.mismatches == []
    assert report.checked == EMPLOYEES
    store.close()
