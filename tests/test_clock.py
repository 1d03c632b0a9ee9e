"""Injectable clocks and the Beijing calendar day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from hongbao.clock import CST, Clock, FrozenClock, SystemClock, beijing_day

START = datetime(2024, 3, 15, 23, 59, tzinfo=CST)


def test_cst_is_utc_plus_eight() -> None:
    assert CST.utcoffset(None) == timedelta(hours=8)


def test_frozen_clock_stands_still_until_advanced() -> None:
    clock = FrozenClock(START)

    assert clock.now() == clock.now() == START
    assert clock.monotonic() == clock.monotonic()


def test_advance_moves_wall_time_and_monotonic_time_together() -> None:
    clock = FrozenClock(START)
    mono = clock.monotonic()

    clock.advance(90)

    assert clock.now() == START + timedelta(seconds=90)
    assert clock.monotonic() == mono + 90
    assert beijing_day(clock.now()) == date(2024, 3, 16)


def test_set_jumps_forward_and_monotonic_follows() -> None:
    clock = FrozenClock(START)
    mono = clock.monotonic()

    clock.set(START + timedelta(days=1))

    assert clock.now() == START + timedelta(days=1)
    assert clock.monotonic() == mono + 86400


def test_set_accepts_any_time_zone() -> None:
    clock = FrozenClock(START)

    clock.set(datetime(2024, 3, 16, 0, 0, tzinfo=UTC))

    assert clock.now() == START + timedelta(hours=8, minutes=1)


def test_frozen_clock_never_goes_backwards() -> None:
    clock = FrozenClock(START)

    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(START - timedelta(seconds=1))
    assert clock.now() == START


def test_frozen_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(datetime(2024, 3, 15))
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(START).set(datetime(2024, 3, 16))


def test_frozen_clock_default_start_is_a_fixed_beijing_time() -> None:
    # Reproducible runs: the same instant, in UTC+8 (where WeChat's days are counted), every time.
    clock = FrozenClock()
    assert clock.now() == datetime(2024, 3, 15, 2, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(hours=8)
    assert beijing_day(clock.now()) == date(2024, 3, 15)
    assert clock.monotonic() == 0.0


def test_system_clock_is_aware_and_monotonic() -> None:
    clock: Clock = SystemClock()

    first, second = clock.monotonic(), clock.monotonic()
    now = clock.now()

    assert second >= first
    assert now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("when", "day"),
    [
        (datetime(2024, 3, 14, 16, 0, tzinfo=UTC), date(2024, 3, 15)),
        (datetime(2024, 3, 14, 15, 59, 59, tzinfo=UTC), date(2024, 3, 14)),
        (datetime(2024, 3, 15, 0, 0, tzinfo=CST), date(2024, 3, 15)),
        (datetime(2024, 12, 31, 16, 0, tzinfo=UTC), date(2025, 1, 1)),
    ],
)
def test_beijing_day(when: datetime, day: date) -> None:
    assert beijing_day(when) == day


def test_beijing_day_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        beijing_day(datetime(2024, 3, 15, 10, 0))
