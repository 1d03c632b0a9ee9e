"""Both real transports against a local HTTPS server that requires a client certificate."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from hongbao.clock import FrozenClock
from hongbao.errors import ConnectError, Outcome, TransportError
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.failover import HostOutcome
from hongbao.wire.http_async import AsyncioTransport
from hongbao.wire.http_sync import HttpxTransport
from hongbao.wire.transport import (
    DEFAULT_BACKUP_URL,
    MAX_RESPONSE_BYTES,
    Timeouts,
    WireRequest,
    WireResponse,
)
from tests.memkit import MB, rss_growth
from tests.wire.tlsserver import MCH_ID, Behaviour, Exchange, Pki, StartServer, TlsServer

PATH = "/mmpaymkttransfers/sendredpack"
# CDATA, Chinese, CRLF and a trailing blank: bytes a re-encoding layer would be tempted to touch.
BODY = (
    "<xml>\r\n<send_name><![CDATA[天虹百货 ]]></send_name>\n"
    "<total_amount>1000</total_amount></xml>\n"
).encode()
REQUEST = WireRequest(PATH, BODY)
CA_ENV_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def test_pem_pair_is_presented_and_the_body_arrives_byte_identical(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    [response] = exchange(
        [REQUEST], base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    assert response == WireResponse(200, server.reply, server.url + PATH)
    [seen] = server.received
    assert (seen.path, seen.body, seen.client_cn) == (PATH, BODY, MCH_ID)
    assert seen.headers["Content-Type"] == "text/xml"


def test_p12_file_with_the_mch_id_as_password_is_presented(
    exchange: Exchange, server: TlsServer, pki: Pki, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(pki.merchant.private_key_pem.bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    p12 = pkcs12.serialize_key_and_certificates(
        b"apiclient",
        key,
        x509.load_der_x509_certificate(pki.merchant_certificate.der),
        None,
        serialization.BestAvailableEncryption(MCH_ID.encode()),
    )
    path = tmp_path / "apiclient_cert.p12"
    path.write_bytes(p12)

    [response] = exchange(
        [REQUEST],
        base_url=server.url,
        certificate=ClientCertificate.from_p12(path, MCH_ID),
        ca_bundle=pki.ca_file,
    )

    assert isinstance(response, WireResponse)
    assert response.status == 200
    assert [seen.client_cn for seen in server.received] == [MCH_ID]


def test_calls_reuse_one_kept_alive_connection(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    responses = exchange(
        [REQUEST] * 3,
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
    )

    assert all(isinstance(response, WireResponse) for response in responses)
    assert len({seen.client_port for seen in server.received}) == 1


def test_an_idle_connection_the_server_ended_is_not_used_again(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    # Servers end idle kept-alive connections on their own schedule, without a word: the next
    # call must go out on a new connection, never fail as an unknown outcome.
    server.behaviour = "quiet_close"

    responses = exchange(
        [REQUEST] * 3,
        pause=0.5,  # time for the close to arrive; a request racing it is an unknown outcome
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
    )

    assert [getattr(response, "status", response) for response in responses] == [200] * 3
    assert len({seen.client_port for seen in server.received}) == 3


CHUNKED_ANSWER = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"5\r\n<xml>\r\n6\r\n</xml>\r\n0\r\n\r\n"
)


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (CHUNKED_ANSWER, b"<xml></xml>"),
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<xml>until the end</xml>",
         b"<xml>until the end</xml>"),
    ],
    ids=["chunked", "until-the-connection-ends"],
)  # fmt: skip
def test_answers_framed_otherwise_than_by_length_are_read_whole(
    exchange: Exchange, server: TlsServer, pki: Pki, raw: bytes, body: bytes
) -> None:
    server.behaviour, server.reply = "raw", raw

    responses = exchange(
        [REQUEST] * 2,
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
    )

    assert [(r.status, r.body) for r in responses if isinstance(r, WireResponse)] == [
        (200, body)
    ] * 2
    assert len({seen.client_port for seen in server.received}) == 2  # each closed after its answer


@pytest.mark.parametrize(
    "raw",
    [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n<xml>"],
    ids=["not-http", "cut-short"],
)
def test_an_answer_that_is_not_whole_http_is_an_unknown_outcome(
    exchange: Exchange, server: TlsServer, pki: Pki, raw: bytes
) -> None:
    server.behaviour, server.reply = "raw", raw

    [result] = exchange(
        [REQUEST], base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    assert isinstance(result, TransportError), result
    assert result.outcome is Outcome.UNKNOWN
    assert len(server.received) == 1


def test_server_error_status_is_returned_not_raised(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    server.status, server.reply = 503, b"busy"

    [response] = exchange(
        [REQUEST], base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    assert response == WireResponse(503, b"busy", server.url + PATH)


def test_missing_client_certificate_under_tls13_is_an_unknown_outcome(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    # Under TLS 1.3 the client's handshake is over before the server checks the client
    # certificate: the request is written, then the server's alert arrives as a read error.
    # From the client's side that is indistinguishable from a failure after delivery, so it
    # is (safely) an unknown outcome. The real WeChat completes the handshake and answers
    # CA_ERROR instead (docs/protocol.md §1.6); this server is stricter on purpose.
    [result] = exchange([REQUEST], base_url=server.url, ca_bundle=pki.ca_file)

    assert isinstance(result, TransportError)
    assert server.received == []
    # The server's side of the story: it refused the handshake (set just after its alert left).
    assert server.handshake_failed.wait(timeout=5)


def test_missing_client_certificate_under_tls12_fails_the_handshake(
    exchange: Exchange, start_server: StartServer, pki: Pki
) -> None:
    server = start_server(maximum=ssl.TLSVersion.TLSv1_2)

    [result] = exchange([REQUEST], base_url=server.url, ca_bundle=pki.ca_file)

    assert isinstance(result, ConnectError)
    assert result.failure == HostOutcome.OTHER_ERROR
    assert server.received == []


def test_server_certificate_from_another_ca_is_refused(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    [result] = exchange(
        [REQUEST],
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.other_ca_file,
    )

    assert isinstance(result, ConnectError)
    assert "server certificate not trusted" in str(result)
    assert server.received == []


def test_ca_variables_in_the_environment_do_not_widen_the_configured_bundle(
    exchange: Exchange, server: TlsServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CA_ENV_VARS:
        monkeypatch.setenv(name, str(pki.ca_file))

    [result] = exchange(
        [REQUEST],
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.other_ca_file,
    )

    # Refused at the handshake, so the request never left: safe to resend, nothing disclosed.
    assert isinstance(result, ConnectError)
    assert "server certificate not trusted" in str(result)
    assert server.received == []


def test_ca_variables_in_the_environment_do_not_replace_the_configured_bundle(
    exchange: Exchange, server: TlsServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CA_ENV_VARS:
        monkeypatch.setenv(name, str(pki.other_ca_file))

    [response] = exchange(
        [REQUEST], base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    assert response == WireResponse(200, server.reply, server.url + PATH)
    assert [seen.body for seen in server.received] == [BODY]


def test_without_a_bundle_the_system_store_does_not_trust_a_private_ca(
    exchange: Exchange, server: TlsServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in CA_ENV_VARS:
        monkeypatch.delenv(name, raising=False)

    [result] = exchange([REQUEST], base_url=server.url, certificate=pki.merchant_certificate)

    assert isinstance(result, ConnectError)
    assert "server certificate not trusted" in str(result)
    assert server.received == []


def test_server_hanging_past_the_read_timeout_is_an_unknown_outcome(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    server.behaviour = "hang"

    [result] = exchange(
        [REQUEST],
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
        timeouts=Timeouts(connect=2.0, read=0.3),
    )

    assert isinstance(result, TransportError)
    assert result.failure == HostOutcome.OTHER_ERROR
    # The server did get the request: this is why the outcome must stay "unknown".
    assert [seen.body for seen in server.received] == [BODY]


@pytest.mark.parametrize("behaviour", ["drop", "truncate"])
def test_connection_lost_after_sending_is_an_unknown_outcome(
    exchange: Exchange, server: TlsServer, pki: Pki, behaviour: Behaviour
) -> None:
    server.behaviour = behaviour

    [result] = exchange(
        [REQUEST], base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    assert isinstance(result, TransportError)
    assert len(server.received) == 1


def test_refused_connection_is_not_sent(exchange: Exchange, refused_url: str, pki: Pki) -> None:
    [result] = exchange([REQUEST], base_url=refused_url, ca_bundle=pki.ca_file)

    assert isinstance(result, ConnectError)
    assert result.failure == HostOutcome.CONNECT_TIMEOUT
    assert isinstance(result.__cause__, Exception)


def test_calls_move_to_the_backup_once_the_primary_refused_three_times(
    exchange: Exchange, server: TlsServer, pki: Pki, refused_url: str
) -> None:
    results = exchange(
        [REQUEST] * 5,
        base_url=refused_url,
        backup_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
        clock=FrozenClock(),
    )

    # The SDK rule: a host is bad after more than two connect failures (docs/protocol.md §1.4).
    assert [type(result) for result in results[:3]] == [ConnectError] * 3
    assert results[3:] == [WireResponse(200, server.reply, server.url + PATH)] * 2
    assert [seen.body for seen in server.received] == [BODY, BODY]


@pytest.mark.parametrize("transport_class", [HttpxTransport, AsyncioTransport])
def test_backup_host_defaults_to_wechats_only_for_wechats_primary(
    transport_class: type[HttpxTransport] | type[AsyncioTransport],
) -> None:
    official = transport_class()
    custom = transport_class(base_url="https://sim.example:8443")
    named = transport_class(base_url="https://sim.example:8443", backup_url="https://b.example")
    none = transport_class(backup_url=None)

    assert official.hosts.backup == DEFAULT_BACKUP_URL
    assert custom.hosts.backup is None
    assert named.hosts.backup == "https://b.example"
    assert none.hosts.backup is None
    for transport in (official, custom, named, none):
        _close(transport)


@pytest.mark.parametrize("transport_class", [HttpxTransport, AsyncioTransport])
def test_repr_shows_the_certificate_but_never_the_key(
    transport_class: type[HttpxTransport] | type[AsyncioTransport], pki: Pki
) -> None:
    transport = transport_class(certificate=pki.merchant_certificate, ca_bundle=pki.ca_file)

    text = repr(transport)

    assert MCH_ID in text
    assert "PRIVATE KEY" not in text
    key_body = pki.merchant.private_key_pem.bytes().decode().splitlines()[1]
    assert key_body not in text
    _close(transport)


def test_asyncio_transport_built_outside_a_loop_works_inside_one_until_closed(
    server: TlsServer, pki: Pki
) -> None:
    transport = AsyncioTransport(
        base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    async def use_then_close() -> WireResponse:
        response = await transport.handle_async_request(REQUEST)
        await transport.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await transport.handle_async_request(REQUEST)
        return response

    assert asyncio.run(use_then_close()).status == 200


def _close(transport: HttpxTransport | AsyncioTransport) -> None:
    if isinstance(transport, HttpxTransport):
        transport.close()
    else:
        asyncio.run(transport.aclose())


def test_a_call_waiting_for_a_free_connection_gives_up_unsent(
    server: TlsServer, pki: Pki
) -> None:
    # One connection allowed, held by a call the server does not answer: the second call waits
    # its connect timeout for a turn, then fails "not sent", having written nothing.
    server.behaviour = "hang"
    transport = AsyncioTransport(
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
        timeouts=Timeouts(connect=0.3, read=5.0),
        max_connections=1,
    )

    async def two_calls() -> list[WireResponse | BaseException]:
        first = asyncio.create_task(transport.handle_async_request(REQUEST))
        await asyncio.sleep(0.1)
        second = await asyncio.gather(
            transport.handle_async_request(REQUEST), return_exceptions=True
        )
        server.release.set()
        results = [*await asyncio.gather(first, return_exceptions=True), *second]
        await transport.aclose()
        return results

    first, second = asyncio.run(two_calls())

    assert isinstance(second, ConnectError), second
    assert second.outcome is Outcome.NOT_SENT
    assert "no free connection within 0.3 s" in second.message
    assert isinstance(first, TransportError)  # the hung call: sent, no answer
    assert len(server.received) == 1


def test_a_server_dripping_its_answer_is_cut_off_at_the_deadline(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    # One byte every 50 ms never trips a 0.3 s read timeout: only a deadline on the whole
    # request ends the call before the server has dripped its (successful) answer.
    server.behaviour = "drip"

    [result] = exchange(
        [REQUEST],
        base_url=server.url,
        certificate=pki.merchant_certificate,
        ca_bundle=pki.ca_file,
        timeouts=Timeouts(connect=2.0, read=0.3, total=1.0),
    )

    assert isinstance(result, TransportError), result
    assert "1 s deadline" in result.message
    assert not server.dripped.is_set()
    assert len(server.received) == 1  # it was sent: the outcome is unknown


def test_the_default_deadline_is_a_few_read_timeouts() -> None:
    assert Timeouts(read=5).deadline == 15
    assert Timeouts(read=5, total=60).deadline == 60
    with pytest.raises(ValueError, match="finite and positive"):
        Timeouts(total=0)


def test_a_flood_of_an_answer_is_cut_at_the_size_limit_not_held(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    server.behaviour = "flood"  # 200 MB, chunked: no length to refuse it on

    with rss_growth() as growth:
        [result] = exchange(
            [REQUEST],
            base_url=server.url,
            certificate=pki.merchant_certificate,
            ca_bundle=pki.ca_file,
        )

    assert isinstance(result, TransportError), result
    assert "larger than" in result.message
    assert growth.bytes < 50 * MB


def test_an_answer_declaring_more_than_the_limit_is_not_read(
    exchange: Exchange, server: TlsServer, pki: Pki
) -> None:
    server.reply = b"<xml>" + b" " * MAX_RESPONSE_BYTES + b"</xml>"

    [result] = exchange(
        [REQUEST], base_url=server.url, certificate=pki.merchant_certificate, ca_bundle=pki.ca_file
    )

    assert isinstance(result, TransportError), result
    assert "larger than" in result.message
