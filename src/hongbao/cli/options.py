"""Options shared by the commands, and what they build: the configuration and the ledger.

Secrets are never options: the API key and passwords come from the configuration file, files it
names, or environment variables (see `hongbao.engine.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hongbao.defaults import CONFIG_ENV
from hongbao.errors import ConfigurationError
from hongbao.money import Fen, MoneyError, parse_yuan

if TYPE_CHECKING:
    from hongbao.engine.config import HongbaoConfig
    from hongbao.ledger import LedgerStore

__all__ = [
    "AmountOption",
    "ConfigOption",
    "JsonOption",
    "MerchantOption",
    "load",
    "open_ledger",
    "yuan",
]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=CONFIG_ENV,
        help="The configuration file (default: ./hongbao.toml).",
        dir_okay=False,
        show_default=False,
    ),
]
MerchantOption = Annotated[
    str | None,
    typer.Option(
        "--merchant",
        "-m",
        envvar="HONGBAO_MERCHANT",
        help="Which [merchants.NAME] of the configuration (needed when it has several).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
AmountOption = Annotated[
    str,
    typer.Option(
        "--amount",
        metavar="YUAN",
        help='Amount in yuan, at most two decimals ("1", "1.5", "1.50"); never rounded.',
    ),
]


def load(config: Path | None) -> HongbaoConfig:
    """The configuration named by `--config`, `HONGBAO_CONFIG` or `./hongbao.toml`."""
    from hongbao.engine.config import config_path, load_config

    return load_config(config_path(config))


def open_ledger(url: str, *, create: bool = False) -> LedgerStore:
    """The ledger at `url`. With `create`, a SQLite ledger that has no tables yet gets them.

    Any other ledger must be at this hongbao's schema already: `hongbao db upgrade` migrates
    it, so that changing a production database stays a deliberate step.
    """
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    from hongbao.ledger import LedgerStore, display_url, schema_status, upgrade

    try:
        if url.startswith("sqlite:") and schema_status(url).current is None:
            if not create:
                raise ConfigurationError(
                    f"there is no ledger at {display_url(url)} yet: create a campaign first, "
                    "or check [ledger] url in the configuration"
                )
            upgrade(url)
            typer.echo(f"created the ledger {display_url(url)}", err=True)
        return LedgerStore.open(url)
    except (OperationalError, InterfaceError) as exc:
        # Unreachable, no such database, refused credentials: the URL is the thing to fix.
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigurationError(
            f"cannot open the ledger {display_url(url)}: {detail}; check [ledger] url in the "
            "configuration and that the database server is running"
        ) from None


def yuan(value: str, option: str = "--amount") -> Fen:
    """Parse a yuan amount of an option; a bad one is a usage error naming the option."""
    try:
        return parse_yuan(value)
    except MoneyError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
