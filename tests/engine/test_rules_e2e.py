"""End to end: `hongbao rules serve` in a child process, the simulator served over mutual TLS.

500 payments are made through the simulator's `POST /__sim/pay`, some below every threshold,
some in an app; their notifications are delivered 3 to 5 times each (some copies at once), and a
batch goes while the rule server is killed with SIGKILL and started again, delivered by WeChat's
resend schedule (compressed). Then the simulator's ledger — what was really paid — must show
exactly one red packet per qualifying payment and rule, none for any other payment, and the
budget and the per-customer limits kept.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import func, select

from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.ledger.schema import payouts
from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.sim.server import CLI_COMMAND, SimServer
from hongbao.sim.state import MerchantSettings

pytestmark = pytest.mark.slow

PAYMENTS = 500
RESTART_BATCH = 80
"""Payments delivered by the resend schedule around the kill (half before it, half while down)."""
SCALE = 0.02
"""WeChat's resend intervals × this: 15 s become 0.3 s, 3 min become 3.6 s."""

# (name, threshold in fen, amount in fen, budget in fen, per-customer limit, daily limit);
# the amounts are distinct so that each packet in the simulator's ledger names its rule.
EVERY = ("every", 10_000, 188, 10_000_000, None, None)
CAPPED = ("capped", 30_000, 250, 2_000, 1, None)
DAILY = ("daily", 20_000, 120, 10_000_000, None, 2)
RULES = (EVERY, CAPPED, DAILY)


@dataclass(frozen=True)
class Shop:
    """The simulated merchant, its users and the rule server's configuration."""

    server: SimServer
    creds: MerchantCredentials
    config: Path
    ledger_url: str
    oa_users: list[str]
    mini_users: list[str]
    app_users: list[str]


@dataclass(frozen=True)
class Paid:
    """One payment made through the simulator."""

    transaction_id: str
    appid: str
    openid: str
    total_fee: int


def _rule_table(rule: tuple[str, int, int, int, int | None, int | None]) -> str:
    name, threshold, amount, budget, limit, daily = rule
    lines = [
        f"[rules.{name}]",
        'merchant = "shop"',
        f"min_total_fee = {threshold}",
        f'amount = "{amount / 100:.2f}"',
        'send_name = "Acme"',
        'wishing = "Thank you!"',
        f'act_name = "Rule {name}"',
        'remark = "End to end"',
        f'budget = "{budget / 100:.2f}"',
    ]
    if limit is not None:
        lines.append(f"per_customer_limit = {limit}")
    if daily is not None:
        lines.append(f"per_customer_daily_limit = {daily}")
    return "\n".join(lines) + "\n"


def _write_config(folder: Path, server: SimServer, creds: MerchantCredentials, url: str) -> Path:
    (folder / "api_key").write_text(creds.api_key, "ascii")
    (folder / "cert.pem").write_bytes(creds.cert_pem)
    (folder / "key.pem").write_bytes(creds.key_pem)
    config = folder / "hongbao.toml"
    config.write_text(
        f'[ledger]\nurl = "{url}"\n\n'
        "[merchants.shop]\n"
        f'mch_id = "{creds.mch_id}"\n'
        f'appid = "{creds.appid}"\n'
        f'mini_appid = "{creds.mini_appid}"\n'
        f'app_appids = ["{creds.app_appid}"]\n'
        f'base_url = "{server.url}"\n'
        f'ca_bundle = "{server.ca_path}"\n'
        'api_key_file = "api_key"\ncert_pem = "cert.pem"\nkey_pem = "key.pem"\n'
        "rate_per_minute = 60000\nconcurrency = 16\nlease_seconds = 3\n"
        'per_user_daily_count = 1000\nper_user_daily_amount = "10000"\n\n'
        + "\n".join(_rule_table(rule) for rule in RULES),
        "utf-8",
    )
    return config


