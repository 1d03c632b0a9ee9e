"""Fixtures for the simulator tests: a simulator on a frozen clock and a merchant with users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hongbao.sim.app import Simulator
from tests.sim.simkit import Shop, make_shop


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """An in-memory simulator, frozen at 2024-03-15 10:00 UTC+8."""
    simulator = Simulator(seed=7)
    yield simulator
    simulator.close()


@pytest.fixture
def shop(sim: Simulator) -> Shop:
    """A merchant with three Official Account users and three mini-program users."""
    return make_shop(sim)
