"""Helpers of the scale-out tests: a served simulator's merchant in a configuration file, a
migrated PostgreSQL ledger with the job tables, worker processes, and the simulator's truth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from hongbao.engine.campaign import create_campaign, plan_campaign
from hongbao.engine.config import load_config
from hongbao.engine.distributed import install_schema
from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.ledger.schema import payout_events
from hongbao.sim.entities import ISSUED
from hongbao.sim.server import SimServer
from hongbao.sim.state import MerchantSettings
from tests.engine.enginekit import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
HONGBAO = str(Path(sys.executable).parent / "hongbao")
MERCHANT = "shop"


@dataclass
class Setup:
    """A simulated merchant, its configuration file, and a planned campaign in the ledger."""

    server: SimServer
    config: Path
    store: LedgerStore
    mch_id: str
    campaign_id: int
    openids: list[str]
    amounts: dict[str, int]

    def issued(self) -> Counter[str]:
        """Packets the simulator really issued, per openid (the ground truth)."""
        _, records = self.server.sim.state.ledger(self.mch_id)
        return Counter(r.re_openid for r in records if r.status in ISSUED)

    def issued_amounts(self) -> dict[str, int]:
        _, records = self.server.sim.state.ledger(self.mch_id)
        return {r.re_openid: r.total_amount for r in records if r.status in ISSUED}

    def sent(self) -> int:
        return self.store.totals_by_state(self.campaign_id)[PayoutState.SENT].count

    def event_kinds(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(payout_events.c.kind, func.count()).group_by(payout_events.c.kind)
            ).all()
        return {str(kind): int(count) for kind, count in rows}

    def err_codes(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(payout_events.c.err_code, func.count())
                .where(payout_events.c.err_code.is_not(None))
                .group_by(payout_events.c.err_code)
            ).all()
        return {str(code): int(count) for code, count in rows}


def setup(
    server: SimServer,
    tmp: Path,
    pg_url: str,
    *,
    payouts: int,
    rate_per_minute: int,
    sim_rate_per_minute: int,
    seed: int,
) -> Setup:
    """A merchant with `payouts` users, a configuration file, a migrated ledger with the job
    tables, and a planned campaign paying each user 1.00–1.99 yuan."""
    sim = server.sim
    creds = sim.create_merchant(
        MerchantSettings(
            balance_fen=10**9,
            rate_per_minute=sim_rate_per_minute,
            query_rate_per_minute=10**6,
        )
    )
    (tmp / "cert.pem").write_bytes(creds.cert_pem)
    (tmp / "key.pem").write_bytes(creds.key_pem)
    config = tmp / "hongbao.toml"
    config.write_text(
        f"""[ledger]
url = "{pg_url}"

[merchants.{MERCHANT}]
mch_id = "{creds.mch_id}"
api_key = "{creds.api_key}"
appid = "{creds.appid}"
mini_appid = "{creds.mini_appid}"
cert_pem = "cert.pem"
key_pem = "key.pem"
base_url = "{server.url}"
ca_bundle = "{server.ca_path}"
connect_timeout = 1.0
read_timeout = 1.5
rate_per_minute = {rate_per_minute}
query_rate_per_minute = 100000
lease_seconds = 8.0
""",
        encoding="utf-8",
    )
    upgrade(pg_url)
    store = LedgerStore.open(pg_url)
    install_schema(store.engine)
    openids = sim.add_users(creds.appid, payouts)
    amounts = {openid: 100 + (seed + n) % 100 for n, openid in enumerate(openids)}
    source = tmp / "openids.csv"
    source.write_text("".join(f"{o},{amounts[o] / 100:.2f}\n" for o in openids), encoding="utf-8")
    profile = load_config(config).profile(MERCHANT)
    campaign = create_campaign(store, profile, name="scale-out", template=TEMPLATE, source=source)
    assert plan_campaign(store, profile, campaign.id).good == payouts
    return Setup(server, config, store, creds.mch_id, campaign.id, openids, amounts)


def start_worker(config: Path, log: Path, *, cli: bool = False) -> subprocess.Popen[bytes]:
    """A worker process: `hongbao worker`, or the quick-timed `worker_proc` for chaos."""
    command = (
        [HONGBAO, "worker", "--concurrency", "16", "--stalled-after", "3", "--config", str(config)]
        if cli
        else [sys.executable, "-m", "tests.distributed.worker_proc", str(config)]
    )
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def start_run(config: Path, campaign_id: int, out: Path) -> subprocess.Popen[bytes]:
    """`hongbao campaign run ID --distributed --json`: defers the jobs and follows them."""
    command = [
        HONGBAO, "campaign", "run", str(campaign_id), "--distributed", "--json",
        "--config", str(config),
    ]  # fmt: skip
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        return subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr)


def run_summary(out: Path) -> dict[str, object]:
    """The JSON summary `start_run` printed."""
    summary: dict[str, object] = json.loads(out.read_text())
    return summary


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the workers still running (SIGTERM: they finish or abort their jobs)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