@pytest.fixture
def shop(ledger_url: str, tmp_path: Path) -> Iterator[Shop]:
    sim = Simulator(seed=20240315)
    creds = sim.create_merchant(
        MerchantSettings(rate_per_minute=60_000, per_user_count=1_000, per_user_amount=10_000_000)
    )
    upgrade(ledger_url)
    with SimServer(sim) as server:
        yield Shop(
            server=server,
            creds=creds,
            config=_write_config(tmp_path, server, creds, ledger_url),
            ledger_url=ledger_url,
            oa_users=sim.add_users(creds.appid, 60),
            mini_users=sim.add_users(creds.mini_appid, 20),
            app_users=sim.add_users(creds.app_appid, 10),
        )
    sim.close()


class RuleServer:
    """`hongbao rules serve` in a child process, which can be killed and started again."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.port = 0
        self._log = log
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    def start(self) -> str:
        """Start the server (on the same port as before, if any); returns its notify URL."""
        self._stderr = self._log.open("a", encoding="utf-8")
        self._process = subprocess.Popen(
            [*CLI_COMMAND, "rules", "serve", "--port", str(self.port), "-c", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._process.stdout is not None
        url = self._process.stdout.readline().strip()
        assert url.startswith("http://"), self._log.read_text("utf-8")
        self.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        return url

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as in a crash."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: the graceful stop."""
        self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> None:
        if self._process is None:
            return
        self._process.send_signal(how)
        self._process.wait(30)
        if self._process.stdout is not None:
            self._process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
        self._process = None


def _plan(shop: Shop, rng: random.Random) -> list[tuple[str, str, int]]:
    """(appid, openid, total_fee) of each payment: 70 % Official Account, 20 % mini program,
    10 % app; a quarter below every threshold."""
    creds = shop.creds
    planned = []
    for _ in range(PAYMENTS):
        kind = rng.random()
        if kind < 0.7:
            appid, openid = creds.appid, rng.choice(shop.oa_users)
        elif kind < 0.9:
            appid, openid = creds.mini_appid, rng.choice(shop.mini_users)
        else:
            appid, openid = creds.app_appid, rng.choice(shop.app_users)
        fee = rng.randrange(100, 10_000) if rng.random() < 0.25 else rng.randrange(10_000, 60_000)
        planned.append((appid, openid, fee))
    return planned


async def _pay(
    http: httpx.AsyncClient, shop: Shop, notify_url: str, orders: list[dict[str, Any]]
) -> list[Paid]:
    async def one(order: dict[str, Any]) -> Paid:
        body = {"mch_id": shop.creds.mch_id, "notify_url": notify_url, **order}
        answer = await http.post(f"{shop.server.url}/__sim/pay", json=body)
        assert answer.status_code == 201, answer.text
        tx = answer.json()["transaction_id"]
        return Paid(tx, order["appid"], order["openid"], order["total_fee"])

    return list(await asyncio.gather(*(one(order) for order in orders)))


