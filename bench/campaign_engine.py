"""The campaign engine end to end: planning a large file, and sending against the simulator.

Each part runs in a fresh child process, so each peak RSS is its own:

- `plan`: `create_campaign` + `plan_campaign` on an N-line file (default 1,000,000) into a fresh
  SQLite ledger: time, payouts/s, peak RSS;
- `run`: `run_campaign` of M payouts (default 20,000) against the in-process simulator (limits
  raised so that only the engine is measured): payouts/s with SQLite as the ledger.

Prints figures; asserts nothing. Run: `.venv/bin/python bench/campaign_engine.py [--lines N]
[--payouts M]`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from hongbao.api import AsyncClient, Merchant
from hongbao.clock import SystemClock
from hongbao.engine.campaign import Template, create_campaign, plan_campaign
from hongbao.engine.runner import run_campaign
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.sim.app import Simulator
from hongbao.sim.state import MerchantSettings
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.local import AsyncLocalTransport, PeerInfo

TEMPLATE = Template(
    amount_fen=100, send_name="Acme", wishing="Happy New Year", act_name="Spring", remark="Thanks"
)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup() -> tuple[Simulator, MerchantProfile]:
    sim = Simulator(clock=SystemClock(), seed=1)
    limits = MerchantSettings(
        balance_fen=10**12, rate_per_minute=10**8, per_user_count=10**6, merchant_amount=10**12
    )
    creds = sim.create_merchant(limits)
    merchant = Merchant(
        mch_id=creds.mch_id,
        api_key=SecretStr(creds.api_key),
        appid=creds.appid,
        certificate=ClientCertificate.from_pem(creds.cert_pem, creds.key_pem),
    )
    profile = MerchantProfile(
        name="bench", merchant=merchant, rate_per_minute=10**8, query_rate_per_minute=10**8
    )
    return sim, profile


def run_plan(lines: int, tmp: Path) -> None:
    """Create and plan a campaign of `lines` openids; print time and peak memory."""
    _, profile = _setup()
    source = tmp / "users.txt"
    with source.open("w", encoding="ascii") as out:
        for n in range(lines):
            out.write(f"o{n:027d}\n")
    url = f"sqlite:///{tmp / 'plan.db'}"
    upgrade(url)
    with LedgerStore.open(url) as store:
        started = time.perf_counter()
        campaign = create_campaign(store, profile, name="big", template=TEMPLATE, source=source)
        report = plan_campaign(store, profile, campaign.id)
        elapsed = time.perf_counter() - started
    print(
        f"plan: {report.inserted:,} payouts from a {lines:,}-line file in {elapsed:.1f} s "
        f"({report.inserted / elapsed:,.0f} payouts/s), peak RSS {peak_rss_mb():.0f} MB"
    )


async def _send(
    store: LedgerStore, campaign_id: int, profile: MerchantProfile, sim: Simulator
) -> float:
    creds_cert = profile.merchant.certificate
    assert creds_cert is not None
    peer = PeerInfo(cert_der=creds_cert.der)
    client = AsyncClient(profile.merchant, transport=AsyncLocalTransport(sim.handle_wire, peer))
    started = time.perf_counter()
    summary = await run_campaign(
        store, campaign_id, profile, client=client, settings=RunSettings(poll_seconds=0.05)
    )
    elapsed = time.perf_counter() - started
    assert summary.stopped == "completed", summary.stopped
    return elapsed


def run_send(payouts: int, tmp: Path) -> None:
    """Send a campaign of `payouts` against the in-process simulator; print payouts/s."""
    sim, profile = _setup()
    openids = sim.add_users(profile.merchant.appid or "", payouts)
    source = tmp / "users.txt"
    source.write_text("".join(f"{o}\n" for o in openids), encoding="ascii")
    url = f"sqlite:///{tmp / 'run.db'}"
    upgrade(url)
    with LedgerStore.open(url) as store:
        campaign = create_campaign(store, profile, name="run", template=TEMPLATE, source=source)
        plan_campaign(store, profile, campaign.id)
        elapsed = asyncio.run(_send(store, campaign.id, profile, sim))
        sent = store.totals_by_state(campaign.id)[PayoutState.SENT].count
    print(
        f"run:  {sent:,} payouts sent in {elapsed:.1f} s ({sent / elapsed:,.0f} payouts/s, "
        f"{profile.concurrency} in flight, in-process simulator, SQLite ledger)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--payouts", type=int, default=20_000)
    parser.add_argument("--child", choices=["plan", "run"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as tmp:
            if args.child == "plan":
                run_plan(args.lines, Path(tmp))
            else:
                run_send(args.payouts, Path(tmp))
        return
    for child in ("plan", "run"):
        command = [sys.executable, __file__, "--child", child]
        command += ["--lines", str(args.lines), "--payouts", str(args.payouts)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
