"""Delivering payment result notifications to the merchant's `notify_url` over HTTP(S).

`PaymentDesk` takes a payment in the registry's name (merchant, appid and openid must exist
and belong together), then delivers its notification in the background of the running event
loop: the served app's, or a test's. `deliver` is the delivery itself, usable on its own with
any `httpx.AsyncClient` (e.g. one over `httpx.ASGITransport` to an app in the same process).

A delivery counts as acknowledged when the answer is HTTP 200 with `return_code` SUCCESS; a
timeout (5 s by default: "none within a few seconds counts as a failure"), a refused connection,
any other status or body is a failure and, on WeChat's schedule, brings a resend.

>>> desk = PaymentDesk(sim.state, sim.clock)  # doctest: +SKIP
>>> record = await desk.pay(PayOrder.from_json({...}))  # doctest: +SKIP
>>> await desk.wait(record.transaction_id)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from hongbao.clock import Clock
from hongbao.sim.exceptions import UnknownObjectError
from hongbao.sim.payments import (
    MAX_ANSWER,
    MAX_DUPLICATES,
    Delivery,
    PaymentBook,
    PaymentRecord,
    PayOrder,
    PayRequestError,
    is_acknowledged,
)
from hongbao.sim.state import Registry

__all__ = ["DEFAULT_TIMEOUT", "ClientFactory", "PaymentDesk", "Sleep", "deliver"]

DEFAULT_TIMEOUT = 5.0
"""Seconds a merchant has to answer one delivery."""

ClientFactory = Callable[[], httpx.AsyncClient]
"""Makes the HTTP client of one payment's deliveries (closed when they are done)."""
Sleep = Callable[[float], Awaitable[None]]

_HEADERS = {"content-type": "text/xml; charset=utf-8"}
_log = logging.getLogger(__name__)


def default_client() -> httpx.AsyncClient:
    """Straight to the notify_url (no proxy from the environment), TLS verified."""
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT,
        trust_env=False,
        limits=httpx.Limits(max_connections=MAX_DUPLICATES),
    )


async def deliver(
    record: PaymentRecord, client: httpx.AsyncClient, *, sleep: Sleep = asyncio.sleep
) -> None:
    """Carry out `record.plan`: each wave after its delay, its copies at once, stopping at the
    first acknowledgement when the plan says so; `record.deliveries` grows as they end."""
    attempt = 0
    for wave in record.plan.waves:
        if wave.delay > 0:
            await sleep(wave.delay)
        numbers = range(attempt + 1, attempt + wave.copies + 1)
        attempt += wave.copies
        results = await asyncio.gather(
            *(_post(client, record, number, wave.delay) for number in numbers)
        )
        record.deliveries.extend(results)
        if record.plan.stop_on_success and any(result.acknowledged for result in results):
            break
    record.done = True


async def _post(
    client: httpx.AsyncClient, record: PaymentRecord, attempt: int, delay: float
) -> Delivery:
    try:
        response = await client.post(record.order.notify_url, content=record.body, headers=_HEADERS)
    except httpx.HTTPError as exc:
        return Delivery(attempt, delay, None, False, error=f"{type(exc).__name__}: {exc}")
    return Delivery(
        attempt,
        delay,
        response.status_code,
        is_acknowledged(response.status_code, response.content),
        answer=response.content.decode("utf-8", "replace")[:MAX_ANSWER],
    )


class PaymentDesk:
    """Takes payments for the registry's merchants and delivers their notifications."""

    def __init__(
        self,
        registry: Registry,
        clock: Clock,
        seed: int | None = None,
        *,
        client_factory: ClientFactory = default_client,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.book = PaymentBook(seed)
        self.client_factory = client_factory
        """Replaceable, e.g. by a client over `httpx.ASGITransport` in tests."""
        self.sleep = sleep
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __repr__(self) -> str:
        return f"PaymentDesk({self.book!r}, pending={len(self._tasks)})"

    async def pay(self, order: PayOrder) -> PaymentRecord:
        """Take the payment and start delivering its notification; raises `PayRequestError`
        when the merchant, appid or openid is unknown or they do not belong together."""
        try:
            merchant = self.registry.merchant(order.mch_id)
        except UnknownObjectError:
            raise PayRequestError(f"unknown mch_id {order.mch_id!r}") from None
        kind = self.registry.appids_of(order.mch_id).get(order.appid)
        if kind is None:
            raise PayRequestError(f"appid {order.appid!r} is not bound to merchant {order.mch_id}")
        if not self.registry.has_user(order.appid, order.openid):
            raise PayRequestError(
                f"openid {order.openid!r} is not a user of appid {order.appid} "
                "(create it with POST /__sim/users)"
            )
        record = self.book.take(order, api_key=merchant.api_key, kind=kind, now=self.clock.now())
        task = asyncio.get_running_loop().create_task(
            self._run(record), name=f"notify-{record.transaction_id}"
        )
        self._tasks[record.transaction_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(record.transaction_id, None))
        return record

    async def _run(self, record: PaymentRecord) -> None:
        try:
            async with self.client_factory() as client:
                await deliver(record, client, sleep=self.sleep)
        except asyncio.CancelledError:
            record.done = True
            raise
        except Exception:  # a bug must not go unnoticed in a background task
            _log.exception("delivering notification %s failed", record.transaction_id)
            record.done = True

    def get(self, transaction_id: str) -> PaymentRecord:
        """The payment `transaction_id` (`UnknownObjectError` if none)."""
        return self.book.get(transaction_id)

    async def wait(self, transaction_id: str) -> PaymentRecord:
        """The payment once all its deliveries are done."""
        record = self.book.get(transaction_id)
        task = self._tasks.get(transaction_id)
        if task is not None:
            await asyncio.shield(task)
        return record

    async def drain(self) -> None:
        """Wait until every pending delivery is done."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def reset(self) -> None:
        """Stop every pending delivery and forget every payment."""
        for task in list(self._tasks.values()):
            loop = task.get_loop()
            # reset() may come from another thread than the loop the deliveries run on.
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)
        self._tasks.clear()
        self.book.reset()
