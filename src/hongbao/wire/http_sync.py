"""The synchronous transport, on httpx: mutual TLS, a keep-alive pool and host failover.

>>> transport = HttpxTransport(
...     certificate=ClientCertificate.from_p12("apiclient_cert.p12", "1900000109")
... )  # doctest: +SKIP
>>> transport.handle_request(WireRequest("/mmpaymkttransfers/gethbinfo", body))  # doctest: +SKIP
WireResponse(status=200, url='https://api.mch.weixin.qq.com/mmpaymkttransfers/gethbinfo', ...)
"""

from __future__ import annotations

import os

import httpx

from hongbao import __version__
from hongbao.clock import Clock
from hongbao.wire.certs import ClientCertificate, make_ssl_context
from hongbao.wire.deadline import DeadlineBackend, deadline, passed
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
    Timeouts,
    Transport,
    WireRequest,
    WireResponse,
)

__all__ = ["DEFAULT_USER_AGENT", "HttpxTransport"]


DEFAULT_USER_AGENT = f"hongbao/{__version__}"


class HttpxTransport(Transport):
    """Synchronous transport on httpx; one connection pool per instance (per certificate).

    The request body is posted unchanged to `host + request.path`; any HTTP status comes back
    as a `WireResponse`, of at most `max_response_bytes` within `timeouts.deadline`. Driver
    errors become `ConnectError` or `TransportError`, and every
    outcome is reported to `hosts`, which picks the host of the next call (docs/protocol.md §1.4).
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
        pool = httpx.HTTPTransport(
            verify=make_ssl_context(certificate, ca_bundle),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Nothing from the environment: no proxy, no netrc, no SSL_CERT_FILE.
            trust_env=False,
        )
        # httpx has no deadline for a whole request: its sockets get one (see wire.deadline).
        pool._pool._network_backend = DeadlineBackend()
        self._client = httpx.Client(
            transport=pool,
            timeout=httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.read,
                pool=timeouts.connect,
            ),
            headers={"User-Agent": user_agent},
            trust_env=False,
            follow_redirects=False,
        )

    def handle_request(self, request: WireRequest) -> WireResponse:
        """POST `request.body` once; raise ConnectError or TransportError on failure."""
        host = self.hosts.select()
        url = host + request.path
        with deadline(self.timeouts.deadline):
            try:
                status, body = self._post(url, request)
            except TooLarge as exc:
                self.hosts.report(host, HostOutcome.OTHER_ERROR)
                raise exc.error(url) from None
            except Exception as exc:
                mapped = map_exception(exc, url)
                if mapped is None:
                    raise
                self.hosts.report(host, mapped.failure)
                if passed():
                    raise late(url, self.timeouts.deadline) from exc
                raise mapped.error from exc
        self.hosts.report(host, HostOutcome.SUCCESS)
        return WireResponse(status, body, url)

    def _post(self, url: str, request: WireRequest) -> tuple[int, bytes]:
        limit = self.max_response_bytes
        with self._client.stream(
            "POST", url, content=request.body, headers=request.headers
        ) as response:
            check_declared(response.headers.get("content-length"), limit)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"HttpxTransport(base_url={self.hosts.primary!r}, backup_url={self.hosts.backup!r}, "
            f"certificate={self.certificate!r})"
        )
