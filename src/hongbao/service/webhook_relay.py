"""The webhook relay: delivers the ledger's outbox to each configured endpoint, at least once.

For every `[[webhooks]]` endpoint the relay queues each outbox event of the types it
subscribes to as one delivery (its JSON body rendered once, so every attempt sends the same
bytes), then POSTs it signed (`hongbao.webhooks`) until the endpoint answers 2xx, backing off
exponentially (`backoff`) for up to `HORIZON` after the event; then it gives up and counts it.

* Nothing is lost in a crash: events are in the ledger before the relay sees them, a queued
  delivery stays due until an answer is recorded, and a delivery in progress is held only for
  the attempt's timeout (`take`), after which any relay sends it again.
* One slow or failing receiver does not hold back the others: at most `PER_ENDPOINT` of its
  deliveries are in flight at once, each bounded by the attempt timeout.
* A new endpoint receives the events of the last `HORIZON`, not the whole history.
* Outbox ids are not committed in id order on PostgreSQL (concurrent transactions), so the
  relay looks again at the events of the last `margin` seconds before it moves past them;
  on SQLite (one writer) they are, and the margin is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

import httpx

from hongbao.clock import Clock, SystemClock
from hongbao.engine.campaign import campaign_status
from hongbao.engine.config import WebhookEndpoint
from hongbao.eventloop import in_thread
from hongbao.ledger import LedgerStore, PayoutState
from hongbao.ledger import deliveries as ledger
from hongbao.ledger.deliveries import Delivery, OutboxEvent
from hongbao.service.models import campaign_object, payout_object
from hongbao.webhooks import SIGNATURE_HEADER, signature_header

__all__ = ["HORIZON", "PER_ENDPOINT", "RelayStats", "WebhookRelay", "backoff", "event_body"]

logger = logging.getLogger("hongbao.webhooks")

A = ParamSpec("A")
T = TypeVar("T")

HORIZON = timedelta(hours=24)
"""How long an event is tried for, and how far back a new endpoint starts."""
PER_ENDPOINT = 4
"""Deliveries in flight to one endpoint at a time."""
_FIRST_DELAY = 5.0
_MAX_DELAY = 3600.0
_BATCH = 200


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failed ones: 5 s doubling to an hour,
    with ±20 % jitter so a recovering receiver is not hit by every retry at once."""
    delay = min(_MAX_DELAY, _FIRST_DELAY * 2.0 ** max(0, attempts - 1))
    jitter: float = (rng or random).random()
    return delay * (0.8 + 0.4 * jitter)


