"""Fixtures for the command tests: a served simulator and a configuration written for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hongbao.cli.main import app
from hongbao.sim.app import Simulator
from hongbao.sim.server import SimServer

# Variables a developer's shell may hold that would change what the commands read.
_CLEAN_ENV: dict[str, str | None] = {
    name: None
    for name in (
        "HONGBAO_CONFIG",
        "HONGBAO_MERCHANT",
        "HONGBAO_LEDGER_URL",
        "HONGBAO_SIM_URL",
        "HONGBAO_SIM_CA",
        "HONGBAO_SIM_DATA",
        "HONGBAO_MERCHANTS_SHOP_API_KEY",
        "HONGBAO_MERCHANTS_SHOP_WECOM_SECRET",
    )
}


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """`hongbao ARGS…` in-process, with stdout and stderr apart."""
    return CliRunner().invoke(app, list(args), env={**_CLEAN_ENV, **(env or {})})


@dataclass(frozen=True)
class Configured:
    """A served simulator, a merchant of it saved as [merchants.shop], and one of its users."""

    server: SimServer
    config: Path
    mch_id: str
    appid: str
    mini_appid: str
    openid: str

    @property
    def sim(self) -> Simulator:
        return self.server.sim


@pytest.fixture
def server() -> Iterator[SimServer]:
    """A fresh in-memory simulator on a free loopback port, over mutual TLS."""
    sim = Simulator(seed=11)
    with SimServer(sim) as served:
        yield served
    sim.close()


@pytest.fixture
def configured(server: SimServer, tmp_path: Path) -> Configured:
    """`hongbao sim merchant create --name shop --config …` run against `server`."""
    config = tmp_path / "hongbao.toml"
    created = run(
        "sim", "merchant", "create", "--sim", server.url, "--ca", str(server.ca_path),
        "--name", "shop", "--config", str(config), "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    doc = json.loads(created.stdout)
    [openid] = server.sim.add_users(doc["appid"], 1)
    return Configured(server, config, doc["mch_id"], doc["appid"], doc["mini_appid"], openid)
