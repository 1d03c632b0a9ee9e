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
from hongbao.wire.errormap import map_exception
from hongbao.wire.failover import (
    AUTO_BACKUP,
    AutoBackup,
    HostOutcome,
    HostSelector,
    resolve_backup_url,
)
from hongbao.wire.transport import DEFAULT_BASE_URL, Timeouts, Transport, WireRequest, WireResponse

__all__ = ["DEFAULT_USER_AGENT", "HttpxTransport"]


DEFAULT_USER_AGENT = f"hongbao/{__version__}"


class HttpxTransport(Transport):
    """Synchronous transport on httpx; one connection pool per instance (per certificate).

    The request body is posted unchanged to `host + request.path`; any HTTP status comes back
    as a `WireResponse`. Driver errors become `ConnectError` or `TransportError`, and every
    outcome is reported to `hosts`, which picks the host of the next call (spec §1.4).
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
    ) -> None:
        self.hosts = HostSelector(base_url, resolve_backup_url(base_url, backup_url), clock)
        self.certificate = certificate
        self.timeouts = timeouts
        self._client = httpx.Client(
            verify=make_ssl_context(certificate, ca_bundle),
            timeout=httpx.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.read,
                pool=timeouts.connect,
            ),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": user_agent},
            # Nothing from the environment: no proxy, no netrc, no SSL_CERT_FILE.
            trust_env=False,
            follow_redirects=False,
        )

    def handle_request(self, request: WireRequest) -> WireResponse:
        """POST `request.body` once; raise ConnectError or TransportError on failure."""
        host = self.hosts.select()
        url = host + request.path
        try:
            response = self._client.post(url, content=request.body, headers=request.headers)
        except Exception as exc:
            mapped = map_exception(exc, url)
            if mapped is None:
                raise
            self.hosts.report(host, mapped.failure)
            raise mapped.error from exc
        self.hosts.report(host, HostOutcome.SUCCESS)
        return WireResponse(response.status_code, response.content, url)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"HttpxTransport(base_url={self.hosts.primary!r}, backup_url={self.hosts.backup!r}, "
            f"certificate={self.certificate!r})"
        )
