"""Webhooks end to end: `hongbao serve` delivers the ledger's outbox to a receiver that fails
its first deliveries, is killed with SIGKILL before it delivered everything, and delivers the
rest after a restart — every event at least once, each signed, none for a state a payout never
had."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hongbao.ledger import LedgerStore
from hongbao.sim.server import SimServer
from hongbao.webhooks import verify
from tests.service.servicekit import (
    AUTH,
    PACKET,
    SECRET,
    receiving,
    serving,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.served


def test_every_event_is_delivered_signed_through_failures_and_a_kill(
    served: SimServer, ledger_url: str, tmp_path: Path
) -> None:
    with receiving(fail_first=4) as receiver:
        merchant = write_config(served, tmp_path, ledger_url, users=6, webhooks=[receiver.url])
        log = tmp_path / "serve.log"
        keys = [f"order-{n}" for n in range(3)]
        with serving(merchant.config, log, "--send") as first:
            for key, openid in zip(keys, merchant.users, strict=False):
                answer = httpx.post(
                    f"{first.url}/v1/payouts?wait=10",
                    json={"openid": openid, "amount_fen": 150, **PACKET},
                    headers={**AUTH, "Idempotency-Key": key},
                    timeout=30,
                )
                assert answer.json()["state"] == "SENT"
            created = httpx.post(
                f"{first.url}/v1/campaigns",
                json={"name": "spring", "openids": merchant.users[3:], "amount_fen": 100,
                      **PACKET},
                headers={**AUTH, "Idempotency-Key": "campaign-spring"},
            ).json()  # fmt: skip
            campaign = f"{first.url}/v1/campaigns/{created['id']}"
            assert httpx.post(f"{campaign}/plan", headers=AUTH).status_code == 200
            assert httpx.post(f"{campaign}/run", headers=AUTH).status_code == 202
            wait_for(lambda: httpx.get(campaign, headers=AUTH).json()["state"] == "COMPLETED")
            first.kill()
        delivered_before_restart = len(receiver.events())

        with serving(merchant.config, log, "--send"):
            wait_for(lambda: len({e["id"] for e in receiver.events()}) == 7, timeout=60)

    assert delivered_before_restart < 7
    # The SIGKILL may cut a body short at any point, even the first delivery's.
    assert [status for status in receiver.answered if status != 400][:4] == [500] * 4
    # Every whole delivery is signed; one cut short by the SIGKILL was refused and sent again.
    whole = [(b, h) for (b, h), status in zip(receiver.received, receiver.answered, strict=True)
             if status != 400]  # fmt: skip
    assert len(whole) == len(receiver.received) - receiver.cut
    for body, header in whole:
        verify(body, header, SECRET)
    events = receiver.events()
    kinds = sorted({(e["type"], str(e["data"].get("key") or e["data"]["id"])) for e in events})
    with LedgerStore.open(ledger_url) as store:
        campaign_payouts = [p.id for p in store.iter_payouts(created["id"])]
        for event in events:
            if event["type"].startswith("payout."):
                history = store.events(event["data"]["id"])
                reached = {e.to_state.value for e in history if e.to_state is not None}
                assert event["data"]["state"] in reached
    assert kinds == sorted(
        [("campaign.completed", str(created["id"]))]
        + [("payout.sent", key) for key in keys]
        + [("payout.sent", str(payout_id)) for payout_id in campaign_payouts]
    )
    completed = next(e for e in events if e["type"] == "campaign.completed")
    assert completed["data"]["totals"]["SENT"] == {"count": 3, "amount_fen": 300}
