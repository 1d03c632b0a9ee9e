"""How commands print: rich on a terminal, plain lines in a pipe, JSON with `--json`.

>>> print_fields("Sent", [("mch_billno", "1900000109202403150000000001")])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import typer

from hongbao.printable import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = [
    "RunDisplay",
    "is_terminal",
    "note",
    "print_fields",
    "print_json",
    "print_table",
    "stdout_console",
]


def is_terminal() -> bool:
    """Whether stdout is a terminal (then rich output; otherwise plain text)."""
    return sys.stdout.isatty()


def stdout_console() -> Console:
    """A rich console on stdout (only used when `is_terminal()`)."""
    from rich.console import Console

    return Console(highlight=False)


def print_json(document: Any) -> None:
    """One JSON document on stdout (non-ASCII kept readable)."""
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


def note(message: str) -> None:
    """A line for the human on stderr, out of the way of stdout's data."""
    typer.echo(printable(message), err=True)


def print_fields(title: str, rows: Sequence[tuple[str, object]]) -> None:
    """Name/value pairs: a rich table on a terminal, `name  value` lines otherwise."""
    if is_terminal():
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for name, value in rows:
            table.add_row(name, _cell(value))
        stdout_console().print(table)
        return
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        typer.echo(f"{name:<{width}}  {printable(value)}")


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table: rich on a terminal, tab-separated with a header line otherwise."""
    if is_terminal():
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for index, name in enumerate(header):
            table.add_column(name, justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*(_cell(cell) for cell in row))
        stdout_console().print(table)
        return
    typer.echo("\t".join(header))
    for row in rows:
        typer.echo("\t".join(printable(cell) for cell in row))


def _cell(value: object) -> str:
    # Values may come from files or answers: control characters escaped, and no rich markup
    # ("[bold]") taken from them.
    from rich.markup import escape

    return escape(printable(value))


class Advance(Protocol):
    """Anything that says how far a job is: `settled` of `total`."""

    @property
    def total(self) -> int: ...

    @property
    def settled(self) -> int: ...


class RunDisplay:
    """Progress of long work: bars on a terminal, and what it waits for (`status`) — in the
    bar's line on a terminal, as a plain progress line on stderr elsewhere.

    One bar per phase; `phase()` starts the next one below the last.

    >>> with RunDisplay("sending") as display:  # doctest: +SKIP
    ...     run(progress=display.update, on_status=display.status)
    ...     display.phase("tracking")
    """

    def __init__(self, title: str, *, enabled: bool = True, console: Console | None = None) -> None:
        self._progress: Progress | None = None
        self._title = title
        self._done = 0
        self._total: int | None = None
        if enabled and (console is not None or is_terminal()):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=console or stdout_console(),
            )
            self._task = self._progress.add_task(title, total=None, status="")

    def phase(self, title: str) -> None:
        """Start a new bar; later updates move it."""
        self._title, self._done, self._total = title, 0, None
        if self._progress is not None:
            self._task = self._progress.add_task(title, total=None, status="")

    def update(self, advance: Advance) -> None:
        """Move the bar to `advance.settled` of `advance.total`."""
        self.show(advance.settled, advance.total)

    def show(self, done: int, total: int | None) -> None:
        """Move the bar to `done` of `total` (None: not known yet)."""
        self._done, self._total = done, total
        if self._progress is not None:
            self._progress.update(self._task, total=total, completed=done)

    def status(self, line: str | None) -> None:
        """Say what the work waits for (None: nothing): in the bar's line on a terminal, else
        as a progress line on stderr — called at least every few seconds, so a pipe or a log
        is never left silent."""
        text = printable(line) if line else ""
        if self._progress is not None:
            from rich.markup import escape

            self._progress.update(self._task, status=escape(text))
            return
        done = f"{self._done}" if self._total is None else f"{self._done} of {self._total}"
        note(f"{self._title}: {done}" + (f"; {text}" if text else ""))

    def __enter__(self) -> Self:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
