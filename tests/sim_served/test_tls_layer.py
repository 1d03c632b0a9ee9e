"""The mutual-TLS layer in front of uvicorn: any client certificate reaches the application."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from hongbao.sim.ca import SimCA
from hongbao.sim.tls import protocol_class, server_context

pytestmark = pytest.mark.served


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers what the server knows about the connection; `/drop` aborts it instead."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/drop":
        scope["extensions"]["hongbao.connection"]["abort"]()
        return
    tls = scope["extensions"]["tls"]
    answer = {
        "scheme": scope["scheme"],
        "client": scope["client"][0],
        "chain": tls["client_cert_chain"],
        "error": tls["client_cert_error"],
        "body_length": len(body),
    }
    payload = json.dumps(answer).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@dataclass
class Served:
    url: str
    port: int
    ca: SimCA
    ca_path: Path


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    ca = SimCA.create()
    cert, key = ca.issue_server_cert([])
    config = uvicorn.Config(
        _echo_app,
        http=protocol_class(server_context(cert, key, ca.ca_pem), cert.decode()),
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = _Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.ca_pem)
    port = sock.getsockname()[1]
    yield Served(f"https://127.0.0.1:{port}", port, ca, ca_path)
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


def _client_context(
    served: Served, cert: tuple[bytes, bytes] | None, tmp_path: Path
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(served.ca_path))
    if cert is not None:
        (tmp_path / "cert.pem").write_bytes(cert[0])
        (tmp_path / "key.pem").write_bytes(cert[1])
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def _get(served: Served, context: ssl.SSLContext, path: str = "/", body: bytes = b"") -> Any:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.post(served.url + path, data=body) as response,
    ):
        assert response.status == 200
        return await response.json()


async def test_handshake_completes_without_a_client_certificate(
    served: Served, tmp_path: Path
) -> None:
    answer = await _get(served, _client_context(served, None, tmp_path))
    assert answer["scheme"] == "https"
    assert answer["client"] == "127.0.0.1"
    assert answer["chain"] == []


async def test_the_client_certificate_reaches_the_app_first_in_the_chain(
    served: Served, tmp_path: Path
) -> None:
    cert = served.ca.issue_client_cert("1900000109")
    answer = await _get(served, _client_context(served, cert, tmp_path))
    assert answer["chain"][0] == cert[0].decode()
    assert answer["error"] is None


async def test_a_certificate_from_a_foreign_ca_is_accepted_and_handed_over(
    served: Served, tmp_path: Path
) -> None:
    foreign = SimCA.create().issue_client_cert("1900000109")
    answer = await _get(served, _client_context(served, foreign, tmp_path))
    assert answer["chain"][0] == foreign[0].decode()
    assert answer["error"]  # the TLS layer's own verdict is kept, the handshake went on


async def test_an_expired_certificate_is_accepted_and_handed_over(
    served: Served, tmp_path: Path
) -> None:
    expired = served.ca.issue_client_cert(
        "1900000109",
        not_before=datetime(2001, 1, 1, tzinfo=UTC),
        not_after=datetime(2002, 1, 1, tzinfo=UTC),
    )
    answer = await _get(served, _client_context(served, expired, tmp_path))
    assert answer["chain"][0] == expired[0].decode()


async def test_keep_alive_and_large_bodies(served: Served, tmp_path: Path) -> None:
    context = _client_context(served, served.ca.issue_client_cert("1900000109"), tmp_path)
    connector = aiohttp.TCPConnector(ssl=context, limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for size in (10, 300_000, 20):  # the big one makes uvicorn pause and resume reading
            async with session.post(served.url + "/", data=b"x" * size) as response:
                assert (await response.json())["body_length"] == size
        assert len(connector._conns) == 1  # one connection carried all three


async def test_abort_drops_the_connection_without_an_answer(served: Served, tmp_path: Path) -> None:
    context = _client_context(served, None, tmp_path)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _get(served, context, "/drop")
    assert (await _get(served, context))["scheme"] == "https"  # the server itself is fine


async def test_garbage_instead_of_a_handshake_is_dropped(served: Served, tmp_path: Path) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 5)
    assert b"HTTP/1.1" not in rest  # no plaintext answer: a TLS alert at most, then EOF
    writer.close()
    assert (await _get(served, _client_context(served, None, tmp_path)))["chain"] == []


def _raw_get(served: Served, context: ssl.SSLContext, session: ssl.SSLSession | None) -> Any:
    """One request on a fresh connection, resuming `session`; (answer, session, resumed)."""
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1]), tls.session, tls.session_reused


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"]
)
async def test_a_resumed_session_still_carries_the_client_certificate(
    served: Served, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    cert = served.ca.issue_client_cert("1900000109")
    context = _client_context(served, cert, tmp_path)
    context.maximum_version = version
    first, session, _ = await asyncio.to_thread(_raw_get, served, context, None)
    again, _, resumed = await asyncio.to_thread(_raw_get, served, context, session)
    assert resumed
    assert first["chain"][0] == again["chain"][0] == cert[0].decode()
