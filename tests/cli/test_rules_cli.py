"""`hongbao rules serve|test|list` against a served simulator and a configuration for it."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from hongbao.cli.boundary import ExitCode
from hongbao.engine.config import load_config
from hongbao.engine.notify import NOTIFY_PATH, NotifyHandler, RuleMerchant
from hongbao.ledger import upgrade
from hongbao.ledger.rules_store import RuleLedger
from hongbao.ledger.store import LedgerStore
from hongbao.sim.entities import AppKind
from hongbao.sim.server import CLI_COMMAND
from tests.cli.conftest import Configured, run
from tests.cli.livekit import configure, spawn
from tests.engine.ruleskit import notification_fields, signed, transaction_id

RULES = """
[rules.big]
merchant = "shop"
min_total_fee = 10000
amount = "1.88"
send_name = "Acme"
wishing = "Thank you!"
act_name = "Spend and get"
remark = "Spring promotion"
budget = "100"

[rules.mini_only]
merchant = "shop"
min_total_fee = 5000
appids = ["{mini_appid}"]
tiers = [{{min_total_fee = 5000, amount = "1.00"}}, {{min_total_fee = 20000, amount = "2.00"}}]
send_name = "Acme"
wishing = "Thank you!"
act_name = "Mini"
remark = "Mini promotion"
budget = "50"
per_customer_limit = 1
"""


def _app_appid(configured: Configured) -> str:
    kinds = configured.sim.state.appids_of(configured.mch_id)
    return next(appid for appid, kind in kinds.items() if kind is AppKind.APP)


@pytest.fixture
def ruled(configured: Configured) -> Configured:
    """The configuration with two rules, the app appid declared, and a fast send rate."""
    text = configured.config.read_text("utf-8")
    text = text.replace(
        "[merchants.shop]\n",
        f'[merchants.shop]\napp_appids = ["{_app_appid(configured)}"]\n'
        "rate_per_minute = 6000\nlease_seconds = 5\n",
    )
    configured.config.write_text(text + RULES.format(mini_appid=configured.mini_appid), "utf-8")
    return configured


def _key(configured: Configured) -> str:
    return (configured.config.parent / "shop.api_key").read_text("ascii").strip()


def _notification(
    configured: Configured, total_fee: int, *, appid: str | None = None, tx: str | None = None
) -> bytes:
    fields = notification_fields(
        mch_id=configured.mch_id,
        appid=appid or configured.appid,
        openid=configured.openid,
        total_fee=total_fee,
        transaction_id=tx or transaction_id(),
        trade_type="APP" if appid == _app_appid(configured) else "JSAPI",
    )
    return signed(fields, _key(configured))


def _write(tmp_path: Path, body: bytes) -> str:
    path = tmp_path / "notification.xml"
    path.write_bytes(body)
    return str(path)


def test_rules_test_shows_which_rule_fires_and_why_the_others_do_not(
    ruled: Configured, tmp_path: Path
) -> None:
    file = _write(tmp_path, _notification(ruled, 12_000))
    result = run("rules", "test", file, "-c", str(ruled.config), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["merchant"] == "shop"
    assert doc["recorded"] is None
    assert doc["rules"][0] == {
        "rule": "big",
        "fires": True,
        "api": "sendredpack",
        "amount": "1.88",
        "amount_fen": 188,
        "natural_key": f"rule:big:{doc['transaction_id']}",
    }
    assert doc["rules"][1]["fires"] is False
    assert doc["rules"][1]["reason"] == "appid_not_listed"
    plain = run("rules", "test", file, "-c", str(ruled.config))
    assert "big: FIRES — sendredpack 1.88 yuan" in plain.stdout
    assert "mini_only: no — appid_not_listed" in plain.stdout


def test_rules_test_picks_the_api_from_the_appid_kind(ruled: Configured, tmp_path: Path) -> None:
    [mini_user] = ruled.sim.add_users(ruled.mini_appid, 1)
    fields = notification_fields(
        mch_id=ruled.mch_id,
        appid=ruled.mini_appid,
        openid=mini_user,
        total_fee=25_000,
        transaction_id=transaction_id(),
    )
    file = _write(tmp_path, signed(fields, _key(ruled)))
    doc = json.loads(run("rules", "test", file, "-c", str(ruled.config), "--json").stdout)
    assert [(r["rule"], r.get("api"), r.get("amount")) for r in doc["rules"]] == [
        ("big", "sendminiprogramhb", "1.88"),
        ("mini_only", "sendminiprogramhb", "2.00"),
    ]
    app = _write(tmp_path, _notification(ruled, 25_000, appid=_app_appid(ruled)))
    doc = json.loads(run("rules", "test", app, "-c", str(ruled.config), "--json").stdout)
    assert [r.get("reason") for r in doc["rules"]] == ["app_appid", "appid_not_listed"]


def test_rules_test_reports_a_bad_signature(ruled: Configured, tmp_path: Path) -> None:
    forged = _notification(ruled, 12_000).replace(b">12000<", b">99000<")
    result = run("rules", "test", _write(tmp_path, forged), "-c", str(ruled.config), "--json")
    assert result.exit_code == ExitCode.REFUSED
    assert "signature does not verify" in result.stderr
    assert json.loads(result.stdout)["rejection"] == "signature"


def test_an_invalid_rule_is_refused_naming_the_rule_and_field(
    ruled: Configured, tmp_path: Path
) -> None:
    text = ruled.config.read_text("utf-8").replace('amount = "1.88"', 'amount = "1.005"')
    ruled.config.write_text(text, "utf-8")
    result = run("rules", "list", "-c", str(ruled.config))
    assert result.exit_code == ExitCode.CONFIGURATION
    assert "rules.big.amount" in result.stderr
    assert str(ruled.config) in result.stderr


def test_rules_list_shows_hits_and_budget_used_from_the_ledger(ruled: Configured) -> None:
    before = json.loads(run("rules", "list", "-c", str(ruled.config), "--json").stdout)
    assert [(r["rule"], r["hits"], r["committed"], r["budget"]) for r in before["rules"]] == [
        ("big", 0, "0.00", "100.00"),
        ("mini_only", 0, "0.00", "50.00"),
    ]
    config = load_config(ruled.config)
    upgrade(config.ledger_url)
    with LedgerStore.open(config.ledger_url) as store:
        handler = NotifyHandler(
            RuleLedger(store.engine), [RuleMerchant.from_config(config, "shop")]
        )
        for fee in (12_000, 15_000, 300):
            assert handler.receive(_notification(ruled, fee)).acknowledged
    after = json.loads(run("rules", "list", "-c", str(ruled.config), "--json").stdout)
    big = after["rules"][0]
    assert (big["hits"], big["committed"], big["sent"]) == (2, "3.76", 0)
    assert big["outcomes"] == {"below_threshold": 1, "match": 2}
    assert big["payouts"] == {"PLANNED": {"count": 2, "amount_fen": 376}}
    plain = run("rules", "list", "-c", str(ruled.config))
    assert plain.exit_code == 0
    header, big_line, *_ = plain.stdout.splitlines()
    assert header.split("\t") == [
        "rule", "merchant", "reward (yuan)", "min_total_fee (fen)", "hits", "packets sent",
        "committed (yuan)", "budget (yuan)", "no packet, because",
    ]  # fmt: skip
    min_fee = config.rules["big"].conditions.min_total_fee
    assert big_line.split("\t")[2:] == [
        "1.88",
        str(min_fee),
        "2",
        "0",
        "3.76",
        "100.00",
        "below_threshold 1",
    ]


def test_rules_serve_acknowledges_and_pays_then_stops_on_sigterm(ruled: Configured) -> None:
    process = subprocess.Popen(
        [*CLI_COMMAND, "rules", "serve", "--port", "0", "-c", str(ruled.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.endswith(NOTIFY_PATH), process.stderr.read() if process.stderr else ""
        body = _notification(ruled, 12_000)
        answers = [httpx.post(url, content=body, timeout=10) for _ in range(2)]
        deadline = time.monotonic() + 20
        while not ruled.sim.state.ledger(ruled.mch_id)[1] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(20)
    assert [a.status_code for a in answers] == [200, 200]
    assert all(b"SUCCESS" in a.content for a in answers)
    _, records = ruled.sim.state.ledger(ruled.mch_id)
    assert [(r.re_openid, r.total_amount) for r in records] == [(ruled.openid, 188)]
    assert code == 0


def test_rules_serve_saves_verified_notifications_for_rules_test(
    ruled: Configured, tmp_path: Path
) -> None:
    samples = tmp_path / "samples"
    process = subprocess.Popen(
        [
            *CLI_COMMAND, "rules", "serve", "--port", "0", "-c", str(ruled.config),
            "--save-notifications", str(samples),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.endswith(NOTIFY_PATH), process.stderr.read() if process.stderr else ""
        forged = _notification(ruled, 12_000).replace(b">12000<", b">99000<")
        assert httpx.post(url, content=forged, timeout=10).status_code == 400
        paid = httpx.post(
            f"{ruled.server.url}/__sim/pay",
            json={
                "mch_id": ruled.mch_id,
                "notify_url": url,
                "appid": ruled.appid,
                "openid": ruled.openid,
                "total_fee": 12_000,
            },
            verify=ssl.create_default_context(cafile=str(ruled.server.ca_path)),
            timeout=10,
        )
        assert paid.status_code == 201, paid.text
        saved = samples / f"{paid.json()['transaction_id']}.xml"
        deadline = time.monotonic() + 20
        while not saved.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        logs = process.stderr.read() if process.stderr else ""
    assert [p.name for p in samples.iterdir()] == [saved.name]  # the forged one is not kept
    assert samples.stat().st_mode & 0o777 == 0o700
    assert saved.stat().st_mode & 0o777 == 0o600
    assert b"<sign>" in saved.read_bytes()
    assert ruled.openid not in logs
    tested = run("rules", "test", str(saved), "-c", str(ruled.config))
    assert tested.exit_code == 0, tested.stderr
    assert "big: FIRES — sendredpack 1.88 yuan" in tested.stdout


def test_rules_serve_logs_that_it_cannot_reach_wechat_every_status_every(
    ruled: Configured,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{sock.getsockname()[1]}"
    configure(ruled.config, run={"status_every": 0.5}, base_url=closed)
    child = spawn("rules", "serve", "--port", "0", "-c", str(ruled.config), terminal=False)
    try:
        child.wait_for(NOTIFY_PATH)
        [url] = [line for line in child.output.splitlines() if line.endswith(NOTIFY_PATH)]
        answer = httpx.post(url, content=_notification(ruled, 12_000), timeout=10)
        assert b"SUCCESS" in answer.content  # recorded; the packet waits for WeChat
        said = (
            f"rule payouts of shop wait: could not reach {closed}/mmpaymkttransfers/sendredpack: "
            "connection refused; "
            "1 payout DEFERRED, retrying in"
        )
        child.wait_for_times(said, 2)  # and again, every status_every
    finally:
        child.process.terminate()
        child.finish()
