"""The dashboard in headless Chromium while a campaign runs against the simulator.

The campaign runs in a background thread (the embedded runner, real clock, a low rate so that
progress is visible); the dashboard is served by uvicorn in another; Chromium watches progress
advance without reloading, pauses the campaign from its page (answering the confirmation), and
finds a payout's event history. A screenshot of every page is written (see `artifacts`).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn

from hongbao.api import AsyncClient
from hongbao.engine.campaign import create_campaign, plan_campaign
from hongbao.engine.runner import RunSummary, run_campaign
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.ledger import CampaignState, LedgerStore, PayoutState, upgrade
from hongbao.sim.app import Simulator
from hongbao.sim.entities import ISSUED
from hongbao.sim.state import MerchantSettings
from hongbao.web import DashboardSettings, create_app
from hongbao.wire.local import AsyncLocalTransport, PeerInfo
from tests.engine.enginekit import TEMPLATE, merchant_of
from tests.web.webkit import TOKEN

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

P = PayoutState
USERS = 200
RATE_PER_MINUTE = 120
"""Two sends a second: slow enough to watch, fast enough for a test."""
WAIT_MS = 30_000


@dataclass
class Running:
    """A campaign being sent by the embedded runner in a thread."""

    sim: Simulator
    store: LedgerStore
    profile: MerchantProfile
    campaign_id: int
    users: list[str]
    thread: threading.Thread
    summary: list[RunSummary]

    def issued(self) -> int:
        """Packets the simulator really issued."""
        _, records = self.sim.state.ledger(self.profile.mch_id)
        return sum(1 for record in records if record.status in ISSUED)


@contextmanager
def running_campaign(tmp: Path) -> Iterator[Running]:
    """Plan a campaign of `USERS` and run it in a thread until paused (or done)."""
    sim = Simulator(seed=11)  # a frozen simulator clock: packets never expire mid-test
    creds = sim.create_merchant(MerchantSettings())
    users = sim.add_users(creds.appid, USERS)
    url = f"sqlite:///{tmp / 'ledger.db'}"
    upgrade(url)
    store = LedgerStore.open(url)
    profile = MerchantProfile(
        name="shop", merchant=merchant_of(creds), rate_per_minute=RATE_PER_MINUTE, concurrency=1
    )
    source = tmp / "users.txt"
    source.write_text("".join(f"{user}\n" for user in users), encoding="utf-8")
    campaign = create_campaign(store, profile, name="spring", template=TEMPLATE, source=source)
    plan_campaign(store, profile, campaign.id)
    peer = PeerInfo(ip="10.0.0.1", cert_der=creds.cert_der)
    summary: list[RunSummary] = []

    async def run() -> None:
        async with AsyncClient(
            profile.merchant, transport=AsyncLocalTransport(sim.handle_wire, peer)
        ) as client:
            settings = RunSettings(poll_seconds=0.1, recovery_every=5.0)
            summary.append(
                await run_campaign(store, campaign.id, profile, client=client, settings=settings)
            )

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    try:
        yield Running(sim, store, profile, campaign.id, users, thread, summary)
    finally:
        if thread.is_alive():  # a failed test: stop the runner before closing the ledger
            store.set_campaign_state(campaign.id, CampaignState.RUNNING, CampaignState.PAUSED)
            thread.join(timeout=30)
        store.close()
        sim.close()


@contextmanager
def served(settings: DashboardSettings) -> Iterator[str]:
    """The dashboard on a free loopback port, served by uvicorn in a thread; yields its URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "the dashboard did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _settled(page: Page, campaign_id: int) -> int:
    text = page.text_content(f'[data-campaign="{campaign_id}"] [data-field="progress"]') or ""
    found = re.match(r"(\d+) / \d+", text)
    assert found is not None, f"no progress figure in {text!r}"
    return int(found.group(1))


