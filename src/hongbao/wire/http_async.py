"""The asynchronous transport, on asyncio's own TLS connections: the throughput path.

HTTP/1.1 POSTs over kept-alive connections, one request at a time on each, the answer read by
`hongbao.wire.http11.AnswerReader` as its bytes arrive. It does what the red packet calls need
and nothing else (no redirects, cookies, proxies, compression or environment), which costs a
quarter of the CPU of a general client per request (`bench/transport.py`): on the throughput
path that is the difference between a durable campaign and a bare loop.

>>> async with AsyncioTransport(certificate=cert) as transport:  # doctest: +SKIP
...     response = await transport.handle_async_request(WireRequest(path, body))
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from hongbao import __version__
from hongbao.clock import Clock
from hongbao.errors import ConnectError
from hongbao.wire.certs import ClientCertificate, make_ssl_context
from hongbao.wire.errormap import connect_failed, map_exception
from hongbao.wire.failover import (
    AUTO_BACKUP,
    AutoBackup,
    HostOutcome,
    HostSelector,
    resolve_backup_url,
)
from hongbao.wire.http11 import Answer, AnswerReader
from hongbao.wire.limits import TooLarge, late
from hongbao.wire.transport import (
    DEFAULT_BASE_URL,
    MAX_RESPONSE_BYTES,
    AsyncTransport,
    Timeouts,
    WireRequest,
    WireResponse,
)

__all__ = ["DEFAULT_USER_AGENT", "IDLE_SECONDS", "AsyncioTransport"]

DEFAULT_USER_AGENT = f"hongbao/{__version__}"

IDLE_SECONDS = 15.0
"""A kept-alive connection idle longer than this is closed rather than used again: servers end
idle connections on their own schedule, and a request written just as one does has an unknown
outcome."""


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a base URL's requests go."""

    host: str
    port: int
    tls: bool
    prefix: str
    """The base URL's path, put before each request's."""
    authority: bytes
    """The `Host` header's value."""


def _origin(base_url: str) -> _Origin | None:
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    authority = parts.hostname if port in (None, default) else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # an IPv6 literal keeps its brackets in the Host header
        authority = f"[{parts.hostname}]" + ("" if port in (None, default) else f":{port}")
    return _Origin(
        parts.hostname, port or default, tls, parts.path.rstrip("/"), authority.encode("idna")
    )


