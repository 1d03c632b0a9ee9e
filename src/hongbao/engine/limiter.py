"""Send pacing: GCRA (the generic cell rate algorithm), a pure core and an in-process pacer.

WeChat limits a merchant to 1800 sends a minute (docs/protocol.md §6.1), counted over a sliding 60 s
window; FREQ_LIMIT answers cost a round trip and a retry. GCRA keeps one number per merchant, the
*theoretical arrival time* (TAT) of the next request: a request at `now` conforms when
`TAT - tolerance <= now`, and then moves TAT to `max(TAT, now) + period`. With burst 1 two
requests are never closer than `period`, so any 60 s window holds at most `60 / period` of them.

>>> pacer = Pacer(rate_per_minute=1800)
>>> await pacer.acquire()          # returns when this merchant may send
>>> pacer.push_back(60)            # FREQ_LIMIT: every caller waits a minute
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hongbao.clock import Clock, SystemClock

__all__ = ["DEFAULT_RATE_PER_MINUTE", "Pacer", "Pacers", "gcra_decide"]

DEFAULT_RATE_PER_MINUTE = 1800
"""WeChat's default send rate per merchant (docs/protocol.md §11)."""

DEFAULT_MARGIN = 0.01
"""Pace 1% under the rate: the server's window sees our requests after network jitter, and a
FREQ_LIMIT costs more than 1% of throughput."""


def gcra_decide(tat: float, now: float, period: float, burst: int = 1) -> tuple[bool, float, float]:
    """One GCRA step: (allowed, new_tat, wait in seconds before trying again).

    `period` is the emission interval in seconds; `burst` requests may go back to back.
    """
    if period <= 0:
        raise ValueError("period must be positive")
    if burst < 1:
        raise ValueError("burst must be >= 1")
    start = max(tat, now)
    conforms_at = start - period * (burst - 1)
    if conforms_at > now:
        return False, tat, conforms_at - now
    return True, start + period, 0.0


class Pacer:
    """An asyncio pacer for one merchant: `acquire()` before each send call."""

    def __init__(
        self,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        *,
        burst: int = 1,
        margin: float = DEFAULT_MARGIN,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        if not 0 <= margin < 1:
            raise ValueError("margin must be in [0, 1)")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self.period = 60.0 / rate_per_minute * (1 + margin)
        self._clock: Clock = clock or SystemClock()
        self._sleep = sleep
        self._tat = float("-inf")
        self._hold_until = float("-inf")

    async def acquire(self) -> None:
        """Wait until a send conforms to the rate (and no push-back holds), then take the slot."""
        while True:
            now = self._clock.monotonic()
            if now < self._hold_until:
                await self._sleep(self._hold_until - now)
                continue
            allowed, tat, wait = gcra_decide(self._tat, now, self.period, self.burst)
            if allowed:
                # No await between the decision and this write: one event loop, one winner.
                self._tat = tat
                return
            await self._sleep(wait)

    def push_back(self, seconds: float) -> None:
        """Hold every caller for `seconds` from now (FREQ_LIMIT, or a daily merchant limit)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._hold_until = max(self._hold_until, self._clock.monotonic() + seconds)

    def __repr__(self) -> str:
        return f"Pacer(rate_per_minute={self.rate_per_minute}, burst={self.burst})"


class Pacers:
    """One `Pacer` per merchant, created on first use with the same settings."""

    def __init__(
        self,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        *,
        burst: int = 1,
        margin: float = DEFAULT_MARGIN,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = (rate_per_minute, burst, margin, clock, sleep)
        self._pacers: dict[str, Pacer] = {}

    def __getitem__(self, mch_id: str) -> Pacer:
        pacer = self._pacers.get(mch_id)
        if pacer is None:
            rate, burst, margin, clock, sleep = self._settings
            pacer = Pacer(rate, burst=burst, margin=margin, clock=clock, sleep=sleep)
            self._pacers[mch_id] = pacer
        return pacer
