"""Scale-out end to end, against the real PostgreSQL and the simulator served over mutual TLS:
worker processes, `hongbao campaign run --distributed`, a `kill -9`, and a shared rate cap."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hongbao.ledger import PayoutState
from hongbao.sim.entities import ISSUED
from hongbao.sim.faults import parse_fault
from hongbao.sim.server import SimServer
from tests.distributed.distkit import Setup, run_summary, setup, start_run, start_worker, stop
from tests.sim_served.servedkit import wall_clock_server

pytestmark = [pytest.mark.postgres, pytest.mark.served, pytest.mark.slow]

SEED = 20240316
OPEN = (PayoutState.PLANNED, PayoutState.DEFERRED, PayoutState.SENDING, PayoutState.UNKNOWN)
FAULTS: list[dict[str, Any]] = [
    {"action": "error", "err_code": "SYSTEMERROR", "probability": 0.03},
    {"action": "http_status", "status": 502, "probability": 0.03},
    {"action": "hang", "seconds": 3.0, "probability": 0.01},
    {"action": "pay_then_drop", "probability": 0.03},
]


@pytest.fixture
def served() -> Iterator[SimServer]:
    """A simulator on the wall clock (its rate window must move), served over mutual TLS."""
    with wall_clock_server(SEED) as server:
        yield server


def _wait_for(setup: Setup, sent: int, workers: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 120
    while setup.sent() < sent:
        assert time.monotonic() < deadline, log.read_text()
        assert all(w.poll() is None for w in workers), log.read_text()
        time.sleep(0.05)


def _assert_paid_exactly_once(setup: Setup) -> None:
    assert setup.issued() == Counter(setup.openids)
    assert setup.issued_amounts() == setup.amounts
    totals = setup.store.totals_by_state(setup.campaign_id)
    assert [totals[state].count for state in OPEN] == [0] * len(OPEN)
    assert totals[PayoutState.SENT].count == len(setup.openids)
    assert totals[PayoutState.SENT].amount_fen == sum(setup.amounts.values())


def test_three_workers_and_a_kill_9_pay_every_openid_exactly_once(
    served: SimServer, pg_url: str, tmp_path: Path
) -> None:
    payouts = 3000
    setup_ = setup(
        served,
        tmp_path,
        pg_url,
        payouts=payouts,
        rate_per_minute=120_000,
        sim_rate_per_minute=10**6,
        seed=SEED,
    )
    for n, fault in enumerate(FAULTS):
        served.sim.faults.add(parse_fault({**fault, "endpoint": "*", "seed": SEED + n}))
    log = tmp_path / "workers.log"
    workers = [start_worker(setup_.config, log) for _ in range(3)]
    out = tmp_path / "run.json"
    try:
        run = start_run(setup_.config, setup_.campaign_id, out)
        _wait_for(setup_, int(payouts * random.Random(SEED).uniform(0.2, 0.5)), workers, log)
        workers[0].kill()  # SIGKILL, mid-run: its jobs and the payouts they hold are left
        workers[0].wait()
        workers.append(start_worker(setup_.config, log))
        assert run.wait(timeout=150) == 0, out.with_suffix(".err").read_text() + log.read_text()
    finally:
        stop(workers)
    summary = run_summary(out)
    assert (summary["stopped"], summary["state"]) == ("completed", "COMPLETED")
    _assert_paid_exactly_once(setup_)
    kinds = setup_.event_kinds()
    # The killed worker left payouts in flight; the jobs that ran again resolved them first.
    assert kinds["recover"] > 0
    assert kinds["query"] > 0
    setup_.store.close()


def _max_in_a_minute(times: list[float]) -> int:
    window: deque[float] = deque()
    most = 0
    for stamp in sorted(times):
        window.append(stamp)
        while window[0] <= stamp - 60.0:
            window.popleft()
        most = max(most, len(window))
    return most


def test_three_workers_share_the_merchants_rate_cap(
    served: SimServer, pg_url: str, tmp_path: Path
) -> None:
    cap = 2400
    payouts = cap + cap // 10  # more than a minute's worth at the cap
    setup_ = setup(
        served,
        tmp_path,
        pg_url,
        payouts=payouts,
        rate_per_minute=cap,
        sim_rate_per_minute=cap,
        seed=SEED,
    )
    # Dropped answers are retried within the call: WeChat counts those calls too, so they
    # must take slots of the shared pace like the first attempts.
    served.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "pay_then_drop", "probability": 0.05})
    )
    log = tmp_path / "workers.log"
    workers = [start_worker(setup_.config, log, cli=True) for _ in range(3)]
    out = tmp_path / "run.json"
    try:
        run = start_run(setup_.config, setup_.campaign_id, out)
        assert run.wait(timeout=150) == 0, out.with_suffix(".err").read_text() + log.read_text()
    finally:
        stop(workers)
    assert run_summary(out)["stopped"] == "completed"
    _assert_paid_exactly_once(setup_)
    # No call was refused for the rate, and no 60 s window held more sends than the cap.
    assert "FREQ_LIMIT" not in setup_.err_codes()
    _, records = served.sim.state.ledger(setup_.mch_id)
    sent_at = [r.send_time.timestamp() for r in records if r.status in ISSUED]
    assert len(sent_at) == payouts
    assert _max_in_a_minute(sent_at) <= cap
    setup_.store.close()