def _watch_console(page: Page) -> list[str]:
    errors: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", seen)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def test_watch_pause_and_search_a_running_campaign(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    with running_campaign(tmp_path) as run:
        cid = run.campaign_id
        dashboard_store = LedgerStore.open(run.store.engine.url)
        settings = DashboardSettings(
            store=dashboard_store, rate_caps={"shop": RATE_PER_MINUTE}, poll_seconds=0.5
        )
        with served(settings) as base:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = _watch_console(page)

            # Progress advances on the campaigns page without a reload.
            page.goto(f"{base}/")
            page.wait_for_selector(f'[data-campaign="{cid}"] [data-field="state"]:text("RUNNING")')
            first = _settled(page, cid)
            page.wait_for_function(
                """([id, first]) => parseInt(document.querySelector(
                    `[data-campaign="${id}"] [data-field="progress"]`).textContent, 10) >= first + 3
                """,
                arg=[cid, first],
                timeout=WAIT_MS,
            )
            assert first + 3 <= _settled(page, cid) < USERS
            page.screenshot(path=artifacts / "campaigns.png", full_page=True)

            # Pause from the campaign's page, answering its confirmation.
            page.click(f'a[href="/campaigns/{cid}"]')
            page.wait_for_selector("canvas[data-chart='sends-data']")
            assert page.evaluate(
                "Chart.getChart(document.querySelector(\"canvas[data-chart='sends-data']\"))"
                " !== undefined"
            )
            page.screenshot(path=artifacts / "campaign-running.png", full_page=True)
            dialogs: list[str] = []

            def confirm(dialog: object) -> None:
                dialogs.append(dialog.message)  # type: ignore[attr-defined]
                dialog.accept()  # type: ignore[attr-defined]

            page.once("dialog", confirm)
            page.click("button[value='pause']")
            page.wait_for_url(f"**/campaigns/{cid}?done=pause")
            assert len(dialogs) == 1
            assert dialogs[0].startswith("Pause campaign spring?")
            assert page.text_content('[data-field="state"]') == "PAUSED"
            page.screenshot(path=artifacts / "campaign-paused.png", full_page=True)

            # The runner sees the pause and stops claiming: it ends, work is left unclaimed.
            run.thread.join(timeout=60)
            assert not run.thread.is_alive()
            [summary] = run.summary
            assert summary.stopped.startswith(
                "paused: paused from the dashboard; then `hongbao campaign resume"
            )
            totals = run.store.totals_by_state(cid)
            assert totals[P.SENDING].count == 0
            assert totals[P.PLANNED].count > 0
            assert totals[P.SENT].count == run.issued()
            left = totals[P.PLANNED].count
            page.goto(f"{base}/")
            assert page.text_content(f'[data-campaign="{cid}"] [data-field="state"]') == "PAUSED"
            assert run.store.totals_by_state(cid)[P.PLANNED].count == left

            # Search a paid payout by openid and read its events.
            paid = run.store.find_payouts([P.SENT], campaign_id=cid, limit=1)[0]
            page.click("a[href='/payouts']")
            page.fill("#q", paid.re_openid)
            page.press("#q", "Enter")
            page.wait_for_selector(f"a[href='/payouts/{paid.id}']")
            page.screenshot(path=artifacts / "payouts-search.png", full_page=True)
            page.click(f"a[href='/payouts/{paid.id}'] >> nth=0")
            page.wait_for_selector("tr.event")
            kinds = page.locator("tr.event td:nth-child(3)").all_text_contents()
            assert kinds[:2] == ["claim", "send"]
            assert paid.mch_billno in (page.text_content("main") or "")
            page.screenshot(path=artifacts / "payout-events.png", full_page=True)

            for name in ("reconcile", "rules"):
                page.goto(f"{base}/{name}")
                page.screenshot(path=artifacts / f"{name}.png", full_page=True)
            page.close()
            assert errors == []
        dashboard_store.close()
    print(f"screenshots: {sorted(p.name for p in artifacts.iterdir())}")


def test_logging_in_through_the_browser(browser: Browser, tmp_path: Path, artifacts: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    with (
        LedgerStore.open(url) as store,
        served(DashboardSettings(store=store, token=TOKEN)) as base,
    ):
        page = browser.new_page()
        errors = _watch_console(page)
        response = page.goto(f"{base}/rules")
        assert response is not None
        assert response.status == 401
        page.screenshot(path=artifacts / "login.png", full_page=True)

        page.fill("#token", "not-the-token-at-all")
        with page.expect_response(f"{base}/login") as wrong:
            page.click("button[type='submit']")
        assert wrong.value.status == 401
        assert "Wrong access token" in (page.text_content("main") or "")

        page.fill("#token", TOKEN)
        page.click("button[type='submit']")
        page.wait_for_url(f"{base}/rules")
        assert "Rules" in (page.text_content("h1") or "")
        cookies = page.context.cookies()
        assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            ("hongbao_session", True, "Strict")
        ]
        page.close()
        assert [e for e in errors if "401" not in e] == []


@pytest.fixture(autouse=True)
def _no_event_loop_here() -> None:
    """Playwright's sync API refuses to run inside an event loop: these tests are plain."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
