"""A pacer shared by every process on every machine: GCRA over one PostgreSQL row per merchant.

`SharedPacer` is a `Pacer` whose state is not in the process: each `acquire()` reserves the next
slot with one atomic `UPDATE … RETURNING` on the merchant's `limiter_state` row (the database's
clock is the only clock) and sleeps until the slot starts. N workers on M machines therefore send
at most the merchant's rate together. `push_back` (FREQ_LIMIT, a daily limit) moves the row's
schedule, so every worker waits, not only the one that was told.

>>> pacer = SharedPacer(store.engine, "1900000109", rate_per_minute=1800)  # doctest: +SKIP
>>> await pacer.acquire()
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from sqlalchemy import Engine

from hongbao.engine.limiter import DEFAULT_MARGIN, Pacer
from hongbao.ledger.dispatch import hold_slots, take_slot

__all__ = ["SharedPacer"]


class SharedPacer(Pacer):
    """A `Pacer` whose schedule is the `limiter_state` row `key` in PostgreSQL.

    `key` is the merchant number for sends; queries use another key (`"<mch_id>:query"`).
    Database calls run on `executor` (None: the loop's default), never on the event loop.
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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(rate_per_minute, burst=burst, margin=margin, sleep=sleep)
        self.engine = engine
        self.key = key
        self._executor = executor
        self._holds: list[asyncio.Future[None]] = []

    async def acquire(self) -> None:
        """Reserve this process's next slot in the shared schedule and wait until it starts."""
        loop = asyncio.get_running_loop()
        holds, self._holds = self._holds, []
        # A push-back asked for before this call is in the schedule before this slot is taken.
        for hold in holds:
            await hold
        take = functools.partial(
            take_slot, self.engine, self.key, period=self.period, burst=self.burst
        )
        wait = await loop.run_in_executor(self._executor, take)
        if wait > 0:
            await self._sleep(wait)

    def push_back(self, seconds: float) -> None:
        """Hold every process's sends for `seconds` from now (written in the background)."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        hold = functools.partial(
            hold_slots, self.engine, self.key, seconds, period=self.period, burst=self.burst
        )
        self._holds.append(asyncio.get_running_loop().run_in_executor(self._executor, hold))

    def __repr__(self) -> str:
        return f"SharedPacer(key={self.key!r}, rate_per_minute={self.rate_per_minute})"
