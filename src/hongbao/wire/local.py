"""In-process transports: hand each request straight to a handler in the same process.

The simulator's `handle_wire` is such a handler, so unit tests run the real client against the
real simulator logic without sockets. The handler sees what a server would see of the TLS
connection: the peer address and the client certificate (DER), if one is configured.
A handler simulates network failures by raising `ConnectError` or `TransportError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hongbao.wire.transport import AsyncTransport, Timeouts, Transport, WireRequest, WireResponse

__all__ = ["AsyncLocalTransport", "LocalHandler", "LocalTransport", "PeerInfo"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the server side knows about the caller."""

    ip: str = "127.0.0.1"
    cert_der: bytes | None = None
    read_timeout: float = Timeouts().read
    """The client's read timeout, so a simulated hang or delay can fail the way it would."""


LocalHandler = Callable[[WireRequest, PeerInfo], WireResponse]


class LocalTransport(Transport):
    """Synchronous in-process transport."""

    def __init__(self, handler: LocalHandler, peer: PeerInfo | None = None) -> None:
        self._handler = handler
        self.peer = peer or PeerInfo()

    def handle_request(self, request: WireRequest) -> WireResponse:
        return self._handler(request, self.peer)

    def __repr__(self) -> str:
        return f"LocalTransport(peer_ip={self.peer.ip!r})"


class AsyncLocalTransport(AsyncTransport):
    """Asynchronous in-process transport (the handler itself is synchronous and fast)."""

    def __init__(self, handler: LocalHandler, peer: PeerInfo | None = None) -> None:
        self._handler = handler
        self.peer = peer or PeerInfo()

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        return self._handler(request, self.peer)

    def __repr__(self) -> str:
        return f"AsyncLocalTransport(peer_ip={self.peer.ip!r})"
