"""Fixtures for the wire tests: the PKI, the TLS servers and `exchange` over both transports."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

from tests.wire.tlsserver import (
    MCH_ID,
    Exchange,
    Pki,
    StartServer,
    TlsServer,
    make_exchange,
    server_context,
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One PKI for the whole run (RSA key generation is the slow part)."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    ca_file, other_ca_file = directory / "ca.pem", directory / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other.cert_pem.write_to_path(str(other_ca_file))
    return Pki(
        ca=ca,
        server=ca.issue_cert("127.0.0.1", "localhost"),
        # WeChat's merchant certificates are RSA with the mch_id as common name.
        merchant=ca.issue_cert(
            "merchant.invalid", common_name=MCH_ID, key_type=trustme.KeyType.RSA
        ),
        ca_file=ca_file,
        other_ca_file=other_ca_file,
    )


@pytest.fixture
def start_server(pki: Pki) -> Iterator[StartServer]:
    """Start extra servers (e.g. limited to TLS 1.2); all are stopped after the test."""
    started: list[TlsServer] = []

    def start(*, maximum: ssl.TLSVersion | None = None) -> TlsServer:
        server = TlsServer(server_context(pki, maximum=maximum))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def _shared_server(pki: Pki) -> Iterator[TlsServer]:
    server = TlsServer(server_context(pki))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(_shared_server: TlsServer) -> Iterator[TlsServer]:
    """The shared TLS 1.3 server, reset to replying 200."""
    _shared_server.reset()
    _shared_server.release.clear()
    yield _shared_server
    _shared_server.release.set()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL whose port is bound but not listening, so every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(params=["httpx", "asyncio"])
def exchange(request: pytest.FixtureRequest) -> Exchange:
    """Both real transports, one per parametrisation, behind one calling convention."""
    return make_exchange(request.param)