def event_body(store: LedgerStore, event: OutboxEvent) -> str:
    """The JSON body of an outbox event: `{"id", "type", "created", "data"}`."""
    if event.payout_id is not None:
        payout = store.get_payout(event.payout_id)
        data = payout_object(payout, PayoutState(event.state)).model_dump(mode="json")
        if event.err_code and data["error"] is None and event.type != "payout.sent":
            data["error"] = {"code": event.err_code, "message": event.detail, "outcome": "unknown"}
    else:
        assert event.campaign_id is not None
        data = campaign_object(
            store.get_campaign(event.campaign_id), campaign_status(store, event.campaign_id)
        ).model_dump(mode="json")
        data["state"] = event.state
    body = {
        "id": f"evt_{event.id}",
        "type": event.type,
        "created": int(event.at.timestamp()),
        "data": data,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class RelayStats:
    """What the relay did since it started (for /metrics)."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed_attempts: dict[str, int] = field(default_factory=dict)
    given_up: dict[str, int] = field(default_factory=dict)

    def add(self, counter: dict[str, int], endpoint: str) -> None:
        """Count one for `endpoint`."""
        counter[endpoint] = counter.get(endpoint, 0) + 1


class WebhookRelay:
    """Delivers the outbox to `endpoints`; see the module docstring. Run it with `run()`."""

    def __init__(
        self,
        store: LedgerStore,
        endpoints: Sequence[WebhookEndpoint],
        *,
        clock: Clock | None = None,
        executor: Executor | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        poll_seconds: float = 0.5,
        margin: float | None = None,
        on_attempt: Callable[[str, int | None, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.endpoints = {endpoint.url: endpoint for endpoint in endpoints}
        self.clock: Clock = clock or SystemClock()
        self.executor = executor
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        sqlite = store.engine.dialect.name == "sqlite"
        self.margin = timedelta(seconds=(0.0 if sqlite else 30.0) if margin is None else margin)
        self.stats = RelayStats()
        self.on_attempt = on_attempt
        self._http = http
        self._owns_http = http is None
        self._floors: dict[str, int] = {}
        self._in_flight: dict[str, set[asyncio.Task[None]]] = {url: set() for url in self.endpoints}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Queue and deliver until cancelled."""
        try:
            while True:
                try:
                    await self.step()
                except Exception:
                    logger.exception("webhook relay: a step failed; trying again")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            await self.aclose()

    async def step(self) -> int:
        """Queue new events and start the due deliveries; returns how many were started."""
        for endpoint in self.endpoints.values():
            await self._queue_new(endpoint)
        now = self.clock.now()
        due = await self._db(ledger.due_deliveries, self.store.engine, now, _BATCH)
        started = 0
        for delivery in due:
            running = self._in_flight.get(delivery.endpoint)
            if running is None or len(running) >= PER_ENDPOINT:
                continue  # an endpoint no longer configured, or busy
            until = now + timedelta(seconds=self.timeout + 5)
            if not await self._db(ledger.take, self.store.engine, delivery, until):
                continue
            task = asyncio.create_task(self._deliver(delivery))
            running.add(task)
            task.add_done_callback(running.discard)
            started += 1
        return started

    async def drain(self) -> None:
        """Wait for the deliveries in flight."""
        tasks = [task for running in self._in_flight.values() for task in running]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Let the attempts in flight finish, then close the HTTP client this made."""
        await self.drain()
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    async def _queue_new(self, endpoint: WebhookEndpoint) -> None:
        engine = self.store.engine
        now = self.clock.now()
        floor = self._floors.get(endpoint.url)
        if floor is None:
            floor = await self._db(ledger.floor_before, engine, now - HORIZON)
        events = await self._db(
            ledger.unqueued, engine, endpoint.url, endpoint.events, floor, _BATCH
        )
        if events:
            rows = []
            for event in events:
                body = await self._db(event_body, self.store, event)
                rows.append(
                    {
                        "outbox_id": event.id,
                        "endpoint": endpoint.url,
                        "body": body,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": event.at,
                    }
                )
            await self._db(ledger.queue, engine, rows)
        if len(events) < _BATCH:
            # Everything written before the margin is queued: look past it from now on.
            floor = await self._db(ledger.visible_floor, engine, floor, now - self.margin)
        self._floors[endpoint.url] = floor

    async def _deliver(self, delivery: Delivery) -> None:
        endpoint = self.endpoints[delivery.endpoint]
        status: int | None = None
        error: str | None = None
        try:
            secret = endpoint.secret()
            stamp = int(self.clock.now().timestamp())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(delivery.body, secret, stamp),
                "User-Agent": "hongbao-webhooks",
            }
            response = await self._client().post(
                endpoint.url, content=delivery.body.encode(), headers=headers
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a broken secret file: keep trying, say why
            error = str(exc)[:256]
        delivered = error is None
        now = self.clock.now()
        next_at: datetime | None = None
        if delivered:
            self.stats.add(self.stats.delivered, endpoint.url)
        else:
            self.stats.add(self.stats.failed_attempts, endpoint.url)
            later = now + timedelta(seconds=backoff(delivery.attempts + 1))
            if later - delivery.created_at <= HORIZON:
                next_at = later
            else:
                self.stats.add(self.stats.given_up, endpoint.url)
                logger.warning(
                    "webhook %s to %s: given up after %d attempts (%s)",
                    delivery.outbox_id, endpoint.url, delivery.attempts + 1, error,
                )
        if self.on_attempt is not None:
            self.on_attempt(endpoint.url, status, delivered)
        await self._db(
            ledger.record_attempt,
            self.store.engine,
            delivery.id,
            now=now,
            status=status,
            error=error,
            delivered=delivered,
            next_attempt_at=next_at,
        )

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._http

    async def _db(self, work: Callable[A, T], *args: A.args, **kwargs: A.kwargs) -> T:
        return await in_thread(self.executor, work, *args, **kwargs)
