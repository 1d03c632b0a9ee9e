"""`Rounds`: the callers queued while a round runs share the next one; each gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from hongbao.engine.rounds import Rounds


async def test_callers_queued_during_a_round_share_the_next_and_get_their_own_results() -> None:
    calls: list[list[int]] = []

    async def work(items: list[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    rounds: Rounds[int, int] = Rounds(work)
    first = asyncio.create_task(rounds.submit(0))
    await asyncio.sleep(0.001)  # its round is under way: a lone caller is served at once
    results = await asyncio.gather(first, *(rounds.submit(n) for n in range(1, 20)))

    assert results == [n * 10 for n in range(20)]
    assert calls == [[0], list(range(1, 20))]


async def test_a_failed_round_fails_each_of_its_callers_and_the_next_round_runs() -> None:
    async def work(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("the transaction failed")
        return items

    rounds: Rounds[int, int] = Rounds(work, max_batch=1)
    with pytest.raises(ValueError, match="failed"):
        await rounds.submit(13)
    assert await rounds.submit(7) == 7
    await rounds.aclose()


def test_a_round_takes_at_least_one_item() -> None:
    async def work(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="max_batch"):
        Rounds(work, max_batch=0)
