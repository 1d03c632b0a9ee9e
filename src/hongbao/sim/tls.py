"""Mutual TLS for the served simulator, in front of uvicorn's HTTP protocol.

WeChat completes the TLS handshake whatever client certificate is presented (none, expired, issued
by another CA) and answers `CA_ERROR` in the XML body (docs/protocol.md §1.6). CPython's `ssl`
cannot do that: without a verify callback it aborts the handshake on a certificate that fails
verification. So the simulator terminates TLS itself with pyOpenSSL over memory BIOs: it requests a
client certificate, accepts any, and hands the chain to the application, which checks it against the
simulator's CA and clock (`SimCA.check_client_cert`). uvicorn's httptools (or h11) protocol runs
unchanged on the decrypted stream and sees the same extra info as under uvicorn's own TLS.

Every request scope then carries two extensions:

* `scope["extensions"]["tls"]`: the ASGI TLS extension; `client_cert_chain` is a list of PEM
  strings, the client's own certificate first (empty without one);
* `scope["extensions"]["hongbao.connection"]["abort"]`: a callable that drops the TCP connection
  at once, without a response (the simulator's "pay, then drop the response" fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL, crypto
from uvicorn.config import Config
from uvicorn.server import ServerState

try:  # uvicorn[standard] brings httptools; h11 is uvicorn's own fallback
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:  # pragma: no cover - depends on the installation
    from uvicorn.protocols.http.h11_impl import (  # type: ignore[assignment]
        H11Protocol as _HttpProtocol,
    )

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "TLS_EXTRA_INFO",
    "MutualTLSProtocol",
    "protocol_class",
    "server_context",
]

logger = logging.getLogger(__name__)

TLS_EXTRA_INFO = "hongbao.tls"
"""`get_extra_info` key under which the decrypted transport offers the ASGI `tls` extension."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a connection may take to finish its handshake before it is dropped."""

_CHUNK = 65536


def _load_cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def server_context(cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> SSL.Context:
    """A TLS server context that requests a client certificate and accepts any.

    The CA's name goes into the CertificateRequest, as a real server's would; verification of the
    presented certificate is recorded (`client_cert_error`) but never fails the handshake.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"the server key must be EC or RSA, not {type(key).__name__}")
    context.use_certificate(_load_cert(cert_pem))
    context.use_privatekey(key)
    context.check_privatekey()
    ca = _load_cert(ca_pem)
    context.add_client_ca(ca)
    store = context.get_cert_store()
    assert store is not None  # a fresh context always has one
    store.add_cert(crypto.X509.from_cryptography(ca))
    context.set_verify(SSL.VERIFY_PEER, _record_verification)
    # Without a session id context OpenSSL refuses to resume sessions of a server that asks for
    # client certificates, and the resuming client gets an internal-error alert.
    context.set_session_id(b"hongbao-sim")
    return context


def _record_verification(
    connection: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int
) -> bool:
    # Returning True keeps the handshake going whatever the verdict: the application answers
    # CA_ERROR, as WeChat does. The first failure is kept for the ASGI `client_cert_error`.
    if not ok and connection.get_app_data() is None:
        connection.set_app_data(f"verification failed: X509 error {errnum} at depth {depth}")
    return True


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _tls_extension(connection: SSL.Connection, server_cert: str) -> dict[str, Any]:
    own = connection.get_peer_certificate(as_cryptography=True)
    chain: list[str] = []
    name: str | None = None
    error: str | None = None
    if own is not None:
        chain.append(_pem(own))
        # On the server side OpenSSL's peer chain leaves out the peer's own certificate.
        chain.extend(_pem(c) for c in connection.get_peer_cert_chain(as_cryptography=True) or [])
        name = own.subject.rfc4514_string()
        error = connection.get_app_data()
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": error,
        "tls_version": connection.get_protocol_version(),
        "cipher_suite": None,  # pyOpenSSL does not expose the IANA number
    }


class _HttpWithExtensions(_HttpProtocol):
    """uvicorn's HTTP protocol, adding the `tls` and `hongbao.connection` scope extensions."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        extensions = {
            "tls": transport.get_extra_info(TLS_EXTRA_INFO),
            "hongbao.connection": {"abort": self._abort},
        }
        app = self.app

        async def app_with_extensions(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {}).update(extensions)
            await app(scope, receive, send)

        self.app = app_with_extensions

    def _abort(self) -> None:
        # Marking the cycle disconnected first stops uvicorn from writing a 500 when the
        # application returns without a response.
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.abort()


