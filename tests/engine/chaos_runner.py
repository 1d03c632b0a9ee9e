"""A campaign runner in its own process, for the chaos test to `kill -9` (the CLI's
`hongbao campaign run` does the same through the same engine API, on the same event loop).

    python -m tests.engine.chaos_runner CONFIG.json

CONFIG holds the ledger URL, the campaign id, the merchant (files of its certificate and key,
the simulator's URL and CA) and the timings. On success it prints the run's summary as JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from hongbao import eventloop
from hongbao.api import Merchant
from hongbao.engine.runner import run_campaign
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.states import Policy
from hongbao.ledger import LedgerStore
from hongbao.sim.server import SimServer
from hongbao.sim.state import MerchantSettings
from hongbao.wire.retry import RetryPolicy
from hongbao.wire.transport import Timeouts

CHAOS_POLICY = Policy(
    processing_wait=timedelta(seconds=2),
    unknown_retry=timedelta(seconds=0.3),
    not_sent_retry=timedelta(seconds=0.2),
    frequency_back_off=timedelta(seconds=1),
    blocked_retry=timedelta(seconds=1),
)
CHAOS_RUN = RunSettings(
    policy=CHAOS_POLICY, poll_seconds=0.1, recovery_every=0.5, max_idle_wait=60.0
)


def chaos_config(
    server: SimServer, tmp: Path, ledger_url: str, *, read_timeout: float, wecom: bool = False
) -> dict[str, Any]:
    """A new merchant of `server` (no rate cap to speak of), as `profile_from` takes it; with
    `wecom`, also its WeCom corp and the corp's payment secret."""
    creds = server.sim.create_merchant(
        MerchantSettings(balance_fen=10**9, rate_per_minute=10**6, query_rate_per_minute=10**6),
        wecom=wecom,
    )
    (tmp / "cert.pem").write_bytes(creds.cert_pem)
    (tmp / "key.pem").write_bytes(creds.key_pem)
    return {
        "ledger_url": ledger_url,
        "merchant": "chaos",
        "mch_id": creds.mch_id,
        "api_key": creds.api_key,
        "appid": creds.appid,
        "mini_appid": creds.mini_appid,
        "cert_pem": str(tmp / "cert.pem"),
        "key_pem": str(tmp / "key.pem"),
        "base_url": server.url,
        "ca_path": str(server.ca_path),
        "read_timeout": read_timeout,
        "rate_per_minute": 120_000,
        "concurrency": 16,
        "wecom_corpid": creds.wecom_appid,
        "wecom_secret": creds.wecom_secret,
    }


def profile_from(config: dict[str, Any]) -> MerchantProfile:
    """The merchant of the chaos test: short timeouts, one quick in-call retry."""
    merchant = Merchant.from_pem_files(
        config["cert_pem"],
        config["key_pem"],
        mch_id=config["mch_id"],
        api_key=config["api_key"],
        appid=config["appid"],
        mini_appid=config["mini_appid"],
        base_url=config["base_url"],
        backup_url=None,
        ca_bundle=config["ca_path"],
        timeouts=Timeouts(connect=1.0, read=config["read_timeout"]),
        wecom_corpid=config.get("wecom_corpid"),
        wecom_secret=config.get("wecom_secret"),
        retry=RetryPolicy(max_retries=1, initial_delay=0.1, max_delay=0.2, min_interval=0.1),
    )
    return MerchantProfile(
        name=config["merchant"],
        merchant=merchant,
        rate_per_minute=config["rate_per_minute"],
        query_rate_per_minute=config["rate_per_minute"],
        concurrency=config["concurrency"],
    )


async def _main(config: dict[str, Any]) -> dict[str, Any]:
    with LedgerStore.open(config["ledger_url"]) as store:
        summary = await run_campaign(
            store, config["campaign_id"], profile_from(config), settings=CHAOS_RUN
        )
    return {
        "stopped": summary.stopped,
        "state": summary.campaign_state.value,
        "driven": summary.driven,
        "totals": {state.value: total.count for state, total in summary.totals.items()},
    }


def main(argv: list[str]) -> int:
    """Run the campaign described by the JSON file `argv[0]` to its end."""
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    print(json.dumps(eventloop.run(_main(config))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
