"""Helpers for the dashboard tests: a ledger with a finished campaign, and a dashboard app."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from hongbao.engine.tracker import ReconcileReport, reconcile
from hongbao.ledger import Campaign, Payout, PayoutState
from hongbao.sim.faults import parse_fault
from hongbao.web import DashboardSettings, create_app
from tests.engine.enginekit import Bench, make_bench

TOKEN = "s3cret-dashboard-token-0123456789"
"""The access token of the guarded dashboards."""
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104 (what the refusal is about)
"""A bind reachable from other machines."""

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Filled:
    """A bench whose campaign of 5 ran: 3 sent (one of them received), 1 failed, 1 skipped."""

    bench: Bench
    campaign: Campaign
    received: Payout
    failed: Payout


def filled_bench(url: str, tmp: Path) -> Filled:
    """Run a campaign of 5 users to the end on the in-process simulator (frozen clock)."""
    bench = make_bench(url, tmp, users=5)
    campaign = bench.campaign(budget_fen=400)
    bench.sim.faults.add(
        parse_fault(
            {"endpoint": "sendredpack", "action": "error", "err_code": "OPENID_ERROR", "count": 1}
        )
    )
    asyncio.run(bench.run(campaign.id))
    store = bench.store
    [failed] = store.find_payouts([PayoutState.FAILED], campaign_id=campaign.id)
    sent = store.find_payouts([PayoutState.SENT], campaign_id=campaign.id)
    bench.clock.advance(600)
    store.transition(
        sent[0].id, PayoutState.SENT, PayoutState.RECEIVED, received_at=bench.clock.now()
    )
    return Filled(bench, store.get_campaign(campaign.id), store.get_payout(sent[0].id), failed)


def dashboard(bench: Bench, **options: Any) -> TestClient:
    """A test client of a dashboard over the bench's ledger (rate cap 1800/min for "shop")."""

    async def reconcile_campaign(campaign: Campaign) -> ReconcileReport:
        return await reconcile(
            bench.store, bench.profile, campaign_id=campaign.id, client=bench.client()
        )

    options.setdefault("rate_caps", {"shop": 1800})
    options.setdefault("reconciler", reconcile_campaign)
    app = create_app(DashboardSettings(store=bench.store, **options))
    return TestClient(app, follow_redirects=False)


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)
