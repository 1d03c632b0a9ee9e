"""The root `hongbao` command; each noun is a sub-Typer registered here.

Every command is thin: it parses its options, builds what it needs from the configuration and
delegates. Exit codes (see `hongbao.cli.boundary`): 0 ok, 1 usage or other error,
2 configuration error, 3 not sent (definitive), 4 outcome UNKNOWN (the money may have been sent).

The command modules import the engine, the ledger, the API and the servers inside the commands,
never at the top, so that `--help` and `--version` load none of them and answer at once
(tests/cli/test_startup.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from hongbao import __version__
from hongbao.cli.boundary import HongbaoGroup
from hongbao.cli.campaign import campaign_app
from hongbao.cli.dashboard import dashboard_command
from hongbao.cli.db import db_app
from hongbao.cli.demo import demo_command
from hongbao.cli.payouts import payouts_app
from hongbao.cli.rules import rules_app
from hongbao.cli.send import (
    query_command,
    send_command,
    send_group_command,
    send_mini_command,
    send_workwx_command,
)
from hongbao.cli.serve import serve_command
from hongbao.cli.sim import sim_app
from hongbao.cli.tracking import reconcile_command, track_command
from hongbao.cli.worker import worker_command

app = typer.Typer(
    name="hongbao",
    cls=HongbaoGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    # A traceback (a bug) must never print local variables: they may hold a key or a password.
    pretty_exceptions_show_locals=False,
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
    """WeChat Pay cash red packets (现金红包), paid exactly once.

    Start with `hongbao demo` (no account needed). Exit codes: 0 ok, 1 usage or other error,
    2 configuration error, 3 NOT sent (refused), 4 outcome UNKNOWN: the money may have been
    sent, query it (`hongbao query BILL`) or run the same `hongbao send` with the same --key.
    """


app.command("demo")(demo_command)
app.command("send")(send_command)
app.command("send-group")(send_group_command)
app.command("send-mini")(send_mini_command)
app.command("send-workwx")(send_workwx_command)
app.command("query")(query_command)
app.add_typer(payouts_app, name="payouts")
app.add_typer(campaign_app, name="campaign")
app.command("track")(track_command)
app.command("reconcile")(reconcile_command)
app.add_typer(rules_app, name="rules")
app.add_typer(sim_app, name="sim")
app.add_typer(db_app, name="db")
app.command("worker")(worker_command)
app.command("dashboard")(dashboard_command)
app.command("serve")(serve_command)
