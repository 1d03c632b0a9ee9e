"""The four endpoints over ASGI: TLS extension, peer address, faults that really wait or drop."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message

from hongbao.sim.app import create_app
from hongbao.sim.faults import parse_fault
from hongbao.wire import xmlcodec
from tests.sim.simkit import Shop, signed_body, with_tls


def _client(shop: Shop, cert: bytes | None, ip: str = "10.0.0.1") -> TestClient:
    return TestClient(with_tls(create_app(shop.sim), cert, client=(ip, 50000)))


def _fields(content: bytes) -> dict[str, Any]:
    return dict(xmlcodec.loads(content))


def test_send_and_query_over_asgi_with_the_client_certificate(shop: Shop) -> None:
    params = shop.send_params()
    with _client(shop, shop.creds.cert_pem) as client:
        sent = client.post(
            "/mmpaymkttransfers/sendredpack", content=signed_body(params, shop.creds.api_key)
        )
        query = shop.query_params(params["mch_billno"])
        found = client.post(
            "/mmpaymkttransfers/gethbinfo", content=signed_body(query, shop.creds.api_key)
        )
    assert sent.status_code == 200
    assert sent.headers["content-type"].startswith("text/xml")
    assert _fields(sent.content)["result_code"] == "SUCCESS"
    assert _fields(found.content)["detail_id"] == _fields(sent.content)["send_listid"]


def test_without_the_tls_extension_the_answer_is_ca_error(shop: Shop) -> None:
    with TestClient(create_app(shop.sim)) as client:
        response = client.post(
            "/mmpaymkttransfers/sendredpack",
            content=signed_body(shop.send_params(), shop.creds.api_key),
        )
    assert _fields(response.content)["err_code"] == "CA_ERROR"


def test_the_peer_address_is_checked_against_the_whitelist(shop: Shop) -> None:
    from hongbao.sim.state import MerchantSettings

    shop.sim.state.update_merchant(shop.mch_id, MerchantSettings(ip_whitelist=["10.0.0.9"]))
    body = signed_body(shop.send_params(), shop.creds.api_key)
    with _client(shop, shop.creds.cert_pem, ip="10.0.0.8") as client:
        assert (
            _fields(client.post("/mmpaymkttransfers/sendredpack", content=body).content)["err_code"]
            == "NO_AUTH"
        )
    with _client(shop, shop.creds.cert_pem, ip="10.0.0.9") as client:
        answer = _fields(client.post("/mmpaymkttransfers/sendredpack", content=body).content)
    assert answer["result_code"] == "SUCCESS"


def test_http_status_fault(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "http_status", "status": 503}))
    with _client(shop, shop.creds.cert_pem) as client:
        response = client.post("/mmpaymkttransfers/sendredpack", content=b"<xml/>")
    assert response.status_code == 503
    assert "<xml>" not in response.text


async def _drive(app: ASGIApp, body: bytes, extensions: dict[str, Any]) -> list[Message]:
    """Call the ASGI app once, the way a server would, and collect what it sends."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/mmpaymkttransfers/sendredpack",
        "raw_path": b"/mmpaymkttransfers/sendredpack",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("10.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
        "extensions": extensions,
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _tls(shop: Shop) -> dict[str, Any]:
    return {"tls": {"client_cert_chain": [shop.creds.cert_pem.decode()]}}


def _paid(shop: Shop) -> list[str]:
    return [row.status for row in shop.ledger()[1]]


async def test_pay_then_drop_aborts_the_connection_after_paying(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "pay_then_drop", "count": 1}))
    aborted: list[bool] = []
    extensions = {**_tls(shop), "hongbao.connection": {"abort": lambda: aborted.append(True)}}
    sent = await _drive(
        create_app(shop.sim), signed_body(shop.send_params(), shop.creds.api_key), extensions
    )
    assert aborted == [True]
    assert sent == []
    assert _paid(shop) == ["SENT"]


async def test_pay_then_drop_without_the_abort_extension_raises_instead_of_answering(
    shop: Shop,
) -> None:
    shop.sim.faults.add(parse_fault({"action": "pay_then_drop", "count": 1}))
    app = create_app(shop.sim)
    with pytest.raises(ConnectionAbortedError):
        await _drive(app, signed_body(shop.send_params(), shop.creds.api_key), _tls(shop))
    assert _paid(shop) == ["SENT"]


async def test_delay_answers_late_after_processing(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "delay", "seconds": 0.01, "count": 1}))
    sent = await _drive(
        create_app(shop.sim), signed_body(shop.send_params(), shop.creds.api_key), _tls(shop)
    )
    assert sent[0]["status"] == 200
    assert _fields(sent[1]["body"])["result_code"] == "SUCCESS"


async def test_hang_waits_then_gives_up_without_processing(shop: Shop) -> None:
    shop.sim.faults.add(parse_fault({"action": "hang", "seconds": 0.01, "count": 1}))
    sent = await _drive(
        create_app(shop.sim), signed_body(shop.send_params(), shop.creds.api_key), _tls(shop)
    )
    assert sent[0]["status"] == 504
    assert _paid(shop) == []


def test_an_unreadable_certificate_is_judged_foreign(shop: Shop) -> None:
    with _client(
        shop, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    ) as client:
        response = client.post(
            "/mmpaymkttransfers/sendredpack",
            content=signed_body(shop.send_params(), shop.creds.api_key),
        )
    assert _fields(response.content)["err_code_des"] == "商户API证书校验出错"
