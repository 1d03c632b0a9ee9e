"""GCRA pacing: the pure step, and the async pacer under a virtual clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.clock import FrozenClock
from hongbao.engine.limiter import Pacer, Pacers, gcra_decide

CAP = 1800  # WeChat's sends per merchant per sliding 60 s window
WINDOW = 60.0


def _max_in_window(times: list[float]) -> int:
    """The most timestamps in any half-open window (t - 60, t], as the simulator counts."""
    times = sorted(times)
    most = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - WINDOW:
            start += 1
        most = max(most, end - start + 1)
    return most


class VirtualTime:
    """An event-loop-driven fake clock: `sleep` parks a task until the clock reaches its time."""

    def __init__(self, start: float = 0.0) -> None:
        self.clock = FrozenClock()
        self.clock.advance(start)
        self._wakeups: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        wake = self.clock.monotonic() + seconds
        heapq.heappush(self._wakeups, (wake, next(self._order), future))
        await future

    async def run(self, *coros: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.ensure_future(coro) for coro in coros]
        while not all(task.done() for task in tasks):
            for _ in range(5):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._wakeups:
                wake, _, future = heapq.heappop(self._wakeups)
                self.clock.advance(max(0.0, wake - self.clock.monotonic()))
                future.set_result(None)
        await asyncio.gather(*tasks)


# -- the pure step -----------------------------------------------------------------------


def test_a_burst_goes_back_to_back_then_waits_one_period() -> None:
    tat = 0.0
    for _ in range(3):
        allowed, tat, wait = gcra_decide(tat, 100.0, period=2.0, burst=3)
        assert (allowed, wait) == (True, 0.0)
    allowed, same, wait = gcra_decide(tat, 100.0, period=2.0, burst=3)
    assert (allowed, same, wait) == (False, tat, 2.0)
    assert gcra_decide(tat, 102.0, period=2.0, burst=3)[0]


@pytest.mark.parametrize(
    ("period", "burst", "message"),
    [
        (0.0, 1, "period must be positive"),
        (-1.0, 1, "period must be positive"),
        (1.0, 0, "burst must be >= 1"),
    ],
)
def test_nonsense_rates_are_refused(period: float, burst: int, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        gcra_decide(0.0, 0.0, period, burst)


@given(st.lists(st.floats(0, 0.2, allow_nan=False), min_size=1, max_size=300))
def test_allowed_requests_are_never_closer_than_one_period(gaps: list[float]) -> None:
    period = WINDOW / CAP
    tat, now, allowed_at = 0.0, 0.0, []
    for gap in gaps:
        now += gap
        allowed, tat, _ = gcra_decide(tat, now, period)
        if allowed:
            allowed_at.append(now)
    spacing = [b - a for a, b in itertools.pairwise(allowed_at)]
    assert all(gap >= period * (1 - 1e-9) for gap in spacing)


# -- the async pacer ---------------------------------------------------------------------


async def test_a_merchant_never_exceeds_its_cap_in_any_sliding_minute() -> None:
    time = VirtualTime()
    pacer = Pacer(rate_per_minute=CAP, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []

    async def sender(count: int) -> None:
        for _ in range(count):
            await pacer.acquire()
            sent.append(time.clock.monotonic())

    await time.run(*(sender(450) for _ in range(8)))  # 3600 sends: two minutes' worth
    assert len(sent) == 3600
    assert _max_in_window(sent) <= CAP
    # ...and it still uses the rate: within its 1% margin of two full minutes.
    assert max(sent) - min(sent) <= 2 * WINDOW * 1.011


async def test_push_back_holds_every_caller() -> None:
    time = VirtualTime()
    pacer = Pacer(rate_per_minute=CAP, clock=time.clock, sleep=time.sleep)
    await time.run(pacer.acquire())
    pacer.push_back(60)
    pacer.push_back(10)  # a shorter hold never shortens a longer one
    sent: list[float] = []

    async def sender() -> None:
        await pacer.acquire()
        sent.append(time.clock.monotonic())

    await time.run(*(sender() for _ in range(5)))
    assert min(sent) >= 60
    assert _max_in_window(sent) == 5


async def test_each_merchant_has_its_own_pace() -> None:
    time = VirtualTime()
    pacers = Pacers(rate_per_minute=60, clock=time.clock, sleep=time.sleep)
    assert pacers["1900000109"] is pacers["1900000109"]
    pacers["1900000109"].push_back(600)
    await time.run(pacers["1900000999"].acquire(), pacers["1900000999"].acquire())
    assert time.clock.monotonic() == pytest.approx(1.01)  # one period at 60/min, 1% margin


async def _first_sends(time: VirtualTime, pacer: Pacer, callers: int) -> list[float]:
    """When each of `callers` concurrent callers, one send each, got through (in order)."""
    sent: list[float] = []

    async def sender() -> None:
        await pacer.acquire()
        sent.append(time.clock.monotonic())

    await time.run(*(sender() for _ in range(callers)))
    return sent


def test_the_defaults_are_wechats_rate_one_at_a_time_with_a_one_percent_margin() -> None:
    pacer, shared = Pacer(), Pacers()["1900000109"]
    for each in (pacer, shared):
        assert (each.rate_per_minute, each.burst) == (1800, 1)
        assert each.period == pytest.approx(60 / 1800 * 1.01)
    assert repr(pacer) == "Pacer(rate_per_minute=1800, burst=1)"


async def test_by_default_no_two_sends_go_back_to_back() -> None:
    # payout.py and tracker.py build their pacers without a burst and rely on this.
    time = VirtualTime()
    pacer = Pacer(rate_per_minute=60, margin=0, clock=time.clock, sleep=time.sleep)
    assert await _first_sends(time, pacer, 3) == [0.0, 1.0, 2.0]


async def test_a_burst_lets_that_many_sends_go_at_once_then_paces_them() -> None:
    time = VirtualTime()
    pacer = Pacer(rate_per_minute=60, burst=3, margin=0, clock=time.clock, sleep=time.sleep)
    assert await _first_sends(time, pacer, 5) == [0.0, 0.0, 0.0, 1.0, 2.0]


async def test_after_a_hold_the_waiting_callers_each_take_a_rate_slot() -> None:
    time = VirtualTime()
    pacer = Pacer(rate_per_minute=60, margin=0, clock=time.clock, sleep=time.sleep)
    pacer.push_back(10)
    assert await _first_sends(time, pacer, 4) == [10.0, 11.0, 12.0, 13.0]


async def test_a_hold_counts_from_now_on_a_clock_that_did_not_start_at_zero() -> None:
    time = VirtualTime(start=1000.0)
    pacer = Pacer(rate_per_minute=60, margin=0, clock=time.clock, sleep=time.sleep)
    pacer.push_back(30)
    assert await _first_sends(time, pacer, 2) == [1030.0, 1031.0]


@pytest.mark.parametrize("seconds", [0.0, 0.25])
async def test_a_hold_of_zero_or_a_fraction_of_a_second_is_taken_as_given(seconds: float) -> None:
    time = VirtualTime(start=5.0)
    pacer = Pacer(rate_per_minute=60, margin=0, clock=time.clock, sleep=time.sleep)
    pacer.push_back(seconds)
    assert await _first_sends(time, pacer, 1) == [5.0 + seconds]


@pytest.mark.parametrize(
    ("rate", "margin", "period"),
    [(1, 0.0, 60.0), (0.5, 0.0, 120.0), (60, 0.0, 1.0), (60, 0.5, 1.5), (60, 0.99, 1.99)],
)
def test_any_positive_rate_and_a_margin_from_zero_below_one_set_the_period(
    rate: float, margin: float, period: float
) -> None:
    pacer = Pacer(rate_per_minute=rate, margin=margin)
    assert pacer.rate_per_minute == rate
    assert pacer.period == pytest.approx(period)


async def test_pacers_give_every_merchant_the_same_burst_and_margin() -> None:
    time = VirtualTime()
    pacers = Pacers(rate_per_minute=60, burst=2, margin=0, clock=time.clock, sleep=time.sleep)
    assert (pacers["1900000109"].burst, pacers["1900000109"].period) == (2, 1.0)
    assert await _first_sends(time, pacers["1900000999"], 3) == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rate_per_minute": 0}, "rate_per_minute must be positive"),
        ({"rate_per_minute": -1}, "rate_per_minute must be positive"),
        ({"margin": 1.0}, "margin must be in [0, 1)"),
        ({"margin": -0.01}, "margin must be in [0, 1)"),
        ({"burst": 0}, "burst must be >= 1"),
    ],
)
def test_a_pacer_refuses_nonsense(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Pacer(**settings)


@pytest.mark.parametrize("seconds", [-1, -0.001])
def test_a_negative_hold_is_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"^seconds must be >= 0$"):
        Pacer().push_back(seconds)
