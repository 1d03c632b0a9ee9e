"""`hongbao serve`: the payout service for any backend — the FastAPI app.

One process holds the ledger, `AsyncPayouts` (the dispatch core's payouts on demand), the
webhook relay and the metrics. Embedded (SQLite), it also sends: payouts recorded with
`wait=0`, and the campaign runs it starts. Scale-out (PostgreSQL), it records and defers:
`hongbao worker`s send (a request with `wait` > 0 still drives its own payout, once).
The routes are in `payout_routes` and `campaign_routes`; docs/http-api.md is the user's guide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hongbao import __version__
from hongbao.api import AsyncClient
from hongbao.clock import Clock
from hongbao.engine.config import HongbaoConfig
from hongbao.engine.ondemand import AsyncPayouts
from hongbao.engine.settings import RunSettings
from hongbao.ledger import LedgerStore, deliveries, schema_status
from hongbao.service import campaign_routes, payout_routes
from hongbao.service.auth import Tokens
from hongbao.service.metrics import LedgerCollector, MeteredTransport, Metrics
from hongbao.service.models import Problem
from hongbao.service.problems import PROBLEM_JSON, install_handlers, known_query, problem
from hongbao.service.state import Service
from hongbao.service.webhook_relay import WebhookRelay

__all__ = ["create_app"]

logger = logging.getLogger("hongbao.service.access")


class AccessLog:
    """One JSON line per request: method, path (no query), status and milliseconds — never a
    header (tokens) or a body (openids). Plain ASGI: nothing else on the hot path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            line = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            }
            logger.info(json.dumps(line))


def create_app(
    config: HongbaoConfig,
    *,
    tokens: Tokens | None = None,
    scale_out: bool | None = None,
    clients: Mapping[str, AsyncClient] | None = None,
    clock: Clock | None = None,
    settings: RunSettings | None = None,
    uploads: Path | None = None,
    relay_poll: float = 0.5,
    access_log: bool = False,
) -> FastAPI:
    """The service's app over `config`'s ledger and merchants.

    `scale_out` (default: the ledger is PostgreSQL) leaves sending to `hongbao worker`s.
    `clients` replace the merchants' `AsyncClient`s (tests pass in-process simulators').
    `uploads` (default: `campaign-files/` beside the configuration) keeps campaign files.
    `access_log` logs one JSON line per request on the `hongbao.service.access` logger.
    """
    tokens = tokens or Tokens()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        made: dict[str, AsyncClient] = {}
        for name in config.merchants:
            client = (clients or {}).get(name) or AsyncClient(config.merchant(name), clock=clock)
            client.transport = MeteredTransport(client.transport, metrics, name)
            made[name] = client
        postgres = config.ledger_url.startswith("postgresql")
        outward = postgres if scale_out is None else scale_out
        payouts = AsyncPayouts.from_config(
            config, clients=made, clock=clock, settings=settings, dispatch=not outward
        )
        service = Service(
            config=config,
            payouts=payouts,
            metrics=metrics,
            scale_out=outward,
            uploads=uploads or config.path.parent / "campaign-files",
        )
        store = payouts.store
        metrics.registry.register(
            LedgerCollector(store.count_by_state, lambda: _numbered(config, store))
        )
        tasks: list[asyncio.Task[None]] = []
        if config.webhooks:
            service.relay = WebhookRelay(
                store,
                config.webhooks,
                clock=clock,
                poll_seconds=relay_poll,
                on_attempt=lambda url, status, ok: metrics.webhook_attempts.labels(
                    _number(config, url), "delivered" if ok else "failed"
                ).inc(),
            )
            tasks.append(asyncio.create_task(service.relay.run(), name="webhook-relay"))
        if not outward:
            for name in payouts.merchants:
                await payouts.start(name)  # sends what a crash left recorded
        app.state.service = service
        try:
            yield
        finally:
            for task in [*service.runs.values(), *tasks]:
                task.cancel()
            await asyncio.gather(*service.runs.values(), *tasks, return_exceptions=True)
            await payouts.aclose()
            for client in made.values():
                await client.aclose()

    app = FastAPI(
        title="hongbao",
        version=__version__,
        summary="WeChat Pay red packets, exactly once, for any backend",
        description="Payouts by idempotency key, campaigns, signed webhooks. "
        "See docs/http-api.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_handlers(app)
    guarded = [Depends(tokens), Depends(known_query)]
    app.include_router(payout_routes.router, dependencies=guarded)
    app.include_router(campaign_routes.router, dependencies=guarded)

    if access_log:
        app.add_middleware(AccessLog)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The ledger is reachable and current",
             responses={503: {"model": Problem, "content": {PROBLEM_JSON: {}},
                              "description": "Not ready (the detail says why)"}})
    async def readyz(request: Request) -> Response:
        service: Service = request.app.state.service
        try:
            status = await service.db(schema_status, service.store.engine)
        except Exception as exc:  # any failure to reach the ledger means not ready
            return problem(503, f"the ledger is not reachable: {type(exc).__name__}")
        if not status.up_to_date:
            return problem(
                503, f"the ledger is at {status.current}, not {status.head}: hongbao db upgrade"
            )
        return Response('{"status":"ready"}', media_type="application/json")

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics",
             response_class=PlainTextResponse)
    async def prometheus(request: Request) -> Response:
        service: Service = request.app.state.service
        text = await service.db(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return app


def _number(config: HongbaoConfig, url: str) -> str:
    for number, endpoint in enumerate(config.webhooks, 1):
        if endpoint.url == url:
            return str(number)
    return "0"


def _numbered(config: HongbaoConfig, store: LedgerStore) -> dict[str, tuple[int, int]]:
    counts = deliveries.backlog(store.engine)
    return {_number(config, url): pending for url, pending in counts.items()}
