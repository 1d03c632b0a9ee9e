"""`hongbao db …`: bring the ledger's schema up to date, and show where it stands.

The ledger is a SQLite file by default; PostgreSQL by URL. The URL may carry a password, so it is
read from `--ledger`, `HONGBAO_LEDGER_URL` or the configuration's `[ledger] url`, and only ever
printed with the password hidden.

Each ledger has an identity (1 … 3332) that takes part in every bill number it mints, so that
two ledgers of one merchant never mint the same one: drawn at random when the ledger is created,
set with `--ledger-id` to make sure two ledgers differ, shown by `status`.

>>> # hongbao db upgrade --ledger postgresql+psycopg://hongbao@db/hongbao
>>> # hongbao db upgrade --ledger-id 2
>>> # hongbao db status --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from hongbao.cli.boundary import FastHelpGroup
from hongbao.cli.options import ConfigOption
from hongbao.defaults import DEFAULT_LEDGER_URL
from hongbao.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.exc import SQLAlchemyError

__all__ = ["db_app"]

EXIT_CONFIGURATION = 2
"""Exit status when the ledger cannot be used as configured."""

db_app = typer.Typer(
    name="db",
    help="Manage the ledger database: schema upgrades and status.",
    no_args_is_help=True,
    cls=FastHelpGroup,
)

LedgerOption = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        envvar="HONGBAO_LEDGER_URL",
        help=(
            "Ledger database URL: sqlite:///path.db or postgresql+psycopg://user@host/db "
            f"(default: the configuration's [ledger] url, else {DEFAULT_LEDGER_URL})."
        ),
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
LedgerIdOption = Annotated[
    int | None,
    typer.Option(
        "--ledger-id",
        help=(
            "Give the ledger this identity (1 to 3332), part of every bill number it mints: "
            "two ledgers paying from one merchant must have distinct ones. A new ledger "
            "otherwise draws one at random; an existing one keeps its own."
        ),
        show_default=False,
    ),
]


def _ledger_url(ledger: str | None, config: Path | None) -> str:
    """`--ledger`/`HONGBAO_LEDGER_URL`, else the configuration's `[ledger] url` when there is a
    configuration file, else the default SQLite file."""
    if ledger:
        return ledger
    from hongbao.engine.config import config_path, load_config

    path = config_path(config)
    if config is not None or path.exists():
        return load_config(path).ledger_url
    return DEFAULT_LEDGER_URL


def _resolved(ledger: str | None, config: Path | None) -> str:
    try:
        return _ledger_url(ledger, config)
    except ConfigurationError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_CONFIGURATION)


def _database_error(action: str, url: str, exc: SQLAlchemyError) -> NoReturn:
    from sqlalchemy.exc import DBAPIError

    from hongbao.ledger import display_url

    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    _fail(f"cannot {action} ledger {display_url(url)}: {first_line}")


@db_app.command("upgrade")
def upgrade_command(
    ledger: LedgerOption = None,
    config: ConfigOption = None,
    ledger_id: LedgerIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create the ledger's tables, or migrate them to this hongbao's schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from hongbao.ledger import display_url, schema_status, upgrade

    url = _resolved(ledger, config)
    try:
        before = upgrade(url, ledger_id=ledger_id)
        after = schema_status(url)
        jobs_installed = _install_jobs(url)
    except ConfigurationError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _database_error("upgrade", url, exc)
    shown = display_url(url)
    if jobs_installed and not as_json:
        typer.echo(f"ledger {shown}: scale-out job tables (procrastinate) installed")
    if as_json:
        document = {
            "ledger": shown,
            "before": before.current,
            "current": before.head,
            "upgraded": not before.up_to_date,
            "jobs_installed": jobs_installed,
            "ledger_id": after.ledger_id,
            "ledger_id_before": before.ledger_id,
        }
        typer.echo(json.dumps(document))
        return
    if before.up_to_date:
        typer.echo(f"ledger {shown} is up to date (schema {before.head})")
    else:
        typer.echo(f"ledger {shown} upgraded: schema {before.current or 'empty'} -> {before.head}")
    if before.ledger_id is None:
        typer.echo(f"ledger identity {after.ledger_id} ({_how_chosen(ledger_id)})")
    elif before.ledger_id != after.ledger_id:
        typer.echo(f"ledger identity changed: {before.ledger_id} -> {after.ledger_id}")
    else:
        typer.echo(f"ledger identity {after.ledger_id}")


def _how_chosen(ledger_id: int | None) -> str:
    if ledger_id is not None:
        return "as given"
    return "drawn at random; --ledger-id N sets it"


def _install_jobs(url: str) -> bool:
    """On PostgreSQL, install the scale-out workers' job tables too; True if installed now."""
    from hongbao.ledger import create_ledger_engine
    from hongbao.ledger.db import normalise_url

    if normalise_url(url).get_backend_name() != "postgresql":
        return False
    from hongbao.engine.distributed import install_schema

    engine = create_ledger_engine(url)
    try:
        return install_schema(engine)
    finally:
        engine.dispose()


@db_app.command("status")
def status_command(
    ledger: LedgerOption = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Show the ledger's schema revision; exit status 2 when it needs `hongbao db upgrade`."""
    from sqlalchemy.exc import SQLAlchemyError

    from hongbao.ledger import display_url, schema_status

    url = _resolved(ledger, config)
    try:
        status = schema_status(url)
    except ConfigurationError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _database_error("read", url, exc)
    shown = display_url(url)
    if as_json:
        document = {
            "ledger": shown,
            "current": status.current,
            "head": status.head,
            "up_to_date": status.up_to_date,
            "ledger_id": status.ledger_id,
        }
        typer.echo(json.dumps(document))
    elif status.up_to_date:
        typer.echo(f"ledger {shown} is at schema {status.head} (up to date)")
    else:
        typer.echo(
            f"ledger {shown} is at schema {status.current or 'empty'}, this hongbao needs "
            f"{status.head}: run `hongbao db upgrade`"
        )
    if status.ledger_id is not None and not as_json:
        typer.echo(f"ledger identity {status.ledger_id} (in every bill number it mints)")
    if not status.up_to_date:
        raise typer.Exit(EXIT_CONFIGURATION)
