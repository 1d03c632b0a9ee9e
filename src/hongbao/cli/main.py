"""The root `hongbao` command; each noun is a sub-Typer registered here."""

from __future__ import annotations

from typing import Annotated

import typer

from hongbao import __version__
from hongbao.cli.db import db_app
from hongbao.cli.sim import sim_app

app = typer.Typer(
    name="hongbao",
    help="WeChat Pay cash red packets (现金红包), paid exactly once.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hongbao {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """WeChat Pay cash red packets (现金红包), paid exactly once."""


app.add_typer(sim_app, name="sim")
app.add_typer(db_app, name="db")
