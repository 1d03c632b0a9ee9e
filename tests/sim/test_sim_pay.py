"""`POST /__sim/pay`: a customer pays, and the simulator notifies the merchant as WeChat does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from hongbao.engine.notify_verify import SUCCESS_REPLY, fail_reply, verify_notification
from hongbao.sim.app import Simulator, create_app
from hongbao.sim.payments import RESEND_INTERVALS
from hongbao.sim.server import SimServer
from hongbao.wire import xmlcodec
from hongbao.wire.sign import verify
from tests.sim.simkit import Shop

NOTIFY_URL = "http://merchant.test/notify"
Answer = tuple[int, bytes]
ACK: Answer = (200, SUCCESS_REPLY)
NACK: Answer = (200, fail_reply("busy"))


class Receiver:
    """The merchant's notify endpoint: records what arrives, answers from a script.

    Each request waits (at most `hold_timeout` s) until `hold_until` requests are in flight at
    once, so that copies sent together are seen together and copies sent one by one are not.
    """

    def __init__(
        self,
        answers: list[Answer] | None = None,
        *,
        hold_until: int = 1,
        hold_timeout: float = 5.0,
        pause: float = 0.0,
    ) -> None:
        self.answers = list(answers or [])
        self.hold_until = hold_until
        self.hold_timeout = hold_timeout
        self.pause = pause
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrived = asyncio.Event()
        """Set when the first request arrives (await it on the receiver's own loop only)."""
        self._all_in: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.bodies.append(b"".join(chunks))
        self.arrived.set()
        self.content_types.append(dict(scope["headers"]).get(b"content-type", b"").decode())
        if self._all_in is None:
            self._all_in = asyncio.Event()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.in_flight >= self.hold_until:
                self._all_in.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_in.wait(), self.hold_timeout)
            if self.pause:
                await asyncio.sleep(self.pause)
            status, body = self.answers.pop(0) if self.answers else ACK
        finally:
            self.in_flight -= 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def served(app: Receiver) -> Iterator[str]:
    """`app` on a real HTTP server of its own thread; yields its notify URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the receiving server did not start"
    try:
        yield f"http://127.0.0.1:{port}/notify"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    """The control API in-process, resends without waiting; pending deliveries are stopped
    afterwards."""
    _record_sleeps(sim)
    transport = httpx.ASGITransport(app=create_app(sim))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        yield client
    sim.payments.reset()
    await sim.payments.drain()


def _in_process(sim: Simulator, receiver: Receiver) -> None:
    """Deliver to `receiver` in this process, whatever the notify_url's host."""
    sim.payments.client_factory = lambda: httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver)
    )


def _record_sleeps(sim: Simulator) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    sim.payments.sleep = sleep
    return slept


async def _forever(seconds: float) -> None:
    await asyncio.Event().wait()


def _order(shop: Shop, **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "mch_id": shop.mch_id,
        "appid": shop.creds.appid,
        "openid": shop.users[0],
        "total_fee": 12800,
        "notify_url": NOTIFY_URL,
        "wait": True,
    }
    order.update(changes)
    return {k: v for k, v in order.items() if v is not None}


