"""Exit codes: 0 ok, 1 usage or other error, 2 configuration error, 3 not sent, 4 outcome unknown.

Scripts branch on these, and 3 versus 4 decides whether money may be out: each test checks the
simulator's ledger agrees with what the code claims."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hongbao.cli.boundary import ExitCode, exit_code_for
from hongbao.engine.campaign import CampaignError
from hongbao.errors import (
    BillFailedError,
    ConfigurationError,
    ConnectError,
    ProcessingError,
    RefusedError,
    TransportError,
    ValidationError,
)
from hongbao.ids import BillNoError
from hongbao.ledger import IllegalTransitionError, LedgerLookupError, ReissueError
from hongbao.sim.faults import parse_fault
from hongbao.sim.state import MerchantSettings
from tests.cli.conftest import Configured, run

TEXTS = ("--send-name", "Acme", "--act-name", "Spring", "--wishing", "Thanks", "--remark", "Enjoy")


def test_the_codes_are_the_documented_numbers() -> None:
    assert [code.value for code in ExitCode] == [0, 1, 2, 3, 4]
    assert exit_code_for(ConfigurationError("x")) is ExitCode.CONFIGURATION
    assert exit_code_for(ValidationError("x", field="f", rule="r")) is ExitCode.REFUSED
    assert exit_code_for(ConnectError("x")) is ExitCode.REFUSED
    assert exit_code_for(RefusedError("x")) is ExitCode.REFUSED
    assert exit_code_for(BillFailedError("x")) is ExitCode.REFUSED
    assert exit_code_for(TransportError("x")) is ExitCode.UNKNOWN
    assert exit_code_for(ProcessingError("x")) is ExitCode.UNKNOWN
    assert exit_code_for(RuntimeError("x")) is ExitCode.ERROR
    for declined in (
        CampaignError("x"),
        LedgerLookupError("x"),
        IllegalTransitionError("x"),
        ReissueError("x"),
        BillNoError("x"),
    ):
        assert exit_code_for(declined) is ExitCode.ERROR, declined


def test_usage_errors_exit_1(tmp_path: Path) -> None:
    config = str(tmp_path / "absent.toml")
    bad_amount = run("send", "-c", config, "--openid", "o1", "--amount", "1.005", *TEXTS)
    assert bad_amount.exit_code == 1
    assert "--amount" in bad_amount.stderr
    missing = run("send", "-c", config, "--amount", "1", *TEXTS)
    assert missing.exit_code == 1
    assert "--openid" in missing.stderr
    assert run("no-such-command").exit_code == 1


def test_configuration_errors_exit_2(tmp_path: Path) -> None:
    absent = run("query", "1900000109202403150000000001", "-c", str(tmp_path / "absent.toml"))
    assert absent.exit_code == 2
    assert "configuration error" in absent.stderr
    assert "absent.toml" in absent.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('[merchants.shop]\nmch_id = "1900000109"\n')
    result = run("query", "1900000109202403150000000001", "-c", str(broken), "--json")
    assert result.exit_code == 2
    assert "no API certificate" in json.loads(result.stdout)["error"]


def test_a_missing_ledger_is_a_configuration_error_and_is_not_created(tmp_path: Path) -> None:
    config = tmp_path / "hongbao.toml"
    config.write_text('[ledger]\nurl = "sqlite:///typo.db"\n')
    result = run("campaign", "status", "1", "-c", str(config))
    assert result.exit_code == 2
    assert "no ledger" in result.stderr
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.served
def test_a_refusal_exits_3_and_nothing_was_paid(configured: Configured) -> None:
    configured.sim.state.update_merchant(configured.mch_id, MerchantSettings(balance_fen=0))
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1", *TEXTS, "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "refused"
    assert "NOTENOUGH" in doc["error"]
    _, rows = configured.sim.state.ledger(configured.mch_id)
    assert [row.status for row in rows if row.status in ("SENT", "RECEIVED")] == []


@pytest.mark.served
def test_a_local_validation_error_exits_3_before_anything_leaves(configured: Configured) -> None:
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "500", *TEXTS,
    )  # fmt: skip
    assert result.exit_code == 3
    assert "scene_id" in result.stderr
    assert configured.sim.state.ledger(configured.mch_id)[1] == []


@pytest.mark.served
def test_an_unknown_outcome_exits_4_and_the_printed_bill_recovers_it(
    configured: Configured,
) -> None:
    # Every attempt is paid, then its answer lost: the client cannot know it was paid.
    configured.sim.faults.add(parse_fault({"endpoint": "sendredpack", "action": "pay_then_drop"}))
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1.20", *TEXTS,
    )  # fmt: skip
    assert result.exit_code == 4, result.stderr
    assert "OUTCOME UNKNOWN" in result.stderr
    match = re.search(r"mch_billno (\w+)", result.stderr)
    assert match is not None
    bill = match.group(1)
    assert f"hongbao query {bill}" in result.stderr
    _, rows = configured.sim.state.ledger(configured.mch_id)
    assert [(row.mch_billno, row.status) for row in rows] == [(bill, "SENT")]  # it WAS paid

    configured.sim.faults.clear()
    queried = run("query", bill, "-c", str(configured.config), "--json")
    assert json.loads(queried.stdout)["status"] == "SENT"
    resent = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1.20", *TEXTS, "--bill-no", bill,
    )  # fmt: skip
    assert resent.exit_code == 0, resent.stderr
    _, rows = configured.sim.state.ledger(configured.mch_id)
    assert [(row.mch_billno, row.total_amount) for row in rows] == [(bill, 120)]  # paid once


@pytest.mark.served
def test_an_answer_in_an_undecodable_encoding_exits_4_not_1(
    configured: Configured, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The packet is paid, but the answer declares GBK, which expat cannot decode: after the
    # request left, that is an unknown outcome (4), never "nothing was sent" (1).
    from hongbao.sim.responses import handle_api as real


    def gbk(*args: object, **kwargs: object) -> bytes:
        answer = real(*args, **kwargs)  # type: ignore[arg-type]
        return answer.replace(b"<xml>", b'<?xml version="1.0" encoding="GBK"?><xml>', 1)

    monkeypatch.setattr("hongbao.sim.app.handle_api", gbk)
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "1.20", *TEXTS,
    )  # fmt: skip
    assert result.exit_code == 4, result.stderr
    assert "OUTCOME UNKNOWN" in result.stderr
    assert "Traceback" not in result.stderr
    _, rows = configured.sim.state.ledger(configured.mch_id)
    assert [row.status for row in rows] == ["SENT"]  # it WAS paid


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/hongbao",  # nothing listens there
        "postgresql+psycopg://postgres@127.0.0.1:5432/hongbao_no_such_database",
    ],
    ids=["unreachable", "missing database"],
)
def test_a_ledger_url_that_cannot_be_opened_is_a_configuration_error(
    tmp_path: Path, url: str
) -> None:
    config = tmp_path / "hongbao.toml"
    config.write_text(f'[ledger]\nurl = "{url}"\n')
    result = run("campaign", "status", "1", "-c", str(config))
    assert result.exit_code == 2, result.stderr
    assert "cannot open the ledger" in result.stderr
    assert "[ledger] url" in result.stderr


@pytest.mark.served
def test_an_amount_no_scene_allows_is_named_as_such(configured: Configured) -> None:
    result = run(
        "send", "-c", str(configured.config), "--openid", configured.openid,
        "--amount", "0", *TEXTS,
    )  # fmt: skip
    assert result.exit_code == 3
    assert "below any amount" in result.stderr
    assert "scene_id is required" not in result.stderr
    assert configured.sim.state.ledger(configured.mch_id)[1] == []
