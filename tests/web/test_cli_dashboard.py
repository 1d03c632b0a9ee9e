"""`hongbao dashboard`: refuses to serve beyond loopback without a token, serves with one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from hongbao.ledger import upgrade
from hongbao.sim.server import CLI_COMMAND
from tests.cli.conftest import run
from tests.web.webkit import EVERY_ADDRESS, TOKEN


def test_a_non_loopback_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(ledger)

    result = run("dashboard", "--host", EVERY_ADDRESS, "--ledger", ledger)

    assert result.exit_code == 2
    assert "set an access token" in result.stderr


def test_a_short_token_refuses_to_start(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("short\n")

    result = run("dashboard", "--host", EVERY_ADDRESS, "--token-file", str(token_file))

    assert result.exit_code == 2
    assert "at least 16 characters" in result.stderr
    assert "short" not in result.stderr.replace("at least", "")


def test_the_configurations_token_file_is_read(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    upgrade(f"sqlite:///{ledger}")
    (tmp_path / "dashboard-token").write_text("short\n")
    config = tmp_path / "hongbao.toml"
    config.write_text(
        '[ledger]\nurl = "sqlite:///ledger.db"\n[dashboard]\ntoken_file = "dashboard-token"\n'
    )

    result = run("dashboard", "--host", EVERY_ADDRESS, "-c", str(config))

    # The token came from the file the configuration names (relative to it), and was checked.
    assert result.exit_code == 2
    assert "at least 16 characters" in result.stderr


def test_a_missing_ledger_is_a_configuration_error(tmp_path: Path) -> None:
    result = run("dashboard", "--ledger", f"sqlite:///{tmp_path / 'none.db'}")

    assert result.exit_code == 2
    assert "there is no ledger" in result.stderr


def test_with_a_token_it_serves_every_address_and_demands_the_token(tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(ledger)
    env = {**os.environ, "HONGBAO_DASHBOARD_TOKEN": TOKEN, "HONGBAO_LEDGER_URL": ledger}
    env.pop("HONGBAO_CONFIG", None)
    server = subprocess.Popen(
        [*CLI_COMMAND, "dashboard", "--host", EVERY_ADDRESS, "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stderr is not None
        line = server.stdout.readline()
        assert "(access token required)" in line, line or server.stderr.read()
        port = int(line.split(f"://{EVERY_ADDRESS}:")[1].split("/")[0])
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/").status_code == 401
        assert httpx.get(f"{base}/", headers={"Authorization": "Bearer nope"}).status_code == 401
        page = httpx.get(f"{base}/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 200
        assert "No campaign in this ledger yet" in page.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_help_names_the_token_sources() -> None:
    result = run("dashboard", "--help")
    assert result.exit_code == 0
    assert "HONGBAO_DASHBOARD_TOKEN" in result.stdout
