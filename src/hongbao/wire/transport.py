"""The transport contract: one request in, one response out, nothing about red packets.

Implementations: `hongbao.wire.http_async.AsyncioTransport` (the throughput path),
`hongbao.wire.http_sync.HttpxTransport`, and `hongbao.wire.local.LocalTransport` /
`AsyncLocalTransport` (an in-process handler such as the simulator's).

Errors are mapped at this boundary into exactly two kinds, because the payout state machine lives
on the difference: `hongbao.errors.ConnectError` when the request certainly never reached the
server, `hongbao.errors.TransportError` when it may have (read timeout, reset, truncated answer,
an answer over `MAX_RESPONSE_BYTES`, the request's deadline passed). An HTTP status other than
200 is not an error here: it comes back as a `WireResponse`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

__all__ = [
    "DEADLINE_READS",
    "DEFAULT_BACKUP_URL",
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_BYTES",
    "AsyncTransport",
    "Timeouts",
    "Transport",
    "WireRequest",
    "WireResponse",
]

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
DEFAULT_BACKUP_URL = "https://api2.mch.weixin.qq.com"


DEADLINE_READS = 3
"""The default deadline of one request, in read timeouts."""

MAX_RESPONSE_BYTES = 256 * 1024
"""The most of an answer a transport reads (a red packet answer is well under 4 KiB): more is a
`TransportError`, never memory. The XML parser refuses the same size."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Finite timeouts in seconds (docs/protocol.md §1.5 recommends connect 5 s, read 10 s).

    `read` bounds each wait for bytes; `total` bounds the whole request, from connecting to the
    last byte of the answer, so a server that drips one byte at a time cannot hold a call. It
    defaults to `DEADLINE_READS` read timeouts.
    """

    connect: float = 5.0
    read: float = 10.0
    total: float | None = None

    def __post_init__(self) -> None:
        limits = (self.connect, self.read, self.deadline)
        if not all(0 < value < float("inf") for value in limits):
            raise ValueError("timeouts must be finite and positive")

    @property
    def deadline(self) -> float:
        """Seconds one request may take in all."""
        return self.total if self.total is not None else DEADLINE_READS * self.read


@dataclass(frozen=True, slots=True)
class WireRequest:
    """A POST of `body` (already signed and serialised) to `path` on the current host."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=(("Content-Type", "text/xml"),))

    def __repr__(self) -> str:
        # The body carries a signature: never show it.
        return f"WireRequest(path={self.path!r}, body=<{len(self.body)} bytes>)"


@dataclass(frozen=True, slots=True)
class WireResponse:
    """The server's answer: HTTP status, raw body and the URL that answered."""

    status: int
    body: bytes
    url: str = ""

    def __repr__(self) -> str:
        size = len(self.body)
        return f"WireResponse(status={self.status}, url={self.url!r}, body=<{size} bytes>)"


class Transport(abc.ABC):
    """Synchronous transport."""

    @abc.abstractmethod
    def handle_request(self, request: WireRequest) -> WireResponse:
        """Send `request` once; raise ConnectError or TransportError on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncTransport(abc.ABC):
    """Asynchronous transport."""

    @abc.abstractmethod
    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        """Send `request` once; raise ConnectError or TransportError on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
