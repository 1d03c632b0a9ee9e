"""Fixtures for the api tests; the helpers themselves live in `apikit`."""

from __future__ import annotations

import pytest

from tests.api.apikit import Sleeps


@pytest.fixture
def sleeps() -> Sleeps:
    """The delays a client waited (it never really sleeps in tests)."""
    return Sleeps()
