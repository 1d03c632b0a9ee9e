"""`hongbao track` and `hongbao reconcile` after a campaign, against the served simulator."""

from __future__ import annotations

import json

import pytest

from hongbao.sim.faults import parse_fault
from tests.cli.conftest import Configured, run
from tests.cli.livekit import configure, spawn

pytestmark = pytest.mark.served

TEMPLATE = ("--send-name", "Acme", "--act-name", "Spring", "--wishing", "Thanks", "--remark", "Hi")


def _sent_campaign(configured: Configured, count: int) -> int:
    openids = configured.sim.add_users(configured.appid, count)
    users = configured.config.parent / "users.txt"
    users.write_text("\n".join(openids) + "\n")
    cfg = ("-c", str(configured.config))
    created = run(
        "campaign", "create", "--file", str(users), "--amount", "1.50", *TEMPLATE, *cfg, "--json"
    )
    cid: int = json.loads(created.stdout)["id"]
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0
    assert run("campaign", "run", str(cid), *cfg).exit_code == 0
    return cid


def test_track_records_opened_and_refunded_packets(configured: Configured) -> None:
    cid = _sent_campaign(configured, 6)
    cfg = ("-c", str(configured.config))
    _, records = configured.sim.state.ledger(configured.mch_id)
    for record in records[:4]:
        configured.sim.state.open_packet(configured.mch_id, record.mch_billno)
    configured.sim.move_clock(advance_seconds=25 * 3600)  # the other two expire and refund

    tracked = run("track", str(cid), "--all", *cfg, "--json")
    assert tracked.exit_code == 0, tracked.stderr
    summary = json.loads(tracked.stdout)
    assert (summary["checked"], summary["received"], summary["refunded"]) == (6, 4, 2)

    report = json.loads(run("campaign", "report", str(cid), *cfg, "--json").stdout)
    assert report["received"] == {"count": 4, "amount_fen": 600}
    assert report["refunded"] == {"count": 2, "amount_fen": 300}
    assert report["waiting"] == {"count": 0, "amount_fen": 0}

    reconciled = run("reconcile", str(cid), *cfg, "--json")
    assert reconciled.exit_code == 0, reconciled.stderr
    doc = json.loads(reconciled.stdout)
    assert doc["mismatches"] == []
    assert doc["ledger_issued"] == doc["wechat_issued"] == {"count": 6, "amount_fen": 900}


def test_track_without_all_waits_for_the_hourly_check(configured: Configured) -> None:
    cid = _sent_campaign(configured, 2)
    tracked = run("track", str(cid), "-c", str(configured.config), "--json")
    assert tracked.exit_code == 0, tracked.stderr
    assert json.loads(tracked.stdout)["checked"] == 0  # just sent: not due for an hour


def test_reconcile_exits_1_when_wechat_cannot_confirm(configured: Configured) -> None:
    cid = _sent_campaign(configured, 2)
    configured.sim.faults.add(
        parse_fault({"endpoint": "gethbinfo", "action": "error", "err_code": "PARAM_ERROR"})
    )
    result = run("reconcile", str(cid), "-c", str(configured.config), "--json")
    assert result.exit_code == 1
    kinds = {m["kind"] for m in json.loads(result.stdout)["mismatches"]}
    assert kinds == {"unchecked"}


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_track_follow_says_what_it_waits_for_and_when_it_checks_next(
    configured: Configured, terminal: bool
) -> None:
    cid = _sent_campaign(configured, 2)
    configure(configured.config, run={"status_every": 0.5})
    child = spawn("track", str(cid), "--follow", "-c", str(configured.config), terminal=terminal)
    # Just sent: nothing is due for an hour, and it says so rather than sitting silent.
    child.wait_for("2 packets waiting to be opened or refunded; next check in 60 min")
    if not terminal:
        said = "tracking: 0 of 2; 2 packets waiting to be opened or refunded; next check in"
        child.wait_for_times(said, 2)  # again, every status_every
    child.interrupt()
    assert child.finish() == 130, child.output
