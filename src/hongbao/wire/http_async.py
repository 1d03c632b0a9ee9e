"""The asynchronous transport, on aiohttp: the throughput path.

One `aiohttp.ClientSession` per transport, created lazily inside the running event loop (so a
transport may be built anywhere, but used from one loop only), keep-alive connections, finite
timeouts, nothing taken from the environment.

>>> async with AiohttpTransport(certificate=cert) as transport:  # doctest: +SKIP
...     response = await transport.handle_async_request(WireRequest(path, body))
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp

from hongbao import __version__
from hongbao.clock import Clock
from hongbao.wire.certs import ClientCertificate, make_ssl_context
from hongbao.wire.errormap import map_exception
from hongbao.wire.failover import (
    AUTO_BACKUP,
    AutoBackup,
    HostOutcome,
    HostSelector,
    resolve_backup_url,
)
from hongbao.wire.limits import TooLarge, check_declared, late
from hongbao.wire.transport import (
    DEFAULT_BASE_URL,
    MAX_RESPONSE_BYTES,
    AsyncTransport,
    Timeouts,
    WireRequest,
    WireResponse,
)

__all__ = ["DEFAULT_USER_AGENT", "AiohttpTransport"]

DEFAULT_USER_AGENT = f"hongbao/{__version__}"

# Before these versions asyncio could leave the socket of a TLS connection open when the peer
# dropped it mid-shutdown (cpython#118960); aiohttp then has to abort such transports itself
# (and warns when asked to on a fixed Python).
_FIXED_IN = ((3, 12, 8), (3, 13, 1))
_ASYNCIO_LEAKS_CLOSED_TLS = sys.version_info < _FIXED_IN[0] or (
    (3, 13) <= sys.version_info < _FIXED_IN[1]
)


class AiohttpTransport(AsyncTransport):
    """Asynchronous transport on aiohttp; one connection pool per instance (per certificate).

    Same contract as `HttpxTransport`: the body goes out unchanged, any HTTP status comes back
    as a `WireResponse` (at most `max_response_bytes`, within `timeouts.deadline`), driver
    errors become `ConnectError` or `TransportError`, and outcomes
    drive the host failover of docs/protocol.md §1.4. `aclose()` releases the connections.
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        backup_url: str | AutoBackup | None = AUTO_BACKUP,
        certificate: ClientCertificate | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen dataclass
        clock: Clock | None = None,
        max_connections: int = 100,
        user_agent: str = DEFAULT_USER_AGENT,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.hosts = HostSelector(base_url, resolve_backup_url(base_url, backup_url), clock)
        self.certificate = certificate
        self.timeouts = timeouts
        self.max_response_bytes = max_response_bytes
        self._ssl = make_ssl_context(certificate, ca_bundle)
        # `connect` also bounds the wait for a free pooled connection; `sock_read` bounds each
        # wait for response bytes; the whole request is bounded by `timeouts.deadline`.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.connect,
            sock_connect=timeouts.connect,
            sock_read=timeouts.read,
        )
        self._max_connections = max_connections
        self._headers = {"User-Agent": user_agent}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use because a ClientSession belongs to the loop it was created in.
        if self._session is None:
            if self._closed:
                raise RuntimeError("this AiohttpTransport is closed")
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl,
                    limit=self._max_connections,
                    enable_cleanup_closed=_ASYNCIO_LEAKS_CLOSED_TLS,
                ),
                timeout=self._timeout,
                headers=self._headers,
                # Nothing from the environment: no proxy, no netrc.
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        """POST `request.body` once; raise ConnectError or TransportError on failure."""
        session = self._get_session()
        host = self.hosts.select()
        url = host + request.path
        timer = asyncio.timeout(self.timeouts.deadline)
        try:
            async with timer:
                status, body = await self._post(session, url, request)
        except TooLarge as exc:
            self.hosts.report(host, HostOutcome.OTHER_ERROR)
            raise exc.error(url) from None
        except Exception as exc:
            if timer.expired():
                self.hosts.report(host, HostOutcome.OTHER_ERROR)
                raise late(url, self.timeouts.deadline) from exc
            mapped = map_exception(exc, url)
            if mapped is None:
                raise
            self.hosts.report(host, mapped.failure)
            raise mapped.error from exc
        self.hosts.report(host, HostOutcome.SUCCESS)
        return WireResponse(status, body, url)

    async def _post(
        self, session: aiohttp.ClientSession, url: str, request: WireRequest
    ) -> tuple[int, bytes]:
        limit = self.max_response_bytes
        async with session.post(
            url, data=request.body, headers=request.headers, allow_redirects=False
        ) as response:
            check_declared(response.content_length, limit)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                chunks.append(chunk)
            return response.status, b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session and its connections; the transport cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def __repr__(self) -> str:
        return (
            f"AiohttpTransport(base_url={self.hosts.primary!r}, backup_url={self.hosts.backup!r}, "
            f"certificate={self.certificate!r})"
        )
