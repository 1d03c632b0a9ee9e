"""Wrong access tokens slow a client down, then get it refused (429) for a while.

Counted per client address, so an attacker guessing from one address never locks the operator
out from another. The first `FREE` failures are answered at once; each further one waits a
little longer (`STEP` seconds more, up to `MAX_PAUSE`); from `LIMIT` failures on, every token
attempt from that address is refused with 429 until `LOCKOUT` seconds have passed without one.
A right token clears the address's count. Failures are forgotten `FORGET` seconds after the
last one, and at most `MAX_ADDRESSES` addresses are remembered (the oldest go first).

Behind a reverse proxy every client has the proxy's address: the throttle then protects the
token, but one attacker can hold everyone back (see docs/security.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["FREE", "LIMIT", "LOCKOUT", "Throttle"]

FREE = 5
LIMIT = 10
STEP = 0.2
MAX_PAUSE = 1.0
LOCKOUT = 300.0
FORGET = 900.0
MAX_ADDRESSES = 10_000


@dataclass
class _Record:
    failures: int
    last: float


class Throttle:
    """Failure counts per client address (in memory: one dashboard process)."""

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._now = now
        self._sleep = sleep
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _record(self, address: str) -> _Record | None:
        record = self._records.get(address)
        if record is not None and self._now() - record.last > FORGET:
            del self._records[address]
            return None
        return record

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try a token again; None when it may now."""
        record = self._record(address)
        if record is None or record.failures < LIMIT:
            return None
        left = LOCKOUT - (self._now() - record.last)
        return max(1, int(left) + 1) if left > 0 else None

    async def failed(self, address: str) -> None:
        """Count a wrong token from `address`, and make its answer wait as the count says."""
        record = self._record(address)
        if record is None:
            record = _Record(0, 0.0)
            self._records[address] = record
            while len(self._records) > MAX_ADDRESSES:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(address)
        if record.failures >= LIMIT:  # a lockout that ran out: one more try, then locked again
            record.failures = LIMIT - 1
        record.failures += 1
        record.last = self._now()
        pause = min(MAX_PAUSE, STEP * (record.failures - FREE))
        if pause > 0:
            await self._sleep(pause)

    def succeeded(self, address: str) -> None:
        """A right token from `address`: its failures are forgotten."""
        self._records.pop(address, None)
