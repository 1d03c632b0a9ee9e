"""Rounds: many callers' requests served by one call per round, like a group commit.

`Rounds.submit(item)` queues the item and waits; one flusher takes everything queued while the
previous round ran and hands it to `work` in one call (one transaction, one commit), then gives
each caller its own result. There is no timer: a lone caller is served at once, and busy callers
share large rounds. A round that raises fails each of its callers with that error (a
transaction that failed committed nothing).

>>> rounds = Rounds(record_many)  # doctest: +SKIP
>>> payout = await rounds.submit(new)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Rounds"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class Rounds(Generic[I, O]):
    """Serves queued items a round at a time with `work(items) -> results` (same order)."""

    def __init__(
        self, work: Callable[[list[I]], Awaitable[Sequence[O]]], *, max_batch: int = 256
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._work = work
        self._max_batch = max_batch
        self._queue: list[tuple[I, asyncio.Future[O]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> O:
        """`item`'s result from the next round (a cancelled caller's item is still served)."""
        waiter: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._queue.append((item, waiter))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="hongbao-rounds")
        return await waiter

    async def aclose(self) -> None:
        """Wait until everything queued is served."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                self._queue = self._queue[self._max_batch :]
                try:
                    results = await self._work([item for item, _ in batch])
                except BaseException as exc:
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for (_, waiter), result in zip(batch, results, strict=True):
                        if not waiter.done():
                            waiter.set_result(result)
        finally:
            self._flusher = None
            for _, waiter in self._queue:
                waiter.cancel()
            self._queue = []
