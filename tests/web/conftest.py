"""Fixtures of the dashboard tests: a filled ledger, and headless Chromium for browser tests.

Browser tests drive Debian's `chromium` through Playwright (no browser download). Without it
they skip locally, and fail in CI (`CI=true` or `HONGBAO_REQUIRE_BROWSER=1`), like the
PostgreSQL tests do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.web.webkit import Filled, filled_bench

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


@pytest.fixture
def filled(ledger_url: str, tmp_path: Path) -> Iterator[Filled]:
    """A finished campaign on SQLite and on PostgreSQL."""
    found = filled_bench(ledger_url, tmp_path)
    yield found
    found.bench.store.close()
    found.bench.sim.close()


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true" or os.environ.get("HONGBAO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (required in CI: .ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium binary."""
    for candidate in (*CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    _missing("Chromium is not installed (apt-get install chromium)")
    raise AssertionError("unreachable")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $HONGBAO_ARTIFACTS/<test>, else the test's tmp dir."""
    root = os.environ.get("HONGBAO_ARTIFACTS")
    folder = Path(root) / tmp_path.name if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    """Headless Chromium driven by Playwright's sync API."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
        raise
    # Chromium's sandbox needs user namespaces, which a root CI container lacks.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, args=args)
        yield launched
        launched.close()
