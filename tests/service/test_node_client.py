"""A client in another language: a Node script (built-in fetch, no npm packages) drives a live
`hongbao serve` — create, replay, conflict, list, wait — and verifies a webhook it received.

Node is Debian's `nodejs`: without it this skips locally and fails in CI (`CI=true` or
`HONGBAO_REQUIRE_NODE=1`; .ci/run installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hongbao.sim.entities import ISSUED
from hongbao.sim.server import SimServer
from tests.service.servicekit import SECRET, TOKEN, serving, write_config
from tests.sim_served.servedkit import wall_clock_server

pytestmark = pytest.mark.served

SCRIPT = Path(__file__).parent / "node" / "client.mjs"
NODE_MAJOR = 18  # Debian 12's nodejs; fetch is built in from 18, Array.prototype.at from 16.6


@pytest.fixture
def node() -> str:
    """Node's binary, at least version 18."""
    found = shutil.which("node") or shutil.which("nodejs")
    reason = "Node.js is not installed (apt-get install nodejs)"
    if found is not None:
        version = subprocess.run(
            [found, "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if int(version.lstrip("v").split(".")[0]) >= NODE_MAJOR:
            return found
        reason = f"Node.js {version} is older than {NODE_MAJOR}"
    if os.environ.get("CI") == "true" or os.environ.get("HONGBAO_REQUIRE_NODE") == "1":
        pytest.fail(f"{reason} (required in CI: .ci/run installs Debian's nodejs)")
    pytest.skip(reason)


@pytest.fixture
def server() -> Iterator[SimServer]:
    """A simulator on the wall clock, served over mutual TLS."""
    with wall_clock_server(13) as served:
        yield served


def run_node(node: str, server: SimServer, tmp: Path, ledger_url: str) -> dict[str, Any]:
    """Run the script against `hongbao serve` with the script's receiver as the webhook URL;
    its printed steps by name."""
    script = subprocess.Popen(
        [node, str(SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert script.stdout is not None
    try:
        listening = json.loads(script.stdout.readline())
        merchant = write_config(server, tmp, ledger_url, webhooks=[listening["url"]])
        # `--send`: the service sends on PostgreSQL too (there it would leave it to workers).
        with serving(merchant.config, tmp / "serve.log", "--send") as served:
            setup = {"base": served.url, "token": TOKEN, "secret": SECRET,
                     "openids": merchant.users}  # fmt: skip
            out, _ = script.communicate(json.dumps(setup) + "\n", timeout=90)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert script.returncode == 0, f"the Node script failed; it printed: {out}"
    steps = [json.loads(line) for line in out.splitlines()]
    issued = Counter(
        r.re_openid for r in server.sim.state.ledger(merchant.mch_id)[1] if r.status in ISSUED
    )
    return {step.pop("step"): step for step in steps} | {"issued": issued, "users": merchant.users}


def test_node_drives_the_api_and_verifies_a_webhook(
    node: str, server: SimServer, tmp_path: Path, ledger_url: str
) -> None:
    steps = run_node(node, server, tmp_path, ledger_url)
    users: list[str] = steps["users"]

    assert steps["create"]["status"] == 201
    assert steps["create"]["key"] == "node-order-1"
    assert steps["create"]["metadata"] == {"order": "A-1"}
    payout_id = steps["create"]["id"]
    assert steps["replay"] == {"status": 200, "id": payout_id, "replayed": "true"}
    assert steps["conflict"] == {
        "status": 409,
        "content_type": "application/problem+json",
        "type": "/problems/idempotency-conflict",
        "fields": ["amount_fen"],
    }
    # Four payouts by then, two a page, newest first; the cursor ends the walk.
    assert steps["list"] == {
        "pages": [2, 2],
        "keys": ["node-order-4", "node-order-3", "node-order-2", "node-order-1"],
    }
    assert steps["wait"]["status"] == 201
    assert steps["wait"]["state"] == "SENT"
    assert steps["wait"]["settled"] is True
    assert steps["wait"]["sent_at"] is not None
    assert steps["get"] == {"status": 200, "key": "node-order-1", "state": "SENT"}

    webhook = steps["webhook"]
    assert webhook["type"] == "payout.sent"
    assert webhook["id"].startswith("evt_")
    assert webhook["payout_key"] == "node-order-1"
    assert webhook["verified"] is True
    assert webhook["tampered_differs"] is True
    assert webhook["tampered_verified"] is False
    assert webhook["wrong_secret_verified"] is False

    # One packet per key (each key paid its own user); the replay and the conflict paid nothing.
    assert steps["issued"] == Counter(users)
