"""Group commit: the outcomes of many drives committed together, one transaction a round.

Each drive ends in one compare-and-set transition committed with its audit event. On SQLite a
commit is an fsync and the single writer's turn, so with many sends in flight committing each
transition alone makes the ledger the bottleneck. `GroupCommitter.transition` queues the
transition and waits; one flusher takes everything queued, commits it with
`LedgerStore.transition_many` in one transaction, and only then wakes each waiter with its own
result. So a drive still takes its next step (a back-off, a pause, a re-issue) only after its
transition is committed, and a crash before the commit leaves the payout SENDING or UNKNOWN for
recovery, exactly as a crash before a lone commit would.

With a `Refill` (the runner), a round also claims the payouts that the finishing drives make
room for, in the same transaction (`LedgerStore.transition_and_claim`): one commit per round
for both the outcomes and the next work.

There is no timer: a round takes whatever queued while the previous round was committing, so a
lone drive commits at once and a busy runner commits in large rounds.

**Where a round runs.** Store calls block, so a round runs on a thread — except, with
`inline`, on a SQLite ledger whose write lock it can take at once: then it runs on the event
loop's own thread. On a thread, the sqlite3 module gives up the GIL at every row it steps, and
the loop's thread and the round's hand the GIL back and forth hundreds of times a round (futex
calls and context switches): about a tenth of a campaign run's CPU, for an overlap that a
process bound by its own CPU cannot use (`bench/campaign.py`). Inline, a round holds the loop
for its own length (a millisecond or two, its fsync included), never for a lock: when another
process holds SQLite's write lock (`LedgerBusy`), the round waits for it on a thread. The
transaction, its commit and when its waiters wake are the same either way.

>>> committer = GroupCommitter(store)
>>> moved = await committer.transition(Transition(7, SENDING, SENT))  # doctest: +SKIP
>>> await committer.aclose()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol, TypeVar

from hongbao.ledger import ClaimRequest, ClaimResult, LedgerBusy, LedgerStore, Transition

__all__ = ["DEFAULT_MAX_BATCH", "GroupCommitter", "Refill"]

logger = logging.getLogger("hongbao.engine")

T = TypeVar("T")

DEFAULT_MAX_BATCH = 256
"""Transitions one round commits at most (the rest wait for the next round)."""

_Waiting = tuple[Transition, "asyncio.Future[bool]"]


class Refill(Protocol):
    """Who a round claims for: asked as each round starts, told what the round claimed."""

    def claim_for(self, finishing: Sequence[Transition]) -> ClaimRequest | None:
        """What to claim as the drives of these transitions end (None: nothing)."""
        ...

    def claimed(self, request: ClaimRequest, result: ClaimResult | None) -> None:
        """What the round claimed for `request` (None: the round failed, nothing claimed)."""
        ...


class GroupCommitter:
    """Commits queued transitions of one event loop in rounds; see the module docstring.

    Store calls block, so they run on `executor` (None: the loop's default), like
    `PayoutDriver.db`; with `inline`, a SQLite ledger's rounds run on the loop's thread when
    its write lock is free (ignored on PostgreSQL, whose rounds wait on the network).
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        executor: Executor | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        refill: Refill | None = None,
        inline: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.store = store
        self.executor = executor
        self.inline = inline and store.engine.dialect.name == "sqlite"
        self.max_batch = max_batch
        self.refill = refill
        self._queue: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def transition(self, change: Transition) -> bool:
        """Commit `change` (in the next round) and return whether it moved its payout.

        Raises what `LedgerStore.transition` would raise for it. Cancelling the caller does not
        withdraw a queued transition: like a commit already under way, it is committed.
        """
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((change, waiter))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="hongbao-group-commit")
        return await waiter

    @property
    def pending(self) -> int:
        """Transitions queued for the next round (not those of the round being committed)."""
        return len(self._queue)

    async def aclose(self) -> None:
        """Wait until everything queued is committed (or failed)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                await self._round(batch)
        finally:
            self._flusher = None
            # Only left over when the flusher was cancelled: nobody will commit these.
            for _, waiter in self._queue:
                waiter.cancel()
            self._queue = []

    async def _round(self, batch: list[_Waiting]) -> None:
        changes = [change for change, _ in batch]
        request = self.refill.claim_for(changes) if self.refill is not None else None
        claimed: ClaimResult | None = None
        try:
            if request is None:
                moved = await self._run(self.store.transition_many, changes)
            else:
                moved, claimed = await self._run(self.store.transition_and_claim, changes, request)
        except Exception:
            # One bad transition must not fail the others: each commits alone, with its own
            # answer or error (nothing of the failed round, its claim included, was committed).
            logger.debug("group commit of %d transitions failed; one by one", len(batch))
            if request is not None and self.refill is not None:
                self.refill.claimed(request, None)
                request = None
            await self._one_by_one(batch)
        except BaseException as exc:
            # Cancelled, or the process is dying: whether the round committed is for recovery
            # to find out; every waiter of it learns what happened.
            for _, waiter in batch:
                _settle(waiter, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            for (_, waiter), result in zip(batch, moved, strict=True):
                _settle(waiter, result)
        finally:
            if request is not None and self.refill is not None:
                self.refill.claimed(request, claimed)

    async def _one_by_one(self, batch: list[_Waiting]) -> None:
        for change, waiter in batch:
            try:
                [alone] = await self._run(self.store.transition_many, [change])
            except Exception as exc:
                _settle(waiter, exc)
            else:
                _settle(waiter, alone)

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        if self.inline:
            try:
                return work(*args, wait=False)
            except LedgerBusy:
                logger.debug("the ledger's write lock is held: this round waits on a thread")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, work, *args)


def _settle(waiter: asyncio.Future[bool], outcome: bool | BaseException) -> None:
    if waiter.done():  # its drive was cancelled; a commit stands all the same
        return
    if isinstance(outcome, asyncio.CancelledError):
        waiter.cancel()
    elif isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)
