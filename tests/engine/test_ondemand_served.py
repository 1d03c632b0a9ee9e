"""Payouts on demand against the simulator served over mutual TLS, on SQLite and PostgreSQL:
callers racing on keys from threads and from two processes, a process killed with SIGKILL in
the middle of a send, and a chaos run of 2,000 keys under faults with a `kill -9`. The
simulator's ledger of what it really issued is the ground truth."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hongbao.engine.ondemand import AsyncPayouts, Payouts, on_demand_key
from hongbao.ledger import LedgerStore, PayoutState, Scope, upgrade
from hongbao.sim.entities import ISSUED
from hongbao.sim.faults import parse_fault
from hongbao.sim.server import SimServer
from tests.engine.chaos_runner import CHAOS_RUN, chaos_config, profile_from
from tests.engine.ondemand_caller import PACKET
from tests.sim_served.servedkit import wall_clock_server

pytestmark = pytest.mark.served

P = PayoutState
ROOT = Path(__file__).resolve().parents[2]
SEED = 20261205
READ_TIMEOUT = 1.5


@pytest.fixture
def served() -> Iterator[SimServer]:
    with wall_clock_server(SEED) as server:
        yield server


def _merchant(served: SimServer, tmp: Path, ledger_url: str) -> dict[str, Any]:
    upgrade(ledger_url)
    return chaos_config(served, tmp, ledger_url, read_timeout=READ_TIMEOUT)


def _issued(served: SimServer, mch_id: str) -> Counter[tuple[str, int]]:
    _, records = served.sim.state.ledger(mch_id)
    return Counter((r.re_openid, r.total_amount) for r in records if r.status in ISSUED)


def _callers(tmp: Path, config: dict[str, Any], name: str, **extra: Any) -> subprocess.Popen[bytes]:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({**config, **extra}), encoding="utf-8")
    log = (tmp / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.ondemand_caller", str(path)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _printed(tmp: Path, name: str) -> dict[str, list[str]]:
    lines = (tmp / f"{name}.log").read_text(encoding="utf-8").strip().splitlines()
    result: dict[str, list[str]] = json.loads(lines[-1])
    return result


def test_fifty_threads_paying_one_key_pay_one_packet(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    config = _merchant(served, tmp_path, ledger_url)
    [openid] = served.sim.add_users(config["appid"], 1)

    with (
        # A bare Merchant: the engine's default profile, under its mch_id.
        Payouts.open(ledger_url, profile_from(config).merchant, settings=CHAOS_RUN) as payouts,
        ThreadPoolExecutor(50) as threads,
    ):
        views = list(
            threads.map(lambda _: payouts.pay("order-1:cashback", openid, 123, **PACKET), range(50))
        )
        # A bare Merchant pays at WeChat's default cap, the pace a campaign run could share.
        assert payouts.pace().send.rate_per_minute == 1800

    assert {(v.id, v.bill_no, v.state) for v in views} == {(views[0].id, views[0].bill_no, P.SENT)}
    assert views[0].merchant == config["mch_id"]
    assert _issued(served, config["mch_id"]) == Counter({(openid, 123): 1})


def test_two_processes_racing_on_the_same_keys_pay_each_once(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    config = _merchant(served, tmp_path, ledger_url)
    openids = served.sim.add_users(config["appid"], 6)
    payments: list[tuple[str, str, int]] = [
        (f"k{n}", openid, 100 + n) for n, openid in enumerate(openids)
    ]
    race = {"payments": payments, "callers": 25, "timeout": 30.0}

    processes = [_callers(tmp_path, config, f"p{n}", seed=n, **race) for n in range(2)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]

    for n in range(2):
        seen = _printed(tmp_path, f"p{n}")
        assert {key: set(states) for key, states in seen.items()} == {
            key: {"SENT"} for key, _, _ in payments
        }
    assert _issued(served, config["mch_id"]) == Counter(
        {(openid, amount): 1 for _, openid, amount in payments}
    )
    with LedgerStore.open(ledger_url) as store:
        rows = store.list_payouts(Scope.on_demand(config["mch_id"]))
    assert sorted((r.natural_key, r.state) for r in rows) == sorted(
        (on_demand_key(config["mch_id"], key), P.SENT) for key, _, _ in payments
    )


def test_sigkill_mid_send_then_the_same_key_resolves_the_same_bill(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    config = _merchant(served, tmp_path, ledger_url)
    [openid] = served.sim.add_users(config["appid"], 1)
    # Paid at once, answered late: the process waits for the answer when it dies.
    served.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "delay", "seconds": 30, "count": 1})
    )
    key = on_demand_key(config["mch_id"], "refund:77")
    dying = _callers(
        tmp_path, config, "dying", payments=[("refund:77", openid, 150)], callers=1, timeout=60
    )
    with LedgerStore.open(ledger_url) as store:
        deadline = time.monotonic() + 30
        # SENDING committed, and the request reached WeChat: the answer is what is missing.
        while not _issued(served, config["mch_id"]):
            assert time.monotonic() < deadline
            assert dying.poll() is None
            time.sleep(0.01)
        dying.kill()
        dying.wait()
        found = store.find_payout(key)
        assert found is not None
        assert found.state is P.SENDING

        async def again() -> Any:
            async with AsyncPayouts(store, profile_from(config), settings=CHAOS_RUN) as payouts:
                return await payouts.pay("refund:77", openid, 150, timeout=60, **PACKET)

        from hongbao import eventloop

        view = eventloop.run(again())
        events = [event.kind for event in store.events(view.id)]

    assert (view.id, view.bill_no, view.state) == (found.id, found.mch_billno, P.SENT)
    assert "recover" in events  # taken over once the dead process's lease ran out
    assert _issued(served, config["mch_id"]) == Counter({(openid, 150): 1})


CHAOS_KEYS = 2000
CHAOS_FAULTS: list[dict[str, Any]] = [
    {"action": "error", "err_code": "SYSTEMERROR", "probability": 0.03},
    {"action": "http_status", "status": 502, "probability": 0.03},
    {"action": "pay_then_drop", "probability": 0.03},
]


@pytest.mark.slow
def test_chaos_two_thousand_keys_eight_callers_two_processes_and_a_kill_9(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    config = _merchant(served, tmp_path, ledger_url)
    openids = served.sim.add_users(config["appid"], CHAOS_KEYS)
    payments: list[tuple[str, str, int]] = [
        (f"order-{n}", o, 100 + rng.randrange(100)) for n, o in enumerate(openids)
    ]
    for n, fault in enumerate(CHAOS_FAULTS):
        served.sim.faults.add(parse_fault({**fault, "endpoint": "*", "seed": SEED + n}))
    work = {"payments": payments, "callers": 4, "timeout": 20.0}
    mch_id = config["mch_id"]

    first = _callers(tmp_path, config, "first", seed=1, **work)
    second = _callers(tmp_path, config, "second", seed=2, **work)
    with LedgerStore.open(ledger_url) as store:
        deadline = time.monotonic() + 120
        target = rng.uniform(0.2, 0.6) * CHAOS_KEYS
        while len(store.list_payouts(Scope.on_demand(mch_id), limit=CHAOS_KEYS)) < target:
            assert time.monotonic() < deadline
            assert first.poll() is None
            time.sleep(0.05)
        first.kill()  # kill -9, in the middle of its sends
        first.wait()
        assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()
        # The killed process's caller runs again: every key once more.
        third = _callers(tmp_path, config, "third", seed=3, **work)
        assert third.wait(timeout=300) == 0, (tmp_path / "third.log").read_text()
        served.sim.faults.clear()
        rows = store.list_payouts(Scope.on_demand(mch_id), limit=CHAOS_KEYS * 2)

    # The ground truth: every key paid exactly once, with its amount; the ledger agrees.
    assert _issued(served, mch_id) == Counter({(o, amount): 1 for _, o, amount in payments})
    assert len(rows) == CHAOS_KEYS
    assert Counter(row.state for row in rows) == Counter({P.SENT: CHAOS_KEYS})
    _, records = served.sim.state.ledger(mch_id)
    issued = {r.mch_billno for r in records if r.status in ISSUED}
    assert {row.mch_billno for row in rows} == issued
    seen = _printed(tmp_path, "third")
    assert all(set(states) == {"SENT"} for states in seen.values())
