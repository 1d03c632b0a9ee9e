"""Fixtures for the api tests; the helpers themselves live in `apikit`, `modekit` and
`workwxkit`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hongbao.sim.server import SimServer
from tests.api.apikit import Sleeps
from tests.api.modekit import MODES, SERVED, Bench, served_simulator
from tests.api.workwxkit import Corp


@pytest.fixture
def sleeps() -> Sleeps:
    """The delays a client waited (it never really sleeps in tests)."""
    return Sleeps()


@pytest.fixture(scope="module")
def server() -> Iterator[SimServer]:
    """One served simulator for a module; each test makes its own merchant on it."""
    yield from served_simulator()


@pytest.fixture(params=MODES)
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    """The simulator in one mode (the server starts only if a served test runs)."""
    server = request.getfixturevalue("server") if request.param == SERVED else None
    with Bench(server) as bench:
        yield bench


@pytest.fixture
def corp(bench: Bench) -> Corp:
    """A WeCom corp bound to a new merchant of `bench`'s simulator."""
    return Corp.create(bench)
