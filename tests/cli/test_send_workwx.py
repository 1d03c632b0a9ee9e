"""`hongbao send-workwx`, `query --workwx` and a `--api workwx` campaign against the simulator
served over mutual TLS, with the configuration `hongbao sim merchant create --wecom --config`
wrote (the corp's id and its secret in a file of its own)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hongbao.sim.server import SimServer
from tests.cli.conftest import run

pytestmark = pytest.mark.served

TEXTS = ("--act-name", "Year-end party", "--wishing", "Thank you!", "--remark", "Happy new year")


@pytest.fixture
def corp(server: SimServer, tmp_path: Path) -> tuple[Path, dict[str, str], list[str]]:
    config = tmp_path / "hongbao.toml"
    created = run(
        "sim", "merchant", "create", "--sim", server.url, "--ca", str(server.ca_path),
        "--name", "shop", "--config", str(config), "--wecom", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    doc = json.loads(created.stdout)
    members = run(
        "sim", "user", "create", "--sim", server.url, "--ca", str(server.ca_path),
        "--appid", doc["wecom_corpid"], "--count", "3",
    )  # fmt: skip
    assert members.exit_code == 0, members.stderr
    return config, doc, members.stdout.split()


def test_the_corp_is_saved_with_its_secret_in_a_private_file(
    corp: tuple[Path, dict[str, str], list[str]],
) -> None:
    config, doc, _ = corp
    text = config.read_text()
    assert f'wecom_corpid = "{doc["wecom_corpid"]}"' in text
    assert doc["wecom_secret"] not in text
    secret_file = config.parent / "shop.wecom_secret"
    assert secret_file.read_text().strip() == doc["wecom_secret"]
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_send_workwx_pays_once_and_query_follows_it(
    server: SimServer, corp: tuple[Path, dict[str, str], list[str]]
) -> None:
    config, doc, members = corp
    args = (
        "send-workwx", "-c", str(config), "--openid", members[0], "--amount", "8.88",
        "--sender-name", "HR Team", *TEXTS, "--key", "party-2024:1", "--json",
    )  # fmt: skip
    first = run(*args)
    assert first.exit_code == 0, first.stderr
    sent = json.loads(first.stdout)
    assert (sent["outcome"], sent["kind"], sent["total_amount_fen"]) == ("sent", "workwx", 888)
    again = run(*args)
    assert json.loads(again.stdout)["mch_billno"] == sent["mch_billno"]
    _, rows = server.sim.state.ledger(doc["mch_id"])
    assert [(r.api, r.re_openid, r.status) for r in rows] == [
        ("sendworkwxredpack", members[0], "SENT")
    ]
    server.sim.state.open_packet(doc["mch_id"], sent["mch_billno"])
    queried = run("query", sent["mch_billno"], "--workwx", "-c", str(config), "--json")
    assert queried.exit_code == 0, queried.stderr
    info = json.loads(queried.stdout)
    assert (info["status"], info["total_amount_fen"]) == ("RECEIVED", 888)
    assert [(r["openid"], r["amount_fen"]) for r in info["receipts"]] == [(members[0], 888)]


def test_send_workwx_refuses_both_senders_before_recording_anything(
    corp: tuple[Path, dict[str, str], list[str]],
) -> None:
    config, _, members = corp
    result = run(
        "send-workwx", "-c", str(config), "--openid", members[0], "--amount", "1",
        "--sender-name", "HR", "--agentid", "1000002", *TEXTS, "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.stdout
    assert "sender_name" in json.loads(result.stdout)["error"]


def test_a_workwx_campaign_runs_to_the_end(
    server: SimServer, corp: tuple[Path, dict[str, str], list[str]], tmp_path: Path
) -> None:
    config, doc, members = corp
    source = tmp_path / "employees.txt"
    source.write_text("\n".join(members) + "\n")
    created = run(
        "campaign", "create", "-c", str(config), "--file", str(source), "--amount", "6.66",
        "--api", "workwx", "--agentid", "1000002", *TEXTS, "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    campaign = str(json.loads(created.stdout)["id"])
    assert run("campaign", "plan", campaign, "-c", str(config)).exit_code == 0
    ran = run("campaign", "run", campaign, "-c", str(config))
    assert ran.exit_code == 0, ran.stderr
    _, rows = server.sim.state.ledger(doc["mch_id"])
    assert sorted((r.re_openid, r.total_amount, r.api) for r in rows) == sorted(
        (member, 666, "sendworkwxredpack") for member in members
    )
