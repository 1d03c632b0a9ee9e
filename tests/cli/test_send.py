"""`hongbao send | send-group | send-mini | query` against the simulator served over mutual TLS,
with the configuration `hongbao sim merchant create --config` wrote."""

from __future__ import annotations

import json

import pytest

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
