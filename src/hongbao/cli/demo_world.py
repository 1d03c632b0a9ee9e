"""The world of `hongbao demo`: the in-process simulator, the merchant wired to it, the run.

The simulator and hongbao share one frozen clock; where the send pacer would sleep, it moves the
clock instead (`VirtualTime`). Imported by `hongbao demo` when it runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from hongbao import eventloop
from hongbao.api import AsyncClient, Merchant
from hongbao.cli.configfile import SimMerchant, save_merchant
from hongbao.cli.output import RunDisplay
from hongbao.clock import FrozenClock, SystemClock
from hongbao.defaults import SIM_PORT
from hongbao.engine.campaign import (
    CampaignReport,
    Template,
    campaign_report,
    create_campaign,
    plan_campaign,
)
from hongbao.engine.runner import run_campaign
from hongbao.engine.settings import MerchantProfile
from hongbao.engine.tracker import TrackSummary, track
from hongbao.ledger import LedgerStore, PayoutState, upgrade
from hongbao.money import parse_yuan
from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.local import AsyncLocalTransport, PeerInfo

__all__ = ["DemoResult", "run_demo", "simulator_view"]

AMOUNT = "1.88"
"""What each packet holds (yuan), except every fourth line, which carries its own amount."""
BONUS = "6.66"
OPENED_PERCENT = 70
EXPIRY_WAIT = timedelta(hours=25)
"""Unclaimed packets expire after 24 h and the refund lands about 15 minutes later."""

_LEDGER = "ledger.db"
_OPENIDS = "openids.csv"


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo left behind, for the report and for anyone checking it."""

    folder: Path
    campaign_id: int
    mch_id: str
    ledger_url: str
    report: CampaignReport
    simulated_seconds: float
    """Simulated time the sending took (at the real pace)."""


class VirtualTime:
    """A sleep that moves the shared frozen clock instead of waiting.

    Sleepers due at the same moment move it once: the clock jumps to the latest moment anyone
    asked for, never beyond, so concurrent waits overlap as they would in real time.
    """

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock

    async def sleep(self, seconds: float) -> None:
        """Let others run, then move the clock to now + `seconds` if nobody did already."""
        target = self.clock.monotonic() + max(0.0, seconds)
        await asyncio.sleep(0)
        behind = target - self.clock.monotonic()
        if behind > 0:
            self.clock.advance(behind)