class _Connection(asyncio.Protocol):
    """One kept-alive connection: carries one request at a time, hands its answer to a future."""

    __slots__ = ("idle_since", "last_data", "lost", "reader", "timer", "transport", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader: AnswerReader | None = None
        self.waiter: asyncio.Future[Answer] | None = None
        self.lost = False
        self.last_data = 0.0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter, reader = self.waiter, self.reader
        if waiter is None or reader is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.last_data = waiter.get_loop().time()
        try:
            answer = reader.feed(data)
        except Exception as exc:  # a bad answer: the caller maps it
            waiter.set_exception(exc)
            return
        if answer is not None:
            self.reader = None
            waiter.set_result(answer)

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        waiter, reader = self.waiter, self.reader
        if waiter is None or reader is None or waiter.done():
            return
        self.reader = None
        try:
            waiter.set_result(reader.end())
        except Exception as ended:
            if exc is not None:
                ended.__cause__ = exc
            waiter.set_exception(ConnectionResetError(f"{ended} (the server closed it)"))

    def usable(self, now: float) -> bool:
        """True when this idle connection may carry the next request."""
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return False
        if now - self.idle_since > IDLE_SECONDS:
            self.close()
            return False
        return True

    def close(self) -> None:
        """Close (TLS close_notify when the peer is still there), never waiting for it."""
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once: its state is unknown (an error or a cancelled call)."""
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class _Deadline(Exception):
    """The request's deadline passed."""


class AsyncioTransport(AsyncTransport):
    """Asynchronous transport on asyncio; one connection pool per instance (per certificate).

    Same contract as `HttpxTransport`: the body goes out unchanged, any HTTP status comes back
    as a `WireResponse` (at most `max_response_bytes`, within `timeouts.deadline`), errors
    become `ConnectError` (before a byte was written) or `TransportError` (after), and outcomes
    drive the host failover of docs/protocol.md §1.4. At most `max_connections` requests are in
    flight; a request waits at most `timeouts.connect` for its turn. Used from one event loop at
    a time; `aclose()` releases the connections.
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
        self._ssl: ssl.SSLContext = make_ssl_context(certificate, ca_bundle)
        self._max_connections = max_connections
        self._user_agent = user_agent.encode("ascii")
        self._origins: dict[str, _Origin | None] = {}
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        """POST `request.body` once; raise ConnectError or TransportError on failure."""
        if self._closed:
            raise RuntimeError("this AsyncioTransport is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        host = self.hosts.select()
        url = host + request.path
        origin = self._origins[host] if host in self._origins else self._parse(host)
        if origin is None:
            self.hosts.report(host, HostOutcome.OTHER_ERROR)
            raise ConnectError(
                f"could not reach {url}: not an http(s) URL", failure=HostOutcome.OTHER_ERROR
            )
        deadline = loop.time() + self.timeouts.deadline
        slots = self._slots
        assert slots is not None
        if slots.locked():
            await self._wait_turn(slots, host, url)
        else:
            await slots.acquire()
        try:
            answer = await self._post(loop, origin, host, url, request, deadline)
        finally:
            slots.release()
        self.hosts.report(host, HostOutcome.SUCCESS)
        return WireResponse(answer.status, answer.body, url)

    async def _wait_turn(self, slots: asyncio.Semaphore, host: str, url: str) -> None:
        try:
            async with asyncio.timeout(self.timeouts.connect):
                await slots.acquire()
        except TimeoutError:
            self.hosts.report(host, HostOutcome.OTHER_ERROR)
            seconds = self.timeouts.connect
            raise ConnectError(
                f"could not reach {url}: no free connection within {seconds:g} s "
                f"({self._max_connections} in use)",
                failure=HostOutcome.OTHER_ERROR,
            ) from None

    async def _post(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: _Origin,
        host: str,
        url: str,
        request: WireRequest,
        deadline: float,
    ) -> Answer:
        connection = self._pooled(origin, loop.time())
        if connection is None:
            try:
                connection = await self._connect(loop, origin, deadline)
            except BaseException as exc:
                mapped = connect_failed(exc, url, self.timeouts.connect)
                if mapped is None:
                    raise
                self.hosts.report(host, mapped.failure)
                raise mapped.error from exc
        self._busy.add(connection)
        reusable = False
        try:
            answer = await self._exchange(loop, connection, origin, request, deadline)
            reusable = answer.reusable
        except _Deadline:
            self.hosts.report(host, HostOutcome.OTHER_ERROR)
            raise late(url, self.timeouts.deadline) from None
        except TooLarge as exc:
            self.hosts.report(host, HostOutcome.OTHER_ERROR)
            raise exc.error(url) from None
        except Exception as exc:
            mapped = map_exception(exc, url)
            if mapped is None:
                raise
            self.hosts.report(host, mapped.failure)
            raise mapped.error from exc
        finally:
            self._busy.discard(connection)
            if reusable and not self._closed:
                connection.idle_since = loop.time()
                self._idle.setdefault(origin, []).append(connection)
            elif reusable:
                connection.close()
            else:
                connection.abort()
        return answer

    def _pooled(self, origin: _Origin, now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable(now):
                return connection
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, deadline: float
    ) -> _Connection:
        seconds = min(self.timeouts.connect, max(deadline - loop.time(), 0.0))
        async with asyncio.timeout(seconds):
            _, connection = await loop.create_connection(
                _Connection,
                origin.host,
                origin.port,
                ssl=self._ssl if origin.tls else None,
                server_hostname=origin.host if origin.tls else None,
            )
        return connection

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: _Connection,
        origin: _Origin,
        request: WireRequest,
        deadline: float,
    ) -> Answer:
        transport = connection.transport
        assert transport is not None
        waiter: asyncio.Future[Answer] = loop.create_future()
        connection.waiter = waiter
        connection.reader = AnswerReader(self.max_response_bytes)
        connection.last_data = loop.time()
        transport.write(self._head(origin, request) + request.body)
        self._arm(loop, waiter, connection, deadline)
        try:
            return await waiter
        finally:
            if connection.timer is not None:
                connection.timer.cancel()
            connection.waiter = connection.timer = None

    def _arm(
        self,
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[Answer],
        connection: _Connection,
        deadline: float,
    ) -> None:
        when = min(deadline, connection.last_data + self.timeouts.read)
        connection.timer = loop.call_at(when, self._tick, loop, waiter, connection, deadline)

    def _tick(
        self,
        loop: asyncio.AbstractEventLoop,
        waiter: asyncio.Future[Answer],
        connection: _Connection,
        deadline: float,
    ) -> None:
        """The answer's one timer: the request's deadline, or `read` seconds without a byte."""
        if waiter.done():
            return
        now, read = loop.time(), self.timeouts.read
        if now >= deadline:
            waiter.set_exception(_Deadline())
        elif now - connection.last_data >= read:
            waiter.set_exception(TimeoutError(f"no byte of the answer for {read:g} s"))
        else:
            self._arm(loop, waiter, connection, deadline)

    def _head(self, origin: _Origin, request: WireRequest) -> bytes:
        lines = [
            b"POST %s HTTP/1.1" % (origin.prefix + request.path).encode("ascii"),
            b"Host: " + origin.authority,
            b"User-Agent: " + self._user_agent,
        ]
        for name, value in request.headers:
            line = f"{name}: {value}"
            if "\r" in line or "\n" in line:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(line.encode("latin-1"))
        lines.append(b"Content-Length: %d" % len(request.body))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _parse(self, host: str) -> _Origin | None:
        origin = self._origins[host] = _origin(host)
        return origin

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start over in `loop`: connections and the semaphore belong to the loop that made them."""
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()
        self._slots = asyncio.Semaphore(self._max_connections)
        self._loop = loop

    async def aclose(self) -> None:
        """Close every connection; the transport cannot be used afterwards."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        for connection in list(self._busy):
            connection.abort()

    def __repr__(self) -> str:
        return (
            f"AsyncioTransport(base_url={self.hosts.primary!r}, backup_url={self.hosts.backup!r}, "
            f"certificate={self.certificate!r})"
        )
