"""Fixtures for the served-mode tests: a simulator served over mutual TLS, and a merchant of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.sim.server import SimServer


@pytest.fixture
def server() -> Iterator[SimServer]:
    """A fresh in-memory simulator (frozen at 2024-03-15 10:00 UTC+8) on a free loopback port."""
    sim = Simulator(seed=3)
    with SimServer(sim) as served:
        yield served
    sim.close()


@pytest.fixture
def creds(server: SimServer) -> MerchantCredentials:
    """A merchant of the served simulator."""
    return server.sim.create_merchant()


@pytest.fixture
def openid(server: SimServer, creds: MerchantCredentials) -> str:
    """A user of the merchant's Official Account."""
    return server.sim.add_users(creds.appid, 1)[0]
