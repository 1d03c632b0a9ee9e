"""Injectable clocks. Everything in hongbao that reads the time takes a `Clock`.

All "per day" logic uses the calendar day in UTC+8 (Beijing time).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Protocol

__all__ = ["CST", "Clock", "FrozenClock", "SystemClock", "beijing_day"]

CST = timezone(timedelta(hours=8), "UTC+08:00")
"""China Standard Time, the time zone of every WeChat Pay time string and daily counter."""


class Clock(Protocol):
    """Source of wall-clock time (aware datetimes) and of a monotonic counter."""

    def now(self) -> datetime:
        """The current time as an aware datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class FrozenClock:
    """A manually driven clock for tests and the simulator.

    >>> clock = FrozenClock(datetime(2024, 3, 15, tzinfo=CST))
    >>> clock.advance(60)
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime (tzinfo set)")
        self._now = start or datetime(2024, 3, 15, 10, 0, 0, tzinfo=CST)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock cannot move backwards")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump to `when`, which must not be earlier than now."""
        if when.tzinfo is None:
            raise ValueError("set() needs an aware datetime (tzinfo set)")
        with self._lock:
            delta = (when - self._now).total_seconds()
            if delta < 0:
                raise ValueError("a clock cannot move backwards")
            self._now = when
            self._mono += delta

    def __repr__(self) -> str:
        return f"FrozenClock({self._now.isoformat()})"


def beijing_day(when: datetime) -> date:
    """The calendar day of `when` in UTC+8."""
    if when.tzinfo is None:
        # astimezone() would read a naive datetime as the machine's local time.
        raise ValueError("beijing_day needs an aware datetime (tzinfo set)")
    return when.astimezone(CST).date()
