"""`hongbao db upgrade` and `hongbao db status`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hongbao.cli.main import app
from hongbao.ids import LEDGER_IDS
from hongbao.ledger import check_schema, head_revision, schema_status

runner = CliRunner()


def test_upgrade_then_status_on_a_new_sqlite_ledger(sqlite_url: str) -> None:
    before = runner.invoke(app, ["db", "status", "--ledger", sqlite_url])
    assert before.exit_code == 2
    assert "hongbao db upgrade" in before.output
    assert not Path(make_url(sqlite_url).database or "").exists()  # looking created nothing

    upgraded = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"empty -> {head_revision()}" in upgraded.output
    check_schema(sqlite_url)

    again = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url, "--json"])
    assert again.exit_code == 0
    assert json.loads(again.output)["upgraded"] is False

    after = runner.invoke(app, ["db", "status", "--json"], env={"HONGBAO_LEDGER_URL": sqlite_url})
    assert after.exit_code == 0
    assert json.loads(after.output)["up_to_date"] is True


@pytest.mark.postgres
def test_the_ledger_password_is_never_printed(pg_url: str) -> None:
    with_password = make_url(pg_url).set(password="topsecret-pw")
    url = with_password.render_as_string(hide_password=False)
    result = runner.invoke(app, ["db", "upgrade", "--ledger", url, "--json"])
    assert result.exit_code == 0, result.output
    assert "topsecret-pw" not in result.output
    assert json.loads(result.output)["current"] == head_revision()


def test_an_unusable_ledger_is_a_configuration_error(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'ledger.db'}"
    result = runner.invoke(app, ["db", "upgrade", "--ledger", missing])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_the_ledger_url_comes_from_the_configuration_file(tmp_path: Path) -> None:
    config = tmp_path / "hongbao.toml"
    config.write_text('[ledger]\nurl = "sqlite:///books.db"\n', encoding="utf-8")
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    # A relative SQLite path lives next to the configuration file, not in the working directory.
    assert (tmp_path / "books.db").exists()
    check_schema(f"sqlite:///{tmp_path / 'books.db'}")


def test_a_missing_configuration_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "status", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 2
    assert "none.toml does not exist" in result.output


def test_status_shows_the_ledger_identity(sqlite_url: str) -> None:
    created = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url])
    assert created.exit_code == 0, created.output
    ledger_id = schema_status(sqlite_url).ledger_id
    assert ledger_id in LEDGER_IDS
    assert f"ledger identity {ledger_id} (drawn at random" in created.output

    status = runner.invoke(app, ["db", "status", "--ledger", sqlite_url])
    assert status.exit_code == 0, status.output
    assert f"ledger identity {ledger_id} " in status.output
    as_json = runner.invoke(app, ["db", "status", "--ledger", sqlite_url, "--json"])
    assert json.loads(as_json.output)["ledger_id"] == ledger_id


def test_upgrade_sets_the_identity_asked_for_on_a_new_or_existing_ledger(sqlite_url: str) -> None:
    created = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url, "--ledger-id", "2"])
    assert created.exit_code == 0, created.output
    assert "ledger identity 2 (as given)" in created.output

    changed = runner.invoke(
        app, ["db", "upgrade", "--ledger", sqlite_url, "--ledger-id", "3", "--json"]
    )
    assert changed.exit_code == 0, changed.output
    document = json.loads(changed.output)
    assert (document["ledger_id_before"], document["ledger_id"]) == (2, 3)

    again = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url, "--ledger-id", "4"])
    assert "ledger identity changed: 3 -> 4" in again.output

    kept = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url])
    assert "ledger identity 4" in kept.output
    assert schema_status(sqlite_url).ledger_id == 4


def test_an_identity_no_ledger_may_have_is_a_configuration_error(sqlite_url: str) -> None:
    result = runner.invoke(app, ["db", "upgrade", "--ledger", sqlite_url, "--ledger-id", "0"])
    assert result.exit_code == 2
    assert "must be 1 to 3332" in result.output
    assert not Path(make_url(sqlite_url).database or "").exists()