async def _pay(control: httpx.AsyncClient, order: dict[str, Any]) -> dict[str, Any]:
    response = await control.post("/__sim/pay", json=order)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_the_notification_is_signed_with_the_merchants_key(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver()
    _in_process(sim, receiver)
    answer = await _pay(control, _order(shop, out_trade_no="order-42", attach="spring"))
    [body] = receiver.bodies
    fields = xmlcodec.loads(body)
    assert verify(fields, shop.creds.api_key)
    assert not verify(fields, "k" * 32)
    assert receiver.content_types == ["text/xml; charset=utf-8"]
    assert {k: v for k, v in fields.items() if k not in ("nonce_str", "sign")} == {
        "return_code": "SUCCESS",
        "result_code": "SUCCESS",
        "appid": shop.creds.appid,
        "mch_id": shop.mch_id,
        "openid": shop.users[0],
        "trade_type": "JSAPI",
        "bank_type": "CMC",
        "total_fee": "12800",
        "fee_type": "CNY",
        "cash_fee": "12800",
        "transaction_id": answer["transaction_id"],
        "out_trade_no": "order-42",
        "attach": "spring",
        "time_end": "20240315100000",  # the simulator's clock
    }
    assert len(answer["transaction_id"]) == 32
    assert answer["transaction_id"].isdigit()
    assert answer["done"] is True
    assert answer["acknowledged"] is True
    [delivery] = answer["deliveries"]
    assert delivery["status"] == 200
    assert delivery["acknowledged"] is True
    assert delivery["answer"] == SUCCESS_REPLY.decode()


async def test_the_engines_verifier_accepts_it(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver()
    _in_process(sim, receiver)
    await _pay(control, _order(shop))
    await _pay(control, _order(shop, sign_type="HMAC-SHA256"))
    md5, hmac = receiver.bodies
    for body in (md5, hmac):
        payment = verify_notification(body, mch_id=shop.mch_id, api_key=shop.creds.api_key)
        assert payment.total_fee == 12800
        assert payment.openid == shop.users[0]
    assert xmlcodec.loads(hmac)["sign_type"] == "HMAC-SHA256"
    assert "sign_type" not in xmlcodec.loads(md5)
    assert verify(xmlcodec.loads(hmac), shop.creds.api_key, "HMAC-SHA256")


async def test_trade_type_follows_the_appid(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver()
    _in_process(sim, receiver)
    [app_user] = sim.add_users(shop.creds.app_appid, 1)
    await _pay(control, _order(shop, appid=shop.creds.mini_appid, openid=shop.mini_users[0]))
    await _pay(control, _order(shop, appid=shop.creds.app_appid, openid=app_user))
    kinds = [(xmlcodec.loads(b)["appid"], xmlcodec.loads(b)["trade_type"]) for b in receiver.bodies]
    assert kinds == [(shop.creds.mini_appid, "JSAPI"), (shop.creds.app_appid, "APP")]


async def test_each_payment_has_its_own_ids(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    _in_process(sim, Receiver())
    first = await _pay(control, _order(shop))
    second = await _pay(control, _order(shop))
    assert first["transaction_id"] != second["transaction_id"]
    assert first["out_trade_no"] != second["out_trade_no"]


async def test_duplicates_deliver_identical_bytes_n_times_even_when_acknowledged(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver(pause=0.01)
    _in_process(sim, receiver)
    answer = await _pay(control, _order(shop, duplicates=4))
    assert len(receiver.bodies) == 4
    assert len(set(receiver.bodies)) == 1
    # One after another: never two at once.
    assert receiver.max_in_flight == 1
    assert [d["attempt"] for d in answer["deliveries"]] == [1, 2, 3, 4]
    assert all(d["acknowledged"] for d in answer["deliveries"])


async def test_concurrent_duplicates_arrive_at_the_same_time(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver(hold_until=5)
    with served(receiver) as url:
        answer = await _pay(control, _order(shop, notify_url=url, duplicates=5, concurrent=True))
    assert receiver.max_in_flight == 5
    assert len(receiver.bodies) == 5
    assert len(set(receiver.bodies)) == 1
    assert [d["status"] for d in answer["deliveries"]] == [200] * 5


async def test_resends_follow_the_schedule_and_stop_at_the_first_success(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver([NACK, (500, b"oops"), (200, b"not xml"), ACK])
    _in_process(sim, receiver)
    slept = _record_sleeps(sim)
    answer = await _pay(control, _order(shop, schedule_scale=0.01))
    assert len(receiver.bodies) == 4
    assert len(set(receiver.bodies)) == 1
    assert slept == [15 * 0.01, 15 * 0.01, 30 * 0.01]
    assert [d["acknowledged"] for d in answer["deliveries"]] == [False, False, False, True]
    assert [d["status"] for d in answer["deliveries"]] == [200, 500, 200, 200]
    assert [d["after_seconds"] for d in answer["deliveries"]] == [0.0, *slept]
    assert answer["acknowledged"] is True


async def test_an_unacknowledged_notification_is_resent_15_times(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver([NACK] * 20)
    _in_process(sim, receiver)
    slept = _record_sleeps(sim)
    answer = await _pay(control, _order(shop, schedule_scale=0.001))
    assert len(receiver.bodies) == 16
    assert slept == [interval * 0.001 for interval in RESEND_INTERVALS]
    assert sum(RESEND_INTERVALS) == pytest.approx(24 * 3600, rel=0.05)
    assert answer["done"] is True
    assert answer["acknowledged"] is False


async def test_unreachable_and_silent_merchants_count_as_failures(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    slept = _record_sleeps(sim)
    refused = await _pay(control, _order(shop, notify_url=f"http://127.0.0.1:{port}/n"))
    assert len(refused["deliveries"]) == 16
    assert len(slept) == 15
    assert all(d["status"] is None for d in refused["deliveries"])
    assert "ConnectError" in refused["deliveries"][0]["error"]
    silent = Receiver(pause=0.5)
    sim.payments.client_factory = lambda: httpx.AsyncClient(timeout=0.1)
    with served(silent) as url:
        timed_out = await _pay(control, _order(shop, notify_url=url, duplicates=1))
    [delivery] = timed_out["deliveries"]
    assert delivery["status"] is None
    assert "Timeout" in delivery["error"]


async def test_without_wait_the_deliveries_are_polled(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver()
    _in_process(sim, receiver)
    answer = await _pay(control, _order(shop, wait=None))
    txid = answer["transaction_id"]
    await sim.payments.wait(txid)
    response = await control.get(f"/__sim/pay/{txid}")
    assert response.status_code == 200
    polled = response.json()
    assert polled["done"] is True
    assert len(polled["deliveries"]) == 1
    assert polled["transaction_id"] == txid
    assert (await control.get("/__sim/pay/4200000")).status_code == 404


async def test_reset_stops_pending_deliveries_and_forgets_payments(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    receiver = Receiver([NACK] * 20)
    _in_process(sim, receiver)
    sim.payments.sleep = _forever  # a resend that never comes
    answer = await _pay(control, _order(shop, wait=None))
    txid = answer["transaction_id"]
    await asyncio.wait_for(receiver.arrived.wait(), 5)
    assert (await control.post("/__sim/reset")).status_code == 200
    await sim.payments.drain()
    assert len(receiver.bodies) == 1
    assert (await control.get(f"/__sim/pay/{txid}")).status_code == 404


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mch_id": "1999999999"}, "unknown mch_id '1999999999'"),
        ({"appid": "wx0000000000000000"}, "appid 'wx0000000000000000' is not bound to merchant"),
        ({"openid": "oNobody"}, "openid 'oNobody' is not a user of appid"),
        ({"total_fee": 0}, "total_fee must be a whole number of fen >= 1"),
        ({"total_fee": "100"}, "total_fee must be a whole number"),
        ({"total_fee": None}, "total_fee must be a whole number of fen >= 1"),
        ({"notify_url": "ftp://x/notify"}, "must be an http:// or https:// URL"),
        ({"notify_url": None}, "notify_url must be a non-empty string"),
        ({"duplicates": 0}, "duplicates must be 1..50"),
        ({"duplicates": 51}, "duplicates must be 1..50"),
        ({"concurrent": True}, "concurrent needs duplicates >= 2"),
        ({"concurrent": "yes", "duplicates": 2}, "concurrent must be true or false"),
        ({"sign_type": "SHA1"}, "sign_type must be MD5 or HMAC-SHA256"),
        ({"schedule_scale": -1}, "schedule_scale must be a finite number >= 0"),
        ({"out_trade_no": "x" * 33}, "out_trade_no"),
        ({"attach": "a" * 129}, "attach has 129 characters"),
        ({"amount": 100}, "unknown field(s) ['amount']"),
    ],
)
async def test_a_bad_payment_request_is_refused_with_a_clear_message(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient, changes: dict[str, Any], message: str
) -> None:
    receiver = Receiver()
    _in_process(sim, receiver)
    order = _order(shop)
    order.update(changes)
    response = await control.post(
        "/__sim/pay", json={k: v for k, v in order.items() if v is not None}
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert receiver.bodies == []


async def test_an_openid_of_another_appid_is_refused(
    sim: Simulator, shop: Shop, control: httpx.AsyncClient
) -> None:
    # The openid exists, but under the mini program: not a payer of the Official Account.
    response = await control.post("/__sim/pay", json=_order(shop, openid=shop.mini_users[0]))
    assert response.status_code == 400
    assert "is not a user of appid" in response.json()["error"]
    other = sim.create_merchant()
    response = await control.post("/__sim/pay", json=_order(shop, appid=other.appid))
    assert response.status_code == 400
    assert "is not bound to merchant" in response.json()["error"]


def test_the_served_simulator_delivers_in_the_background(sim: Simulator, shop: Shop) -> None:
    receiver = Receiver([NACK, ACK])
    with (
        served(receiver) as url,
        SimServer(sim) as server,
        httpx.Client(
            verify=ssl.create_default_context(cafile=server.ca_path), base_url=server.url
        ) as client,
    ):
        response = client.post(
            "/__sim/pay", json=_order(shop, notify_url=url, wait=None, schedule_scale=0.001)
        )
        assert response.status_code == 201, response.text
        txid = response.json()["transaction_id"]
        deadline = time.monotonic() + 10
        while not (polled := client.get(f"/__sim/pay/{txid}").json())["done"]:
            assert time.monotonic() < deadline, polled
            time.sleep(0.01)
    assert [d["acknowledged"] for d in polled["deliveries"]] == [False, True]
    assert len(receiver.bodies) == 2


async def test_a_wecom_corp_id_takes_no_payments(
    sim: Simulator, control: httpx.AsyncClient
) -> None:
    creds = sim.create_merchant(wecom=True)
    assert creds.wecom_appid is not None
    [user] = sim.add_users(creds.wecom_appid, 1)
    order = {
        "mch_id": creds.mch_id,
        "appid": creds.wecom_appid,
        "openid": user,
        "total_fee": 100,
        "notify_url": NOTIFY_URL,
    }
    response = await control.post("/__sim/pay", json=order)
    assert response.status_code == 400
    assert "cannot take payments" in response.json()["error"]
