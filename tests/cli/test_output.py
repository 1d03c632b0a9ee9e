"""Output: a progress bar on a terminal, nothing of it in a pipe."""

from __future__ import annotations

import io
from dataclasses import dataclass

from rich.console import Console

from hongbao.cli.output import RunDisplay


@dataclass(frozen=True)
class Step:
    total: int
    settled: int


def test_the_progress_bar_follows_the_run_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with RunDisplay("campaign 7", console=console) as display:
        display.update(Step(total=10, settled=3))
        display.update(Step(total=10, settled=10))
    assert "campaign 7" in screen.getvalue()
    assert "10/10" in screen.getvalue()


def test_no_progress_bar_when_disabled() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with RunDisplay("campaign 7", enabled=False, console=console) as display:
        display.update(Step(total=10, settled=3))
    assert screen.getvalue() == ""
