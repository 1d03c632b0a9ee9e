"""The root `hongbao` command; each noun is a command or a sub-Typer listed in `COMMANDS`.

Every command is thin: it parses its options, builds what it needs from the configuration and
delegates. Exit codes (see `hongbao.cli.boundary`): 0 ok, 1 usage or other error,
2 configuration error, 3 not sent (definitive), 4 outcome UNKNOWN (the money may have been sent).

A command's module is imported, and the command built, only when the command is looked up
(`hongbao.cli.lazy`); the command modules import the engine, the ledger, the API and the servers
inside the commands, never at the top, so that `--help` and `--version` load none of them and
answer at once, and `hongbao campaign run` loads only what it runs (tests/cli/test_startup.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hongbao import __version__, eventloop
from hongbao.cli.boundary import HongbaoGroup
from hongbao.cli.lazy import LazyCommands

COMMANDS = {
    "demo": "hongbao.cli.demo:demo_command",
    "send": "hongbao.cli.send:send_command",
    "send-group": "hongbao.cli.send:send_group_command",
    "send-mini": "hongbao.cli.send:send_mini_command",
    "send-workwx": "hongbao.cli.send:send_workwx_command",
    "query": "hongbao.cli.send:query_command",
    "track": "hongbao.cli.tracking:track_command",
    "reconcile": "hongbao.cli.tracking:reconcile_command",
    "worker": "hongbao.cli.worker:worker_command",
    "dashboard": "hongbao.cli.dashboard:dashboard_command",
    "serve": "hongbao.cli.serve:serve_command",
    "payouts": "hongbao.cli.payouts:payouts_app",
    "campaign": "hongbao.cli.campaign:campaign_app",
    "rules": "hongbao.cli.rules:rules_app",
    "sim": "hongbao.cli.sim:sim_app",
    "db": "hongbao.cli.db:db_app",
}
"""Each command, in the order `--help` lists them → where it lives ("module:attribute")."""

_SETTINGS: dict[str, Any] = {
    "rich_markup_mode": "markdown",
    "add_completion": False,
    # A traceback (a bug) must never print local variables: they may hold a key or a password.
    "pretty_exceptions_show_locals": False,
}


class _RootGroup(HongbaoGroup):
    """The root group, its commands built when looked up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = LazyCommands(COMMANDS, _SETTINGS)


app = typer.Typer(name="hongbao", cls=_RootGroup, no_args_is_help=True, **_SETTINGS)


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


def console() -> None:
    """The `hongbao` console script: `app` in a process of its own (see `eventloop.freeze_heap`)."""
    eventloop.command_process()
    app()
