"""`hongbao serve`: the payout service for any backend (HTTP API, webhooks, metrics).

>>> # hongbao serve -c hongbao.toml                    (http://127.0.0.1:8080, loopback: open)
>>> # hongbao serve -c hongbao.toml --host 0.0.0.0     (needs [api] token_file)
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from hongbao.cli.boundary import guard
from hongbao.cli.options import ConfigOption, load, open_ledger
from hongbao.errors import ConfigurationError

__all__ = ["serve_command"]


def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback needs tokens.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8080,
    config: ConfigOption = None,
    certfile: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this certificate (PEM).", show_default=False),
    ] = None,
    keyfile: Annotated[
        Path | None,
        typer.Option(help="The certificate's private key (PEM).", show_default=False),
    ] = None,
    send: Annotated[
        bool | None,
        typer.Option(
            "--send/--no-send",
            help="Send payouts in this process (default: on SQLite yes; on PostgreSQL no — "
            "`hongbao worker`s send).",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log one line per request (no bodies).")
    ] = False,
) -> None:
    """Serve the HTTP API: payouts by Idempotency-Key, campaigns, webhooks, /metrics.

    Every /v1 call needs `Authorization: Bearer TOKEN` when `[api] token_file` is set; on any
    address but loopback it must be set or the service will not start. The API is described
    at /openapi.json and in docs/http-api.md.
    Example: `hongbao serve -c hongbao.toml`, then
    `curl -X POST http://127.0.0.1:8080/v1/payouts -H 'Idempotency-Key: order-1' …`
    """
    import uvicorn

    from hongbao.ledger import display_url
    from hongbao.service.app import create_app
    from hongbao.service.auth import check_bind, load_tokens
    from hongbao.serving import ListeningServer

    with guard(as_json=False):
        settings = load(config)
        tokens = load_tokens(settings.api_token_file)
        check_bind(host, tokens)
        if (certfile is None) != (keyfile is None):
            raise ConfigurationError("--certfile and --keyfile go together")
        for name in settings.merchants:
            settings.merchant(name)  # a missing key or certificate stops it here, named
        open_ledger(settings.ledger_url, create=True).close()
        for endpoint in settings.webhooks:
            endpoint.secret()
        try:
            sock = socket.create_server((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
    scale_out = None if send is None else not send
    app = create_app(settings, tokens=tokens, scale_out=scale_out, access_log=access_log)
    if access_log:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("hongbao.service.access").setLevel(logging.INFO)
    scheme = "https" if certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{sock.getsockname()[1]}"
    sending = "records; workers send" if (send is False or (
        send is None and settings.ledger_url.startswith("postgresql"))) else "sends"
    server = ListeningServer(
        uvicorn.Config(
            app,
            log_level="warning",
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
            server_header=False,
            access_log=False,
        ),
        on_started=lambda: typer.echo(
            f"hongbao serve on {url} over {display_url(settings.ledger_url)} ({sending}; "
            + ("bearer tokens required)" if not tokens.open else "open: loopback only)"),
            err=False,
        ),
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
