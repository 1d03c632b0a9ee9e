"""`hongbao dashboard`: serve the operator's dashboard over the ledger.

The ledger comes from `--ledger` / `HONGBAO_LEDGER_URL`, else the configuration's `[ledger]
url`, else `./hongbao.db`. With a configuration, the charts show each merchant's rate cap and
the reconciliation page can ask WeChat. On a loopback address the dashboard may run open; on any
other it refuses to start (exit code 2) without an access token, read from
`--token-file`, `[dashboard] token_file` or `HONGBAO_DASHBOARD_TOKEN` (never from an option: it
would show in `ps`).

>>> # hongbao dashboard                                 (http://127.0.0.1:8000, open)
>>> # HONGBAO_DASHBOARD_TOKEN=… hongbao dashboard --host 0.0.0.0 -c hongbao.toml
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hongbao.cli.boundary import guard
from hongbao.cli.db import LedgerOption
from hongbao.cli.options import ConfigOption, open_ledger
from hongbao.defaults import DASHBOARD_TOKEN_ENV, DEFAULT_LEDGER_URL
from hongbao.errors import ConfigurationError
from hongbao.eventloop import freeze_heap

if TYPE_CHECKING:
    from hongbao.engine.config import HongbaoConfig
    from hongbao.engine.tracker import ReconcileReport
    from hongbao.ledger import Campaign, LedgerStore
    from hongbao.web.reconciling import Reconciler

__all__ = ["dashboard_command"]


def dashboard_command(
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; anything but loopback needs an access token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8000,
    config: ConfigOption = None,
    ledger: LedgerOption = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            envvar="HONGBAO_DASHBOARD_TOKEN_FILE",
            help=f"A file holding the access token (else {DASHBOARD_TOKEN_ENV}).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this certificate (PEM).", show_default=False),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(help="The certificate's private key (PEM).", show_default=False),
    ] = None,
) -> None:
    """Serve the dashboard: campaigns and their progress, payouts, reconciliation, rules.

    Pause, resume and cancel a campaign from its page. Open on 127.0.0.1; on any other
    address set an access token (`--token-file`, `[dashboard] token_file` in the configuration,
    or `HONGBAO_DASHBOARD_TOKEN`) or it will not start.
    Example: `hongbao dashboard -c hongbao.toml`, then open http://127.0.0.1:8000
    """
    import uvicorn

    from hongbao.ledger import display_url
    from hongbao.web import DashboardSettings, check_bind, create_app

    with guard(as_json=False):
        settings = _config(config)
        token = _token(token_file or (settings.dashboard_token_file if settings else None))
        check_bind(host, token)
        url = ledger or (settings.ledger_url if settings is not None else DEFAULT_LEDGER_URL)
        store = open_ledger(url)
        try:
            sock = socket.create_server((host, port))
        except OSError as exc:
            store.close()
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
    app = create_app(
        DashboardSettings(
            store=store,
            token=token,
            rate_caps=_rate_caps(settings),
            rule_names=sorted(settings.rules) if settings is not None else (),
            reconciler=_reconciler(store, settings),
        )
    )
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"dashboard on {scheme}://{shown}:{sock.getsockname()[1]}/ over {display_url(url)}"
        + (" (access token required)" if token else " (open: loopback only)")
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
            server_header=False,
        )
    )
    try:
        freeze_heap()
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()


def _token(token_file: Path | None) -> str | None:
    """The access token from this file (`--token-file`, else `[dashboard] token_file`), else
    the environment; None when none is set."""
    from hongbao.engine.config import read_secret_file

    if token_file is not None:
        token = read_secret_file(token_file, "the dashboard's token file")
        if not token:
            raise ConfigurationError(f"the token file {token_file} is empty")
        return token
    return os.environ.get(DASHBOARD_TOKEN_ENV, "").strip() or None


def _config(config: Path | None) -> HongbaoConfig | None:
    """The configuration when one is named or `./hongbao.toml` exists (it is optional here)."""
    from hongbao.engine.config import config_path, load_config

    path = config_path(config)
    if config is None and not path.exists():
        return None
    return load_config(path)


def _rate_caps(settings: HongbaoConfig | None) -> dict[str, int]:
    from hongbao.engine.settings import MerchantProfile

    if settings is None:
        return {}
    default = next(f.default for f in fields(MerchantProfile) if f.name == "rate_per_minute")
    return {
        name: int(section.get("rate_per_minute", default))
        for name, section in settings.merchants.items()
    }


def _reconciler(store: LedgerStore, settings: HongbaoConfig | None) -> Reconciler | None:
    from hongbao.engine.tracker import reconcile

    if settings is None or not settings.merchants:
        return None

    async def reconcile_campaign(campaign: Campaign) -> ReconcileReport:
        # Reading the merchant's key and certificate touches files: off the event loop.
        profile = await asyncio.to_thread(settings.profile, campaign.merchant)
        return await reconcile(store, profile, campaign_id=campaign.id)

    return reconcile_campaign