class _DecryptedTransport(asyncio.Transport):
    """The transport the HTTP protocol writes to: plaintext in, TLS records out."""

    def __init__(self, layer: MutualTLSProtocol, tls_info: dict[str, Any]) -> None:
        super().__init__()
        self._layer = layer
        self._tls_info = tls_info

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == TLS_EXTRA_INFO:
            return self._tls_info
        if name == "sslcontext":  # uvicorn sets scheme "https" from this
            return self._layer.context
        return self._layer.tcp.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer.write_plaintext(data)

    def is_closing(self) -> bool:
        return self._layer.closing

    def close(self) -> None:
        self._layer.close()

    def abort(self) -> None:
        self._layer.abort()

    def pause_reading(self) -> None:
        self._layer.pause_reading()

    def resume_reading(self) -> None:
        self._layer.resume_reading()

    def is_reading(self) -> bool:
        return not self._layer.reading_paused

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._layer.http = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._layer.http

    def get_write_buffer_size(self) -> int:
        return self._layer.tcp.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._layer.tcp.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False


class MutualTLSProtocol(asyncio.Protocol):
    """TLS (pyOpenSSL, memory BIOs) over TCP, with uvicorn's HTTP protocol on the plaintext.

    `protocol_class(context, server_cert_pem)` binds a context; uvicorn takes the class as `http=`.
    """

    context: ClassVar[SSL.Context]
    server_cert_pem: ClassVar[str]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.loop = _loop or asyncio.get_event_loop()
        self.http: asyncio.Protocol = _HttpWithExtensions(
            config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )
        self.tcp: asyncio.Transport = None  # type: ignore[assignment]
        self.connection = SSL.Connection(self.context, None)
        self.connection.set_accept_state()
        self.established = False
        self.closing = False
        self.reading_paused = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    # --- TCP side ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = transport  # type: ignore[assignment]
        self._handshake_timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self.abort)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.connection.bio_write(data)
            if self.established or self._handshake():
                self._deliver_plaintext()
        except SSL.Error as exc:
            self._fail(exc)
        self._flush()

    def eof_received(self) -> bool | None:
        if self.established:
            return self.http.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self.established:
            self.http.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.established:
            self.http.pause_writing()

    def resume_writing(self) -> None:
        if self.established:
            self.http.resume_writing()

    # --- TLS --------------------------------------------------------------------------------

    def _handshake(self) -> bool:
        try:
            self.connection.do_handshake()
        except SSL.WantReadError:
            return False
        self.established = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        tls_info = _tls_extension(self.connection, self.server_cert_pem)
        self.http.connection_made(_DecryptedTransport(self, tls_info))
        return True

    def _deliver_plaintext(self) -> None:
        while not (self.reading_paused or self.closing):
            try:
                chunk = self.connection.recv(_CHUNK)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:  # the client's close_notify: its end of the stream
                if not self.http.eof_received():
                    self.close()
                return
            self.http.data_received(chunk)

    def _flush(self) -> None:
        # Handshake messages, records, alerts: whatever OpenSSL queued goes out now.
        while True:
            try:
                out = self.connection.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            if not self.tcp.is_closing():
                self.tcp.write(out)

    def _fail(self, exc: SSL.Error) -> None:
        logger.debug("TLS failure from %s: %r", self.tcp.get_extra_info("peername"), exc)
        self._flush()  # let the peer see OpenSSL's alert
        self.closing = True
        self.tcp.close()

    # --- called through the decrypted transport -----------------------------------------------

    def write_plaintext(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt `data` and send it."""
        if self.closing:
            return
        try:
            self.connection.sendall(data)
        except SSL.Error as exc:
            self._fail(exc)
        self._flush()

    def close(self) -> None:
        """Send close_notify, then close the TCP connection once written."""
        if self.closing:
            return
        self.closing = True
        if self.established:
            with contextlib.suppress(SSL.Error):  # the peer already went away: nothing to notify
                self.connection.shutdown()
            self._flush()
        self.tcp.close()

    def abort(self) -> None:
        """Drop the TCP connection now: no close_notify, no pending data."""
        self.closing = True
        self.tcp.abort()

    def pause_reading(self) -> None:
        """Stop handing plaintext to the HTTP protocol (its flow control)."""
        if not self.reading_paused:
            self.reading_paused = True
            self.tcp.pause_reading()

    def resume_reading(self) -> None:
        """Resume; records already received are decrypted on the next loop turn."""
        if self.reading_paused:
            self.reading_paused = False
            self.tcp.resume_reading()
            self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        try:
            self._deliver_plaintext()
        except SSL.Error as exc:
            self._fail(exc)
        self._flush()


def protocol_class(context: SSL.Context, server_cert_pem: str) -> type[MutualTLSProtocol]:
    """A `MutualTLSProtocol` bound to `context`, for `uvicorn.Config(http=…)`.

    >>> config = uvicorn.Config(app, http=protocol_class(server_context(cert, key, ca), cert_str))
    """

    class BoundMutualTLSProtocol(MutualTLSProtocol):
        pass

    BoundMutualTLSProtocol.context = context
    BoundMutualTLSProtocol.server_cert_pem = server_cert_pem
    return BoundMutualTLSProtocol
