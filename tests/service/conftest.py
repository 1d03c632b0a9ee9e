"""Fixtures of the HTTP service's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hongbao.sim.server import SimServer
from tests.sim_served.servedkit import wall_clock_server


@pytest.fixture
def served() -> Iterator[SimServer]:
    """A simulator on the wall clock, served over mutual TLS."""
    with wall_clock_server(20261205) as server:
        yield server
