"""What `hongbao serve` holds while it runs: the ledger, payouts on demand, runs, the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

from fastapi import Request

from hongbao.engine.config import HongbaoConfig
from hongbao.engine.ondemand import AsyncPayouts
from hongbao.eventloop import in_thread
from hongbao.ledger import LedgerStore
from hongbao.service.metrics import Metrics
from hongbao.service.webhook_relay import WebhookRelay

__all__ = ["Service", "service_of"]

A = ParamSpec("A")
T = TypeVar("T")


@dataclass(slots=True)
class Service:
    """The running service (one per app)."""

    config: HongbaoConfig
    payouts: AsyncPayouts
    metrics: Metrics
    scale_out: bool
    """PostgreSQL with workers: requests record, `hongbao worker`s send."""
    uploads: Path
    """Where campaign files sent over the API are kept (the ledger refers to them)."""
    relay: WebhookRelay | None = None
    runs: dict[int, asyncio.Task[object]] = field(default_factory=dict)
    """Campaign runs this process drives (embedded mode)."""

    @property
    def store(self) -> LedgerStore:
        """The ledger."""
        return self.payouts.store

    async def db(self, work: Callable[A, T], *args: A.args, **kwargs: A.kwargs) -> T:
        """Run a blocking ledger call off the event loop."""
        return await in_thread(None, work, *args, **kwargs)


async def service_of(request: Request) -> Service:
    """The route's dependency: the app's `Service` (async: FastAPI would run a plain function
    in its thread pool, a hand-off per request)."""
    found = request.app.state.service
    assert isinstance(found, Service)
    return found
