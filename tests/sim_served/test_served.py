"""The simulator served over mutual TLS answers like WeChat: certificates, IPs, faults, garbage."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pytest

from hongbao.sim import exceptions as texts
from hongbao.sim.app import MerchantCredentials
from hongbao.sim.ca import SimCA
from hongbao.sim.server import SimServer
from hongbao.sim.state import MerchantSettings
from tests.memkit import MB, Body, rss_growth
from tests.sim_served.servedkit import SEND, billno, post, send_body, tls_context

pytestmark = pytest.mark.served


def _own_cert(creds: MerchantCredentials) -> tuple[bytes, bytes]:
    return creds.cert_pem, creds.key_pem


def _ledger(server: SimServer, mch_id: str) -> dict[str, str]:
    return {row.mch_billno: row.status for row in server.sim.state.ledger(mch_id)[1]}


def test_the_merchants_certificate_sends(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    bill = billno(creds.mch_id)
    answer = post(server, send_body(creds, openid, bill), cert=_own_cert(creds))
    assert answer["result_code"] == "SUCCESS"
    assert _ledger(server, creds.mch_id) == {bill: "SENT"}


def test_no_certificate_gets_ca_error(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    bill = billno(creds.mch_id)
    answer = post(server, send_body(creds, openid, bill))
    assert (answer["err_code"], answer["err_code_des"]) == ("CA_ERROR", texts.CA_MISSING)
    assert _ledger(server, creds.mch_id) == {}


def test_another_merchants_certificate_gets_ca_error(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    other = server.sim.create_merchant()
    answer = post(server, send_body(creds, openid, billno(creds.mch_id)), cert=_own_cert(other))
    assert (answer["err_code"], answer["err_code_des"]) == ("CA_ERROR", texts.CA_INVALID)
    assert _ledger(server, creds.mch_id) == {}


def test_a_certificate_from_another_ca_gets_ca_error(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    foreign = SimCA.create().issue_client_cert(creds.mch_id)  # right CN, wrong issuer
    answer = post(server, send_body(creds, openid, billno(creds.mch_id)), cert=foreign)
    assert (answer["err_code"], answer["err_code_des"]) == ("CA_ERROR", texts.CA_INVALID)


def test_a_certificate_expires_by_the_simulators_clock(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    short_lived = server.sim.ca.issue_client_cert(
        creds.mch_id,
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 6, 30, tzinfo=UTC),
    )
    first = post(server, send_body(creds, openid, billno(creds.mch_id)), cert=short_lived)
    assert first["result_code"] == "SUCCESS"  # 2024-03-15: still valid

    server.sim.move_clock(now=datetime(2024, 7, 1, tzinfo=UTC))
    bill = billno(creds.mch_id)
    second = post(server, send_body(creds, openid, bill), cert=short_lived)
    assert (second["err_code"], second["err_code_des"]) == ("CA_ERROR", texts.CA_EXPIRED)
    assert bill not in _ledger(server, creds.mch_id)


def test_pay_then_drop_pays_and_closes_the_connection_without_an_answer(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    armed = httpx.post(
        f"{server.url}/__sim/faults",
        json={"endpoint": "sendredpack", "action": "pay_then_drop", "count": 1},
        verify=tls_context(server),
    )
    assert armed.status_code == 201
    bill = billno(creds.mch_id)
    with (
        httpx.Client(verify=tls_context(server, _own_cert(creds)), timeout=10) as client,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        client.post(server.url + SEND, content=send_body(creds, openid, bill))
    assert _ledger(server, creds.mch_id) == {bill: "SENT"}
    # Resending the same bill number replays the success: still one packet.
    again = post(server, send_body(creds, openid, bill), cert=_own_cert(creds))
    assert again["result_code"] == "SUCCESS"
    assert _ledger(server, creds.mch_id) == {bill: "SENT"}


def test_the_ip_whitelist_is_checked_against_the_tcp_peer(
    server: SimServer, creds: MerchantCredentials, openid: str
) -> None:
    server.sim.state.update_merchant(creds.mch_id, MerchantSettings(ip_whitelist=["127.0.0.2"]))
    cert = _own_cert(creds)
    # client_ip in the body names the whitelisted address, but the connection comes from .1
    claimed = send_body(creds, openid, billno(creds.mch_id), client_ip="127.0.0.2")
    refused = post(server, claimed, cert=cert, source_ip="127.0.0.1")
    assert (refused["err_code"], refused["err_code_des"]) == ("NO_AUTH", texts.NO_AUTH_IP)

    # The connection from .2 passes, whatever client_ip says.
    body = send_body(creds, openid, billno(creds.mch_id), client_ip="10.0.0.1")
    assert post(server, body, cert=cert, source_ip="127.0.0.2")["result_code"] == "SUCCESS"


_GARBAGE = [
    b"",
    b"not xml at all",
    b"<xml><mch_id>1",
    b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a SYSTEM 'file:///etc/passwd'>]><xml>&a;</xml>",
    b"<xml>" + b"<a>1</a>" * 20_000 + b"</xml>",
    b"\xff\xfe\x00<\x00x\x00m\x00l",
    b"<xml><mch_id><![CDATA[" + "红".encode() * 5000 + b"]]></mch_id></xml>",
    bytes(random.Random(5).randrange(256) for _ in range(4096)),
]


@pytest.mark.parametrize(
    "path",
    [
        "/mmpaymkttransfers/sendredpack",
        "/mmpaymkttransfers/sendgroupredpack",
        "/mmpaymkttransfers/sendminiprogramhb",
        "/mmpaymkttransfers/gethbinfo",
        "/__sim/merchants",
        "/__sim/users",
        "/__sim/open",
        "/__sim/clock",
        "/__sim/faults",
        "/mmpaymkttransfers/nosuchapi",
    ],
)
def test_garbage_never_gets_a_500(server: SimServer, creds: MerchantCredentials, path: str) -> None:
    with httpx.Client(verify=tls_context(server, _own_cert(creds)), timeout=10) as client:
        for body in _GARBAGE:
            response = client.post(server.url + path, content=body)
            assert response.status_code < 500, (body[:40], response.text[:200])
            if path.startswith("/mmpaymkttransfers/send") or path.endswith("gethbinfo"):
                assert response.status_code == 200
                assert b"<return_code>" in response.content
        for method in ("GET", "PUT", "DELETE"):
            assert client.request(method, server.url + path).status_code < 500


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_control_request_is_refused_413_without_being_held(
    server: SimServer, declared: bool
) -> None:
    body = Body(200 * MB)
    headers = {"content-length": str(body.total)} if declared else {}
    with (
        httpx.Client(verify=tls_context(server), timeout=30) as client,
        rss_growth() as growth,
    ):
        answer = client.post(
            f"{server.url}/__sim/merchants", content=body.chunks(), headers=headers
        )
    assert answer.status_code == 413
    assert "larger than" in answer.json()["error"]
    assert growth.bytes < 50 * MB
    # The server goes on answering.
    again = httpx.post(f"{server.url}/__sim/merchants", json={}, verify=tls_context(server))
    assert again.status_code == 201
