"""The webhook relay over a real ledger and real receivers on loopback: a slow receiver holds
back no other, failures back off, and an event is given up only after 24 h."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from sqlalchemy import select

from hongbao.clock import FrozenClock
from hongbao.engine.config import WebhookEndpoint
from hongbao.ledger import LedgerStore, PayoutState
from hongbao.ledger.outbox import EVENT_TYPES
from hongbao.ledger.schema import webhook_deliveries
from hongbao.service.webhook_relay import HORIZON, PER_ENDPOINT, WebhookRelay, backoff
from hongbao.webhooks import verify
from tests.ledger.conftest import MCH_ID, PayoutFactory

P = PayoutState
SECRET = "whsec_" + "5" * 20


@contextlib.contextmanager
def receiver(status: int, delay: float = 0.0) -> Iterator[list[tuple[bytes, str]]]:
    """A receiver answering `status` after `delay` s; yields what it got (body, signature)."""
    got: list[tuple[bytes, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((body, self.headers["Hongbao-Signature"]))
            time.sleep(delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    got.append((f"http://127.0.0.1:{server.server_address[1]}/".encode(), ""))
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


def _endpoint(got: list[tuple[bytes, str]], tmp: Path) -> WebhookEndpoint:
    secret = tmp / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    return WebhookEndpoint(got.pop(0)[0].decode(), secret, frozenset(EVENT_TYPES), "test")


def _sent(store: LedgerStore, make_payout: PayoutFactory, count: int) -> None:
    for n in range(count):
        store.add_payout(make_payout(f"oRelay{n}"))
    for payout in store.claim(MCH_ID, limit=count).claimed:
        assert store.transition(payout.id, P.SENDING, P.SENT)


async def _steps(relay: WebhookRelay, until: float, check: object) -> None:
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        await relay.step()
        if callable(check) and check():
            return
        await asyncio.sleep(0.05)


async def test_a_slow_receiver_holds_back_no_other(
    store: LedgerStore, make_payout: PayoutFactory, tmp_path: Path
) -> None:
    _sent(store, make_payout, 6)
    with receiver(200, delay=5.0) as slow_got, receiver(200) as fast_got:
        slow, fast = _endpoint(slow_got, tmp_path), _endpoint(fast_got, tmp_path)
        relay = WebhookRelay(store, [slow, fast], clock=store_clock(store), timeout=0.5)
        started = time.monotonic()
        await _steps(relay, 4.0, lambda: len(fast_got) == 6)
        fast_took = time.monotonic() - started
        await relay.aclose()

    assert len(fast_got) == 6
    assert fast_took < 4.0
    for body, header in fast_got:
        verify(body, header, SECRET, now=store_clock(store).now().timestamp())
    # The slow one timed out: its deliveries stay due, to be tried again.
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(webhook_deliveries.c.delivered_at, webhook_deliveries.c.last_error).where(
                webhook_deliveries.c.endpoint == slow.url
            )
        ).all()
    assert len(rows) == 6
    assert all(row[0] is None for row in rows)
    tried = [row[1] for row in rows if row[1] is not None]
    assert tried == ["ReadTimeout"] * PER_ENDPOINT


async def test_failures_back_off_and_are_given_up_after_a_day(
    store: LedgerStore, make_payout: PayoutFactory, tmp_path: Path
) -> None:
    clock = store_clock(store)
    _sent(store, make_payout, 1)
    with receiver(503) as got:
        endpoint = _endpoint(got, tmp_path)
        relay = WebhookRelay(store, [endpoint], clock=clock, timeout=2.0)
        await relay.step()
        await relay.drain()
        await relay.step()  # not due again yet: no second attempt
        await relay.drain()
        assert len(got) == 1
        clock.advance(7)
        await relay.step()
        await relay.drain()
        assert len(got) == 2
        clock.advance(HORIZON.total_seconds())
        await relay.step()
        await relay.drain()
        await relay.aclose()

    assert len(got) == 3
    assert relay.stats.given_up == {endpoint.url: 1}
    with store.engine.connect() as conn:
        [row] = conn.execute(
            select(webhook_deliveries.c.attempts, webhook_deliveries.c.given_up_at)
        ).all()
    assert row[0] == 3
    assert row[1] is not None


@pytest.mark.parametrize("attempts", [1, 2, 5, 12, 40])
def test_the_back_off_doubles_from_five_seconds_to_an_hour(attempts: int) -> None:
    import random

    rng = random.Random(attempts)
    expected = min(3600.0, 5.0 * 2 ** (attempts - 1))
    assert 0.8 * expected <= backoff(attempts, rng) <= 1.2 * expected


def store_clock(store: LedgerStore) -> FrozenClock:
    clock = store._clock
    assert isinstance(clock, FrozenClock)
    return clock
