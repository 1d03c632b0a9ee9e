"""`hongbao campaign …` end to end against the served simulator: the contract forms, the figures
they print, and a run killed with SIGKILL that a second run finishes, paying everyone once."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import tomlkit

from hongbao.sim.server import CLI_COMMAND
from tests.cli.conftest import Configured, run

pytestmark = pytest.mark.served

TEMPLATE = ("--send-name", "Acme", "--act-name", "Spring", "--wishing", "Thanks", "--remark", "Hi")


def _users_file(configured: Configured, count: int, extra: str = "") -> Path:
    openids = configured.sim.add_users(configured.appid, count)
    path = configured.config.parent / "users.txt"
    path.write_text("openid\n" + "\n".join(openids) + "\n" + extra)
    return path


def _create(configured: Configured, users: Path, *extra: str) -> int:
    created = run(
        "campaign", "create", "--merchant", "shop", "--file", str(users), "--amount", "1.00",
        *TEMPLATE, "-c", str(configured.config), "--json", *extra,
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    campaign_id: int = json.loads(created.stdout)["id"]
    return campaign_id


def _nonzero(states: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {state: total for state, total in states.items() if total["count"]}


def _paid(configured: Configured) -> dict[str, int]:
    """openid → fen the simulator really paid (issued records only)."""
    _, rows = configured.sim.state.ledger(configured.mch_id)
    paid: dict[str, int] = {}
    for row in rows:
        if row.status in ("SENT", "RECEIVED", "RFUND_ING", "REFUND"):
            assert row.re_openid not in paid, f"{row.re_openid} paid twice"
            paid[row.re_openid] = row.total_amount
    return paid


def test_create_plan_run_status_report_export(configured: Configured) -> None:
    users = _users_file(configured, 12, "not an openid!\n")
    cid = _create(configured, users, "--budget", "11.00", "--name", "spring")
    cfg = ("-c", str(configured.config))

    plan = run("campaign", "plan", str(cid), *cfg, "--json")
    assert plan.exit_code == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert (planned["good"], planned["bad"], planned["recorded"]) == (12, 1, 12)
    assert planned["bad_lines"][0]["line"] == 14
    assert planned["over_budget"] is True

    ran = run("campaign", "run", str(cid), *cfg, "--json")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["state"] == "COMPLETED"

    status = json.loads(run("campaign", "status", str(cid), *cfg, "--json").stdout)
    assert status["name"] == "spring"
    # The budget of 11 yuan pays 11 packets of 1 yuan; the twelfth is skipped, never sent.
    assert _nonzero(status["states"]) == {
        "SENT": {"count": 11, "amount_fen": 1100},
        "SKIPPED": {"count": 1, "amount_fen": 100},
    }
    assert "FAILED" in status["states"]  # every state is listed, zeros included
    paid = _paid(configured)
    assert len(paid) == 11
    assert sum(paid.values()) == 1100

    report = json.loads(run("campaign", "report", str(cid), *cfg, "--json").stdout)
    assert report["sent"] == {"count": 11, "amount_fen": 1100}
    assert report["skipped"] == {"count": 1, "amount_fen": 100}

    exported = run("campaign", "export", str(cid), *cfg)
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    sent_rows = {r["openid"]: r["mch_billno"] for r in rows if r["state"] == "SENT"}
    _, records = configured.sim.state.ledger(configured.mch_id)
    assert sent_rows == {r.re_openid: r.mch_billno for r in records}


def test_state_changes_and_their_refusals(configured: Configured) -> None:
    cid = _create(configured, _users_file(configured, 3))
    cfg = ("-c", str(configured.config))
    not_planned = run("campaign", "run", str(cid), *cfg)
    assert not_planned.exit_code == 1
    assert "not planned yet" in not_planned.stderr
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0
    refused = run("campaign", "pause", str(cid), *cfg)
    assert refused.exit_code == 1
    assert "only a RUNNING one can pause" in refused.stderr
    cancelled = run("campaign", "cancel", str(cid), *cfg, "--json")
    assert cancelled.exit_code == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"id": cid, "state": "CANCELLED", "cancelled": 3}
    assert _paid(configured) == {}
    unknown = run("campaign", "status", "999", *cfg)
    assert unknown.exit_code == 1
    assert "no campaign with id 999" in unknown.stderr


def test_a_template_the_api_refuses_creates_nothing(configured: Configured) -> None:
    users = _users_file(configured, 1)
    result = run(
        "campaign", "create", "--file", str(users), "--amount", "1", "--send-name", "x" * 40,
        "--act-name", "a", "--wishing", "w", "--remark", "r", "-c", str(configured.config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "send_name" in result.stderr
    listed = run("campaign", "list", "-c", str(configured.config), "--json")
    assert json.loads(listed.stdout) == []


def test_a_fission_campaign_sends_sets_of_total_num_shares(configured: Configured) -> None:
    users = _users_file(configured, 2)
    cid = _create(configured, users, "--api", "group", "--total-num", "3", "--amount", "3")
    cfg = ("-c", str(configured.config))
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0
    ran = run("campaign", "run", str(cid), *cfg, "--json")
    assert ran.exit_code == 0, ran.stderr
    _, records = configured.sim.state.ledger(configured.mch_id)
    assert sorted((r.api, r.total_num, r.total_amount) for r in records) == [
        ("sendgroupredpack", 3, 300),
        ("sendgroupredpack", 3, 300),
    ]


def test_a_fission_set_outside_3_to_20_shares_is_refused_at_create(configured: Configured) -> None:
    users = _users_file(configured, 1)
    result = run(
        "campaign", "create", "--file", str(users), "--amount", "30", *TEMPLATE, "--api", "group",
        "--total-num", "21", "-c", str(configured.config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "total_num" in result.stderr
    listed = run("campaign", "list", "-c", str(configured.config), "--json")
    assert json.loads(listed.stdout) == []


@pytest.mark.slow
def test_a_run_killed_mid_way_is_finished_by_the_next_run(configured: Configured) -> None:
    count = 150  # about 5 s at WeChat's 1,800 a minute: time to kill the run half-way
    # Leases of the killed run must run out before the next run may take them over; short
    # timeouts make a short lease safe (the simulator answers at once).
    document = tomlkit.parse(configured.config.read_text())
    document["merchants"]["shop"].update(
        {"connect_timeout": 1, "read_timeout": 1, "lease_seconds": 3}
    )
    configured.config.write_text(tomlkit.dumps(document))
    cid = _create(configured, _users_file(configured, count))
    cfg = ("-c", str(configured.config))
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONGBAO_")}
    process = subprocess.Popen(
        [*CLI_COMMAND, "campaign", "run", str(cid), *cfg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while len(_paid(configured)) < 30 and process.poll() is None:
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no cleanup, leases left behind
        process.wait(30)
    assert 0 < len(_paid(configured)) < count

    finished = run("campaign", "run", str(cid), *cfg, "--json")
    assert finished.exit_code == 0, finished.stderr
    assert _nonzero(json.loads(finished.stdout)["states"]) == {
        "SENT": {"count": count, "amount_fen": count * 100}
    }
    assert len(_paid(configured)) == count  # everyone once: _paid fails on a second payment


def test_bad_lines_are_shown_escaped_never_sent_to_the_terminal(configured: Configured) -> None:
    # ESC ] 0 ; … BEL retitles a terminal; NUL and other controls must not reach it either.
    users = _users_file(configured, 2, "evil\x1b]0;pwned\x07\x00,1\n")
    cid = _create(configured, users)
    plan = run("campaign", "plan", str(cid), "-c", str(configured.config))
    assert plan.exit_code == 0, plan.stderr
    for control in ("\x1b", "\x07", "\x00"):
        assert control not in plan.stdout
        assert control not in plan.stderr
    assert "evil\\x1b]0;pwned\\x07\\x00" in plan.stdout


def test_retry_pays_the_failed_users_once_under_new_bills(configured: Configured) -> None:
    from hongbao.sim.faults import parse_fault

    cid = _create(configured, _users_file(configured, 4))
    cfg = ("-c", str(configured.config))
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0
    configured.sim.faults.add(
        parse_fault({"endpoint": "sendredpack", "action": "error", "err_code": "FATAL_ERROR",
                     "count": 2})
    )  # fmt: skip
    run("campaign", "run", str(cid), *cfg)
    run("campaign", "resume", str(cid), *cfg)  # FATAL_ERROR paused it
    assert run("campaign", "run", str(cid), *cfg).exit_code == 0
    assert len(_paid(configured)) == 2

    retried = run("campaign", "retry", str(cid), "--err-code", "FATAL_ERROR", *cfg)
    again = run("campaign", "retry", str(cid), *cfg, "--json")
    sent = run("campaign", "run", str(cid), *cfg)

    assert retried.exit_code == 0, retried.stderr
    assert f"campaign {cid}: 2 FAILED FATAL_ERROR payouts re-issued" in retried.stdout
    assert f"next: hongbao campaign run {cid}" in retried.stderr
    assert json.loads(again.stdout)["retried"] == 0
    assert sent.exit_code == 0, sent.stderr
    paid = _paid(configured)  # raises if anyone was paid twice
    assert len(paid) == 4
    exported = run("campaign", "export", str(cid), *cfg).stdout
    links = [row["previous_payout_id"] for row in csv.DictReader(io.StringIO(exported))]
    assert len([link for link in links if link]) == 2


def test_a_paused_campaign_pauses_again_quietly_and_its_run_exits_3(
    configured: Configured,
) -> None:
    cid = _create(configured, _users_file(configured, 2))
    cfg = ("-c", str(configured.config))
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0
    from hongbao.engine.config import load_config
    from hongbao.ledger import CampaignState, LedgerStore

    with LedgerStore.open(load_config(configured.config).ledger_url) as store:
        store.set_campaign_state(cid, CampaignState.PLANNED, CampaignState.RUNNING)

    paused = run("campaign", "pause", str(cid), *cfg)
    again = run("campaign", "pause", str(cid), *cfg, "--json")
    ran = run("campaign", "run", str(cid), *cfg)
    resumed = run("campaign", "resume", str(cid), *cfg)

    assert paused.exit_code == again.exit_code == 0
    assert json.loads(again.stdout)["already_paused"] is True
    assert ran.exit_code == 3, ran.stderr
    assert f"paused: paused by hand; then `hongbao campaign resume {cid}`" in ran.stdout
    assert _paid(configured) == {}
    assert f"run it: hongbao campaign run {cid}\n" in resumed.stdout


def test_create_warns_when_an_earlier_campaign_had_the_same_file(configured: Configured) -> None:
    users = _users_file(configured, 2)
    first = _create(configured, users, "--name", "spring")
    cfg = ("-c", str(configured.config))
    args = ("campaign", "create", "--file", str(users), "--amount", "1.00", *TEMPLATE, *cfg)

    second = run(*args, "--name", "spring-again")
    third = run(*args, "--name", "spring-3", "--json")

    assert second.exit_code == 0, second.stderr
    assert (
        f"warning: {users} has the same content as the file of campaign {first} ('spring', "
        "DRAFT): planning this one pays its users again"
    ) in " ".join(second.stderr.split())
    assert [c["id"] for c in json.loads(third.stdout)["same_file_as"]] == [first, first + 1]
    other = _users_file(configured, 1)
    assert "warning" not in run(*args[:3], str(other), *args[4:], "--name", "x").stderr


def test_report_tells_unresolved_money_from_payouts_not_sent_yet(configured: Configured) -> None:
    cid = _create(configured, _users_file(configured, 3))
    cfg = ("-c", str(configured.config))
    assert run("campaign", "plan", str(cid), *cfg).exit_code == 0

    text = run("campaign", "report", str(cid), *cfg)
    document = json.loads(run("campaign", "report", str(cid), *cfg, "--json").stdout)

    assert "unresolved (in flight: maybe sent)\t0\t0.00" in text.stdout
    assert "not sent yet (planned, deferred)\t3\t3.00" in text.stdout
    assert document["unresolved"] == {"count": 0, "amount_fen": 0}
    assert document["not_sent_yet"] == {"count": 3, "amount_fen": 300}
