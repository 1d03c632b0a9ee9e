"""Fixtures of the engine tests: a simulated merchant with a migrated ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.enginekit import Bench, make_bench


def _bench(url: str, tmp_path: Path) -> Iterator[Bench]:
    bench = make_bench(url, tmp_path, users=5)
    yield bench
    bench.store.close()
    bench.sim.close()


@pytest.fixture
def bench(sqlite_url: str, tmp_path: Path) -> Iterator[Bench]:
    """A simulated merchant with 5 users and a SQLite ledger, on one frozen clock."""
    yield from _bench(sqlite_url, tmp_path)


@pytest.fixture
def any_bench(ledger_url: str, tmp_path: Path) -> Iterator[Bench]:
    """`bench`, once on SQLite and once on PostgreSQL."""
    yield from _bench(ledger_url, tmp_path)
