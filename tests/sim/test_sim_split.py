"""The fission split of docs/protocol.md §6.7: sums, bounds and reproducibility."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.sim.split import MIN_SHARE, SHARE_CAP, split_shares


@st.composite
def feasible(draw: st.DrawFn) -> tuple[int, int, int]:
    count = draw(st.integers(min_value=1, max_value=20))
    cap = draw(st.integers(min_value=MIN_SHARE, max_value=SHARE_CAP))
    total = draw(st.integers(min_value=MIN_SHARE * count, max_value=cap * count))
    return total, count, cap


@given(feasible(), st.integers())
def test_shares_sum_to_the_total_and_stay_within_bounds(
    case: tuple[int, int, int], seed: int
) -> None:
    total, count, cap = case
    shares = split_shares(total, count, random.Random(seed), cap=cap)
    assert len(shares) == count
    assert sum(shares) == total
    assert all(MIN_SHARE <= share <= cap for share in shares)


@given(st.integers(min_value=3, max_value=20), st.integers())
def test_the_same_seed_gives_the_same_split(count: int, seed: int) -> None:
    total = 20_000 * count
    first = split_shares(total, count, random.Random(seed))
    assert split_shares(total, count, random.Random(seed)) == first


def test_splits_are_random_between_seeds() -> None:
    splits = {tuple(split_shares(2000, 5, random.Random(seed))) for seed in range(20)}
    assert len(splits) > 1


@pytest.mark.parametrize(("total", "count"), [(299, 3), (100_001, 1), (0, 3)])
def test_impossible_splits_are_refused(total: int, count: int) -> None:
    with pytest.raises(ValueError, match="cannot be split"):
        split_shares(total, count, random.Random(1))
