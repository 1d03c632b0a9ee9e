"""The world the documentation's examples run in: a served simulator and a configured merchant.

`docs_world` is a working directory with `hongbao.toml` whose `[merchants.shop]` is merchant
1900000109 (the docs' example number) of a simulator served over HTTPS with client
certificates, a SQLite ledger already created, and `openids.csv` listing 20 of its users (and
the README's example openid). Commands run with the `hongbao` of the code under test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import hongbao
from hongbao.clock import SystemClock
from hongbao.sim.app import Simulator
from hongbao.sim.server import SimServer
from tests.cli.conftest import run

MCH_ID = "1900000109"
EXAMPLE_OPENID = "oxTWIuGaIt6gTKsQRLau2M0yL16E"
USERS = 20


@dataclass(frozen=True)
class World:
    """A working directory configured for a served simulator, and that simulator."""

    workdir: Path
    server: SimServer
    env: dict[str, str]

    @property
    def sim(self) -> Simulator:
        return self.server.sim


def command_env(workdir: Path) -> dict[str, str]:
    """The environment of the docs' commands: this `hongbao` first, no HONGBAO_* of the caller."""
    source = str(Path(hongbao.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HONGBAO_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    env["HOME"] = str(workdir)
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture
def docs_world(tmp_path: Path) -> Iterator[World]:
    """A served simulator on the wall clock (as `hongbao sim serve`), a directory set up for it."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    sim = Simulator(clock=SystemClock(), seed=7)
    with SimServer(sim) as server:
        created = run(
            "sim", "merchant", "create", "--url", server.url, "--ca", str(server.ca_path),
            "--mch-id", MCH_ID, "--name", "shop", "--config", str(workdir / "hongbao.toml"),
        )  # fmt: skip
        assert created.exit_code == 0, created.stderr
        [appid] = [
            line.split()[1] for line in created.stdout.splitlines() if line.startswith("appid")
        ]
        openids = sim.add_users(appid, USERS)
        sim.state.add_users(appid, openids=[EXAMPLE_OPENID])
        (workdir / "openids.csv").write_text("".join(f"{o}\n" for o in openids))
        upgraded = run("db", "upgrade", "-c", str(workdir / "hongbao.toml"))
        assert upgraded.exit_code == 0, upgraded.stderr
        yield World(workdir, server, command_env(workdir))
    sim.close()
