"""The shared pacer: one GCRA schedule per key in PostgreSQL, on the database's clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from hongbao.engine import pglimiter
from hongbao.engine.pglimiter import SharedPacer
from hongbao.ledger import create_ledger_engine, upgrade
from hongbao.ledger.dispatch import hold_slots, take_slots

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    upgrade(pg_url)
    engine = create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


def _take(engine: Engine, key: str = "1900000109", *, period: float, burst: int = 1) -> float:
    [wait] = take_slots(engine, key, 1, period=period, burst=burst)
    return wait


def _spaced(waits: list[float], period: float) -> bool:
    """Each slot a period after the previous one (less the time between the calls)."""
    return all(period - 1.0 < b - a <= period for a, b in itertools.pairwise(waits))


def test_slots_of_one_key_are_a_period_apart_whoever_takes_them(engine: Engine) -> None:
    waits = [_take(engine, period=10.0) for _ in range(4)]
    assert waits[0] == 0.0
    assert _spaced(waits, 10.0)
    assert _take(engine, "1900000999", period=10.0) == 0.0


def test_slots_taken_together_are_the_ones_taken_one_by_one(engine: Engine) -> None:
    together = take_slots(engine, "1900000109", 3, period=10.0)
    assert together[0] == 0.0
    assert _spaced([*together, _take(engine, period=10.0)], 10.0)


def test_a_burst_lets_that_many_go_at_once(engine: Engine) -> None:
    waits = [_take(engine, period=10.0, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 9.0 < waits[3] <= 10.0
    # Reserved together, the first slots of a burst start at once too.
    together = take_slots(engine, "1900000999", 4, period=10.0, burst=3)
    assert together[:3] == [0.0, 0.0, 0.0]
    assert 9.0 < together[3] <= 10.0


def test_a_hold_pushes_every_next_slot_back(engine: Engine) -> None:
    _take(engine, period=0.01)
    hold_slots(engine, "1900000109", 60.0, period=0.01)
    assert 59.0 < _take(engine, period=0.01) <= 60.0
    assert _take(engine, "1900000999", period=0.01) == 0.0


async def test_waiting_sends_of_a_process_share_one_reservation(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> list[float]:
        counts.append(args[2])
        return take_slots(*args, **kwargs)

    monkeypatch.setattr(pglimiter, "take_slots", counted)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    # 6/min: a 10.1 s period; a 60 s span lets one reservation take 5 slots.
    pacer = SharedPacer(engine, "1900000109", 6, reserve_span=60.0, sleep=sleep)
    other = SharedPacer(engine, "1900000109", 6, reserve_span=60.0, sleep=sleep)
    await asyncio.gather(*(pacer.acquire() for _ in range(4)))
    assert counts == [4]
    await other.acquire()  # another process: the next slot of the same schedule
    assert counts == [4, 1]
    assert _spaced([0.0, *waits], pacer.period)


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
