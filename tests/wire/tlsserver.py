"""Test helpers for the wire layer: a private PKI, a local HTTPS server that requires a client
certificate and records what it received, and one calling convention for both transports."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Protocol

import trustme

from hongbao.errors import HongbaoError
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.http_async import AsyncioTransport
from hongbao.wire.http_sync import HttpxTransport
from hongbao.wire.transport import WireRequest, WireResponse

MCH_ID = "1900000109"


@dataclass(frozen=True)
class Pki:
    """A CA that issued the server's and the merchant's certificates, and an unrelated CA."""

    ca: trustme.CA
    server: trustme.LeafCert
    merchant: trustme.LeafCert
    ca_file: Path
    other_ca_file: Path

    @property
    def merchant_certificate(self) -> ClientCertificate:
        """The merchant's PEM pair as the transports take it."""
        return ClientCertificate.from_pem(
            self.merchant.cert_chain_pems[0].bytes(), self.merchant.private_key_pem.bytes()
        )


DEFAULT_REPLY = b"<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"

Behaviour = Literal["reply", "hang", "drop", "truncate", "drip", "flood", "raw", "quiet_close"]


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    body: bytes
    headers: dict[str, str]
    client_port: int
    client_cn: str | None


@dataclass
class TlsServer:
    """A threaded HTTPS/1.1 server that requires a client certificate issued by the test CA.

    `behaviour` says what it does after reading a request: `reply` with `status` and `reply`,
    `hang` until released (bounded), `drop` the connection, `truncate` the answer, `drip` the
    whole answer one byte every 50 ms (setting `dripped` if it got to the end), or `flood`:
    answer 200 with `flood_bytes` of body (chunked, no length), as long as the client reads;
    `raw`: write `reply` as the whole answer, head included, then close; `quiet_close`: reply,
    then close the connection without saying so (as a server ending an idle connection does).
    """

    context: ssl.SSLContext
    behaviour: Behaviour = "reply"
    status: int = 200
    reply: bytes = DEFAULT_REPLY
    received: list[Received] = field(default_factory=list)
    handshake_failed: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    dripped: threading.Event = field(default_factory=threading.Event)
    flood_bytes: int = 200 * 1024 * 1024
    _httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> None:
        self._httpd = _Httpd(self)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def reset(self) -> None:
        self.behaviour, self.status = "reply", 200
        self.reply = DEFAULT_REPLY
        self.received.clear()
        self.handshake_failed.clear()
        self.dripped.clear()


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: TlsServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # The handshake runs in the connection's own thread (see _Handler.setup), so one bad
        # client cannot stall the accept loop.
        wrapped = self.owner.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Failed handshakes are expected in these tests; they are recorded, not printed."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end by themselves
    server: _Httpd

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self.server.owner.handshake_failed.set()
            raise
        super().setup()

    def do_POST(self) -> None:
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        subject = dict(pair[0] for pair in self.request.getpeercert()["subject"])
        owner.received.append(
            Received(
                path=self.path,
                body=body,
                headers=dict(self.headers.items()),
                client_port=self.client_address[1],
                client_cn=subject.get("commonName"),
            )
        )
        if owner.behaviour == "hang":
            owner.release.wait(10)
            self.close_connection = True
            return
        if owner.behaviour == "drop":
            self.close_connection = True
            return
        if owner.behaviour == "drip":
            self.close_connection = True
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(owner.reply)}\r\n\r\n"
            for byte in head.encode() + owner.reply:
                if owner.release.wait(0.05):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
            owner.dripped.set()
            return
        if owner.behaviour == "raw":
            self.close_connection = True
            self.wfile.write(owner.reply)
            return
        if owner.behaviour == "flood":
            self.close_connection = True
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
            try:
                for _ in range(owner.flood_bytes // (64 * 1024)):
                    self.wfile.write(chunk)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        self.send_response(owner.status)
        self.send_header("Content-Type", "text/xml")
        if owner.behaviour == "truncate":
            self.send_header("Content-Length", str(len(owner.reply) + 100))
            self.end_headers()
            self.wfile.write(owner.reply)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(owner.reply)))
        self.end_headers()
        self.wfile.write(owner.reply)
        if owner.behaviour == "quiet_close":
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def server_context(pki: Pki, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """The server side: its certificate, the test CA for clients, client certificate REQUIRED."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.server.configure_cert(context)
    pki.ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    if maximum is not None:
        context.maximum_version = maximum
    return context


Result = WireResponse | HongbaoError


class StartServer(Protocol):
    """The `start_server` fixture: another server, stopped after the test."""

    def __call__(self, *, maximum: ssl.TLSVersion | None = None) -> TlsServer: ...


class Exchange(Protocol):
    """Send `requests` in order through one transport built from `options`, `pause` s apart."""

    kind: Literal["httpx", "asyncio"]

    def __call__(
        self, requests: Sequence[WireRequest], *, pause: float = 0.0, **options: Any
    ) -> list[Result]: ...


@dataclass
class _Exchange:
    kind: Literal["httpx", "asyncio"]

    def __call__(
        self, requests: Sequence[WireRequest], *, pause: float = 0.0, **options: Any
    ) -> list[Result]:
        if self.kind == "httpx":
            results: list[Result] = []
            with HttpxTransport(**options) as transport:
                for n, request in enumerate(requests):
                    if n:
                        time.sleep(pause)
                    try:
                        results.append(transport.handle_request(request))
                    except HongbaoError as exc:
                        results.append(exc)
            return results
        return asyncio.run(self._async(requests, pause, options))

    @staticmethod
    async def _async(
        requests: Sequence[WireRequest], pause: float, options: dict[str, Any]
    ) -> list[Result]:
        results: list[Result] = []
        async with AsyncioTransport(**options) as transport:
            for n, request in enumerate(requests):
                if n:
                    await asyncio.sleep(pause)
                try:
                    results.append(await transport.handle_async_request(request))
                except HongbaoError as exc:
                    results.append(exc)
        return results


def make_exchange(kind: Literal["httpx", "asyncio"]) -> Exchange:
    """An `Exchange` over HttpxTransport or AsyncioTransport."""
    return _Exchange(kind)
