"""A pacer shared by every process on every machine: GCRA over one PostgreSQL row per merchant.

`SharedPacer` is a `Pacer` whose state is not in the process: slots are reserved with one atomic
`UPDATE … RETURNING` on the merchant's `limiter_state` row (the database's clock is the only
clock), and each `acquire()` sleeps until its slot starts. N workers on M machines therefore send
at most the merchant's rate together. `push_back` (FREQ_LIMIT, a daily limit) moves the row's
schedule, so every worker waits, not only the one that was told.

When several sends of one process wait at once, one `UPDATE` reserves consecutive slots for all
of them (as many as fit in `RESERVE_SPAN` seconds of the schedule): the row is locked once for
several sends. A slot is never handed out before it starts, and one not taken within the span
after it started is dropped, so a slot is used at most that late, and an idle process wastes
at most that much of the schedule.

>>> pacer = SharedPacer(store.engine, "1900000109", rate_per_minute=1800)  # doctest: +SKIP
>>> await pacer.acquire()
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from sqlalchemy import Engine

from hongbao.clock import Clock
from hongbao.engine.limiter import DEFAULT_MARGIN, Pacer
from hongbao.ledger.dispatch import hold_slots, take_slots

__all__ = ["RESERVE_SPAN", "SharedPacer"]

RESERVE_SPAN = 0.1
"""Seconds of the schedule one reservation takes at most, by default (and how late a slot may
be used)."""
MAX_RESERVED = 64
"""Slots one reservation takes at most, however short the period."""


class SharedPacer(Pacer):
    """A `Pacer` whose schedule is the `limiter_state` row `key` in PostgreSQL.

    `key` is the merchant number for sends; queries use another key (`"<mch_id>:query"`).
    Database calls run on `executor` (None: the loop's default), never on the event loop.
    `reserve_span`: seconds of the schedule one reservation takes at most.
    """

    def __init__(
        self,
        engine: Engine,
        key: str,
        rate_per_minute: float,
        *,
        burst: int = 1,
        margin: float = DEFAULT_MARGIN,
        executor: Executor | None = None,
        reserve_span: float = RESERVE_SPAN,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(rate_per_minute, burst=burst, margin=margin, clock=clock, sleep=sleep)
        self.engine = engine
        self.key = key
        self.reserve_span = reserve_span
        self.max_reserved = max(1, min(MAX_RESERVED, int(reserve_span / self.period)))
        """Slots one reservation takes at most."""
        self._executor = executor
        self._holds: list[asyncio.Future[None]] = []
        self._slots: deque[float] = deque()  # reserved, on the monotonic clock, in order
        self._waiting = 0
        self._reserving: asyncio.Future[None] | None = None
        self._generation = 0  # bumped by push_back: reservations made before it are void

    async def acquire(self) -> None:
        """Take this process's next slot in the shared schedule and wait until it starts."""
        start = await self._next_slot()
        wait = start - self._clock.monotonic()
        if wait > 0:
            await self._sleep(wait)

    async def _next_slot(self) -> float:
        self._waiting += 1
        try:
            while True:
                late = self._clock.monotonic() - self.reserve_span
                while self._slots and self._slots[0] < late:
                    self._slots.popleft()  # nobody took it in time: never used late
                if self._slots:
                    return self._slots.popleft()
                if self._reserving is None:
                    self._reserving = asyncio.ensure_future(self._reserve())
                # Shielded: a cancelled waiter leaves the reservation to the others.
                await asyncio.shield(self._reserving)
        finally:
            self._waiting -= 1

    async def _reserve(self) -> None:
        # A task: it starts once the sends that wait now have all queued, and reserves for all.
        try:
            loop = asyncio.get_running_loop()
            holds, self._holds = self._holds, []
            # A push-back asked for before this reservation is in the schedule before it.
            for hold in holds:
                await hold
            generation = self._generation
            count = min(self.max_reserved, self._waiting)
            take = functools.partial(
                take_slots, self.engine, self.key, count, period=self.period, burst=self.burst
            )
            waits = await loop.run_in_executor(self._executor, take)
            # Counted from after the answer came back: later than on the database's clock.
            now = self._clock.monotonic()
            if generation == self._generation:
                self._slots.extend(now + wait for wait in waits)
        finally:
            self._reserving = None

    def push_back(self, seconds: float) -> None:
        """Hold every process's sends for `seconds` from now (written in the background)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._generation += 1
        self._slots.clear()
        hold = functools.partial(
            hold_slots, self.engine, self.key, seconds, period=self.period, burst=self.burst
        )
        self._holds.append(asyncio.get_running_loop().run_in_executor(self._executor, hold))

    def __repr__(self) -> str:
        return f"SharedPacer(key={self.key!r}, rate_per_minute={self.rate_per_minute})"
