"""`hongbao send | send-group | send-mini | query` against the simulator served over mutual TLS,
with the configuration `hongbao sim merchant create --config` wrote."""

from __future__ import annotations

import json
import re

import pytest

from hongbao.clock import SystemClock
from hongbao.sim.faults import parse_fault
from tests.cli.conftest import Configured, run

pytestmark = pytest.mark.served

TEXTS = ("--send-name", "Acme", "--act-name", "Spring", "--wishing", "Thanks", "--remark", "Enjoy")


def _records(configured: Configured) -> list[tuple[str, str, int, str]]:
    _, rows = configured.sim.state.ledger(configured.mch_id)
    return [(row.mch_billno, row.re_openid, row.total_amount, row.status) for row in rows]


def test_send_pays_once_and_prints_the_bill_number_first(configured: Configured) -> None:
    result = run(
        "send", "--config", str(configured.config), "--openid", configured.openid,
        "--amount", "1.50", *TEXTS, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    bill = doc["mch_billno"]
    assert doc["outcome"] == "sent"
    assert doc["total_amount_fen"] == 150
    assert f"mch_billno {bill}" in result.stderr
    assert bill.startswith(configured.mch_id)
    assert _records(configured) == [(bill, configured.openid, 150, "SENT")]


def test_query_follows_the_packet(configured: Configured) -> None:
    bill = configured.mch_id + "202403150000000042"[: 28 - len(configured.mch_id)]
    sent = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "2", *TEXTS, "--bill-no", bill,
    )  # fmt: skip
    assert sent.exit_code == 0, sent.stderr
    assert bill in sent.stdout
    queried = run("query", bill, "-c", str(configured.config), "--json")
    assert queried.exit_code == 0, queried.stderr
    doc = json.loads(queried.stdout)
    assert (doc["found"], doc["status"], doc["total_amount_fen"]) == (True, "SENT", 200)
    configured.sim.state.open_packet(configured.mch_id, bill)
    doc = json.loads(run("query", bill, "-c", str(configured.config), "--json").stdout)
    assert doc["status"] == "RECEIVED"
    assert [(r["openid"], r["amount_fen"]) for r in doc["receipts"]] == [(configured.openid, 200)]


def test_query_of_an_unknown_bill_is_not_found(configured: Configured) -> None:
    bill = configured.mch_id + "0" * (28 - len(configured.mch_id))
    result = run("query", bill, "-c", str(configured.config), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["found"] is False


def test_send_group_splits_among_shares(configured: Configured) -> None:
    result = run(
        "send-group", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "3.00", "--total-num", "3", *TEXTS, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bill = json.loads(result.stdout)["mch_billno"]
    _, rows = configured.sim.state.ledger(configured.mch_id)
    assert [(row.mch_billno, row.api, row.total_amount, row.total_num) for row in rows] == [
        (bill, "sendgroupredpack", 300, 3)
    ]


def test_send_mini_prints_the_package(configured: Configured) -> None:
    [mini_user] = configured.sim.add_users(configured.mini_appid, 1)
    result = run(
        "send-mini", "-c", str(configured.config), "--openid", mini_user,
        "--amount", "1", *TEXTS, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["package"]
    assert _records(configured) == [(doc["mch_billno"], mini_user, 100, "SENT")]


def test_plain_output_without_a_terminal(configured: Configured) -> None:
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1", *TEXTS,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    [bill] = [record[0] for record in _records(configured)]
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["mch_billno"] == bill
    assert lines["amount"] == "1.00 yuan"
    assert "\x1b[" not in result.stdout  # no terminal styling in a pipe


def test_send_with_a_key_twice_pays_once_and_prints_the_same_bill(
    configured: Configured,
) -> None:
    command = (
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1.30", *TEXTS, "--key", "order-8812:cashback",
    )  # fmt: skip
    first = run(*command, "--json")
    again = run(*command, "--json")

    assert (first.exit_code, again.exit_code) == (0, 0), first.stderr + again.stderr
    docs = [json.loads(first.stdout), json.loads(again.stdout)]
    assert {(d["key"], d["mch_billno"], d["state"]) for d in docs} == {
        ("order-8812:cashback", docs[0]["mch_billno"], "SENT")
    }
    assert f"mch_billno {docs[0]['mch_billno']}" in again.stderr
    assert _records(configured) == [(docs[0]["mch_billno"], configured.openid, 130, "SENT")]


def test_the_same_key_with_another_amount_is_refused_and_names_the_field(
    configured: Configured,
) -> None:
    base = ("send", "-c", str(configured.config), "--openid", configured.openid, *TEXTS)
    assert run(*base, "--amount", "1", "--key", "k1").exit_code == 0

    clash = run(*base, "--amount", "2", "--key", "k1", "--json")

    assert clash.exit_code == 3
    assert "amount_fen" in json.loads(clash.stdout)["error"]
    assert len(_records(configured)) == 1


def test_without_a_key_one_is_made_and_printed_before_sending(configured: Configured) -> None:
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1", *TEXTS,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    key = re.search(r"key (cli-\w+)", result.stderr)
    assert key is not None

    shown = run("payouts", "show", key.group(1), "-c", str(configured.config), "--json")

    assert shown.exit_code == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["key"], doc["state"], doc["total_amount_fen"]) == (key.group(1), "SENT", 100)
    listed = run("payouts", "list", "-c", str(configured.config), "--state", "sent", "--json")
    assert [d["key"] for d in json.loads(listed.stdout)] == [key.group(1)]
    missing = run("payouts", "show", "nope", "-c", str(configured.config))
    assert missing.exit_code == 1


def test_a_rerun_of_an_unknown_outcome_never_pays_twice(configured: Configured) -> None:
    configured.sim.faults.add(parse_fault({"endpoint": "sendredpack", "action": "pay_then_drop"}))
    unknown = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1.20", *TEXTS, "--key", "k-unknown", "--json",
    )  # fmt: skip
    assert unknown.exit_code == 4, unknown.stderr
    assert "--key k-unknown" in unknown.stderr
    configured.sim.faults.clear()

    again = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1.20", *TEXTS, "--key", "k-unknown", "--timeout", "0",
    )  # fmt: skip
    # Its next attempt is not due yet: still unknown, and nothing sent twice.
    assert again.exit_code == 4, again.stderr
    assert [status for *_, status in _records(configured)] == ["SENT"]


def test_payouts_run_sends_what_a_dead_process_recorded(configured: Configured) -> None:
    from hongbao.api import BaseClient
    from hongbao.engine.config import load_config
    from hongbao.engine.ondemand import on_demand_key
    from hongbao.ids import mint_bill_no
    from hongbao.ledger import LedgerStore, NewPayout, SendApi, upgrade

    config = load_config(configured.config)
    upgrade(config.ledger_url)
    merchant = config.merchant("shop")
    bill = mint_bill_no(configured.mch_id, SystemClock().now(), 77)
    params = BaseClient(merchant).send_params(
        "sendredpack", mch_billno=bill, re_openid=configured.openid, total_amount=150,
        send_name="Acme", wishing="Thanks", act_name="Spring", remark="Enjoy",
    )  # fmt: skip
    with LedgerStore.open(config.ledger_url) as store:
        store.add_payout(
            NewPayout(on_demand_key(configured.mch_id, "k-planned"), "shop", SendApi.SENDREDPACK,
                      params)
        )  # fmt: skip

    result = run("payouts", "run", "-c", str(configured.config), "--json")

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"driven": 1, "open": []}
    assert _records(configured) == [(bill, configured.openid, 150, "SENT")]