def _duplicated(rng: random.Random, planned: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [
        {
            "appid": appid,
            "openid": openid,
            "total_fee": fee,
            "duplicates": rng.randint(3, 5),
            "concurrent": rng.random() < 0.5,
        }
        for appid, openid, fee in planned
    ]


def _scheduled(planned: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [
        {"appid": appid, "openid": openid, "total_fee": fee, "schedule_scale": SCALE}
        for appid, openid, fee in planned
    ]


def _wait(condition: Any, what: str, seconds: float = 180.0) -> None:
    # A bound on liveness, not on speed: generous, so that a loaded CI machine does not fail it.
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.1)


def _open_payouts(url: str) -> int:
    with LedgerStore.open(url) as store, store.engine.connect() as conn:
        query = select(func.count()).where(payouts.c.state != PayoutState.SENT)
        return int(conn.execute(query).scalar_one())


async def test_every_qualifying_payment_earns_exactly_one_packet_per_rule(
    shop: Shop, tmp_path: Path
) -> None:
    rng = random.Random(7)
    planned = _plan(shop, rng)
    first, around, last = planned[:220], planned[220 : 220 + RESTART_BATCH], planned[300:]
    server = RuleServer(shop.config, tmp_path / "rules-serve.log")
    url = server.start()
    context = ssl.create_default_context(cafile=str(shop.server.ca_path))
    try:
        async with httpx.AsyncClient(verify=context, timeout=30) as http:
            paid = await _pay(http, shop, url, _duplicated(rng, first))
            half = RESTART_BATCH // 2
            paid += await _pay(http, shop, url, _scheduled(around[:half]))
            await asyncio.to_thread(server.kill)  # deliveries of that batch are in flight
            paid += await _pay(http, shop, url, _scheduled(around[half:]))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start)
            paid += await _pay(http, shop, url, _duplicated(rng, last))
        payments = shop.server.sim.payments
        await asyncio.to_thread(
            _wait, lambda: all(payments.get(p.transaction_id).done for p in paid), "delivery"
        )
        await asyncio.to_thread(
            _wait, lambda: _open_payouts(shop.ledger_url) == 0, "sending every payout"
        )
    finally:
        await asyncio.to_thread(server.stop)

    records = [payments.get(p.transaction_id) for p in paid]
    assert len(paid) == PAYMENTS
    assert all(record.acknowledged for record in records)
    duplicated = [r for r in records if r.order.duplicates is not None]
    assert all(len(r.deliveries) == r.order.duplicates for r in duplicated)
    assert {len(r.deliveries) for r in duplicated} == {3, 4, 5}
    assert any(r.order.concurrent for r in duplicated)
    rescheduled = [r for r in records if r.order.duplicates is None]
    assert any(len(r.deliveries) > 1 for r in rescheduled), "no delivery met the restart"

    # What was really paid, each packet traced to its payment through its bill number.
    _, sim_records = shop.server.sim.state.ledger(shop.creds.mch_id)
    assert {r.status for r in sim_records} == {"SENT"}
    by_tx = {p.transaction_id: p for p in paid}
    given: Counter[tuple[str, str]] = Counter()
    with LedgerStore.open(shop.ledger_url) as store:
        for record in sim_records:
            payout = store.find_payout_by_bill(shop.creds.mch_id, record.mch_billno)
            assert payout is not None, f"bill {record.mch_billno} is not in the ledger"
            _, rule, tx = payout.natural_key.split(":")
            payment = by_tx[tx]
            api = "sendredpack" if payment.appid == shop.creds.appid else "sendminiprogramhb"
            assert (record.re_openid, record.api) == (payment.openid, api)
            amount = {name: fen for name, _, fen, *_ in RULES}[rule]
            assert record.total_amount == amount
            given[(rule, tx)] += 1
    assert max(given.values()) == 1, "a payment earned two packets from one rule"

    rewardable = [p for p in paid if p.appid != shop.creds.app_appid]
    every = {p.transaction_id for p in rewardable if p.total_fee >= EVERY[1]}
    assert {tx for rule, tx in given if rule == "every"} == every

    daily_eligible = Counter(p.openid for p in rewardable if p.total_fee >= DAILY[1])
    daily_given = Counter(by_tx[tx].openid for rule, tx in given if rule == "daily")
    assert daily_given == Counter({o: min(n, DAILY[5] or 0) for o, n in daily_eligible.items()})
    assert all(by_tx[tx].total_fee >= DAILY[1] for rule, tx in given if rule == "daily")

    capped = [by_tx[tx] for rule, tx in given if rule == "capped"]
    capped_customers = {p.openid for p in rewardable if p.total_fee >= CAPPED[1]}
    assert all(p.total_fee >= CAPPED[1] and p.appid != shop.creds.app_appid for p in capped)
    assert max(Counter(p.openid for p in capped).values()) == 1
    assert len(capped) == min(len(capped_customers), CAPPED[3] // CAPPED[2])
    assert len(capped) * CAPPED[2] <= CAPPED[3]

    assert not any(by_tx[tx].appid == shop.creds.app_appid for _, tx in given)
    assert not any(by_tx[tx].total_fee < EVERY[1] for _, tx in given)