def run_demo(folder: Path, users: int = 1000, display: RunDisplay | None = None) -> DemoResult:
    """Run the demo in `folder` (its earlier demo files are replaced) and return its outcome."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (_LEDGER, f"{_LEDGER}-wal", f"{_LEDGER}-shm", _OPENIDS):
        (folder / name).unlink(missing_ok=True)
    clock = FrozenClock(SystemClock().now())
    sim = Simulator(clock=clock, data_dir=folder / "sim", seed=2024)
    try:
        sim.reset()  # a fresh world; the CA stays, so served mode keeps trusting it
        creds = sim.create_merchant()
        openids = sim.add_users(creds.appid, users)
        source = _write_openids(folder / _OPENIDS, openids)
        _write_config(folder, creds)
        ledger_url = f"sqlite:///{folder / _LEDGER}"
        upgrade(ledger_url)
        world = _World(sim, creds, clock)
        with LedgerStore.open(ledger_url, clock=clock) as store:
            campaign_id = _plan(store, world, source)
            started = clock.monotonic()
            eventloop.run(world.send(store, campaign_id, display))
            seconds = clock.monotonic() - started
            _open_most(store, sim, creds.mch_id, campaign_id, openids)
            sim.move_clock(advance_seconds=EXPIRY_WAIT.total_seconds())
            if display is not None:
                display.phase("tracking")
            eventloop.run(world.track(store, campaign_id, display))
            report = campaign_report(store, campaign_id)
        return DemoResult(folder, campaign_id, creds.mch_id, ledger_url, report, seconds)
    finally:
        sim.close()


class _World:
    """The demo merchant as hongbao sees it, wired to the in-process simulator."""

    def __init__(self, sim: Simulator, creds: MerchantCredentials, clock: FrozenClock) -> None:
        self.clock = clock
        self.time = VirtualTime(clock)
        merchant = Merchant(
            mch_id=creds.mch_id,
            api_key=SecretStr(creds.api_key),
            appid=creds.appid,
            mini_appid=creds.mini_appid,
            certificate=ClientCertificate.from_pem(creds.cert_pem, creds.key_pem),
        )
        # WeChat's defaults: 1,800 sends a minute, 16 in flight, 10 a user a day.
        self.profile = MerchantProfile(name="demo", merchant=merchant)
        # The transport carries the merchant's certificate to the simulator, as TLS would.
        self.transport = AsyncLocalTransport(sim.handle_wire, PeerInfo(cert_der=creds.cert_der))

    def client(self) -> AsyncClient:
        """A client on the in-process transport and the shared clock."""
        return AsyncClient(
            self.profile.merchant, transport=self.transport, clock=self.clock, sleep=self.time.sleep
        )

    async def send(self, store: LedgerStore, campaign_id: int, display: RunDisplay | None) -> None:
        """Run the campaign to the end."""
        async with self.client() as client:
            await run_campaign(
                store,
                campaign_id,
                self.profile,
                client=client,
                clock=self.clock,
                sleep=self.time.sleep,
                progress=display.update if display is not None else None,
            )

    async def track(self, store: LedgerStore, campaign_id: int, display: RunDisplay | None) -> None:
        """Ask gethbinfo about every sent packet and record RECEIVED or REFUNDED."""
        total = store.totals_by_state(campaign_id)[PayoutState.SENT].count

        def shown(summary: TrackSummary) -> None:
            if display is not None:
                display.show(summary.checked, total)

        async with self.client() as client:
            await track(
                store,
                self.profile,
                campaign_id=campaign_id,
                client=client,
                clock=self.clock,
                sleep=self.time.sleep,
                progress=shown,
            )


def _plan(store: LedgerStore, world: _World, source: Path) -> int:
    template = Template(
        amount_fen=parse_yuan(AMOUNT),
        send_name="hongbao demo",
        wishing="Thank you for trying hongbao!",
        act_name="Demo campaign",
        remark="Simulated money",
    )
    campaign = create_campaign(
        store, world.profile, name="demo", template=template, source=source, clock=world.clock
    )
    plan_campaign(store, world.profile, campaign.id, clock=world.clock)
    return campaign.id


def _write_openids(path: Path, openids: list[str]) -> Path:
    lines = ["openid,amount"]
    lines.extend(f"{o},{BONUS}" if i % 4 == 3 else o for i, o in enumerate(openids))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_config(folder: Path, creds: MerchantCredentials) -> None:
    config = folder / "hongbao.toml"
    config.write_text(f'[ledger]\nurl = "sqlite:///{_LEDGER}"\n', encoding="utf-8")
    save_merchant(
        config,
        "demo",
        SimMerchant(
            mch_id=creds.mch_id,
            appid=creds.appid,
            mini_appid=creds.mini_appid,
            base_url=f"https://127.0.0.1:{SIM_PORT}",
            ca_bundle=folder / "sim" / "ca.pem",
            api_key=creds.api_key,
            cert_pem=creds.cert_pem,
            key_pem=creds.key_pem,
        ),
    )


def _open_most(
    store: LedgerStore, sim: Simulator, mch_id: str, campaign_id: int, openids: list[str]
) -> None:
    # The users' side, through the simulator's control hook: 7 in 10 open their packet.
    opening = {o for i, o in enumerate(openids) if i % 100 < OPENED_PERCENT}
    for payout in store.iter_payouts(campaign_id):
        if payout.state is PayoutState.SENT and payout.re_openid in opening:
            sim.state.open_packet(mch_id, payout.mch_billno)


def simulator_view(folder: Path, mch_id: str) -> dict[str, dict[str, int]]:
    """What the simulator (WeChat) says it paid, by record status."""
    sim = Simulator(data_dir=folder / "sim")
    try:
        _, rows = sim.state.ledger(mch_id)
    finally:
        sim.close()
    view: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = view.setdefault(row.status, {"count": 0, "amount_fen": 0})
        entry["count"] += 1
        entry["amount_fen"] += row.total_amount
    return view
