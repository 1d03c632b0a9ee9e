"""The shared pacer: one GCRA schedule per key in PostgreSQL, on the database's clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from hongbao.engine.pglimiter import SharedPacer
from hongbao.ledger import create_ledger_engine, upgrade
from hongbao.ledger.dispatch import hold_slots, take_slot

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    upgrade(pg_url)
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


def test_slots_of_one_key_are_a_period_apart_whoever_takes_them(engine: Engine) -> None:
    waits = [take_slot(engine, "1900000109", period=10.0) for _ in range(4)]
    assert waits[0] == 0.0
    # Each caller gets the next slot: 10 s after the previous one (less the time between calls).
    for before, after in itertools.pairwise(waits):
        assert 9.0 < after - before <= 10.0
    assert take_slot(engine, "1900000999", period=10.0) == 0.0


def test_a_burst_lets_that_many_go_at_once(engine: Engine) -> None:
    waits = [take_slot(engine, "1900000109", period=10.0, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 9.0 < waits[3] <= 10.0


def test_a_hold_pushes_every_next_slot_back(engine: Engine) -> None:
    take_slot(engine, "1900000109", period=0.01)
    hold_slots(engine, "1900000109", 60.0, period=0.01)
    assert 59.0 < take_slot(engine, "1900000109", period=0.01) <= 60.0
    assert take_slot(engine, "1900000999", period=0.01) == 0.0


async def test_push_back_holds_the_next_acquire_of_every_pacer(engine: Engine) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    first = SharedPacer(engine, "1900000109", 600, sleep=sleep)
    other = SharedPacer(engine, "1900000109", 600, sleep=sleep)
    await first.acquire()
    first.push_back(30.0)
    await first.acquire()  # waits for its own hold to be written
    await other.acquire()
    assert slept[0] > 29.0
    assert slept[1] - slept[0] > first.period * 0.9
