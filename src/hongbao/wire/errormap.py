"""The one boundary where driver exceptions (httpx, asyncio, ssl, OSError) become hongbao errors.

Two kinds only, because the payout state machine lives on the difference:

* `ConnectError` — the request certainly never reached the server: no connection (refused,
  unreachable, connect timeout), no DNS answer, a failed TLS handshake, an unusable URL.
* `TransportError` — it may have: read timeout, reset or disconnect after sending, a truncated
  or undecodable answer. When in doubt a class lands here, because "unknown" is always safe for
  the money (it leads to a query or a same-bill resend, never to a new bill number).

Each mapped error also carries `failure`, the host-failover category of `HostOutcome`.

>>> mapped = map_exception(ConnectionRefusedError(111, "refused"), "https://h/x")
>>> type(mapped.error).__name__, mapped.failure
('ConnectError', <HostOutcome.CONNECT_TIMEOUT: 'connect_timeout'>)
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from hongbao.errors import ConnectError, TransportError
from hongbao.wire.failover import HostOutcome
from hongbao.wire.http11 import ProtocolViolation

__all__ = ["Mapped", "Rule", "connect_failed", "map_exception", "rules"]


@dataclass(frozen=True, slots=True)
class Rule:
    """What a driver exception class means for the money and for host failover."""

    not_sent: bool
    """True: the request certainly never left (`ConnectError`); False: it may have."""
    failure: HostOutcome | None
    """The failover category; None: read it from the wrapped cause (DNS, TLS or socket)."""


# "Connect failure" is counted as the SDK's connect timeout, also when refused or unreachable.
# The Java SDK counts a refused connection as "other"; docs/protocol.md §10.8 asks to fail over on
# connection-level errors, and a host that refuses connections is as unreachable as one that
# times out.
NOT_CONNECTED = Rule(not_sent=True, failure=HostOutcome.CONNECT_TIMEOUT)
NO_DNS = Rule(not_sent=True, failure=HostOutcome.DNS_ERROR)
# TLS failures, bad URLs, proxies: nothing was sent, but the host is not shown to be down.
NOT_SENT = Rule(not_sent=True, failure=HostOutcome.OTHER_ERROR)
CONNECT_BY_CAUSE = Rule(not_sent=True, failure=None)
MAYBE_SENT = Rule(not_sent=False, failure=HostOutcome.OTHER_ERROR)


Rules = dict[type[BaseException], Rule]

# Bare stdlib errors that a driver let through, and the asyncio transport's own: the phase is
# unknown unless the type itself can only come from connecting.
_STDLIB_RULES: Rules = {
    ProtocolViolation: MAYBE_SENT,  # an answer came, but not one to trust
    socket.gaierror: NO_DNS,
    ConnectionRefusedError: NOT_CONNECTED,
    ssl.SSLCertVerificationError: NOT_SENT,  # only raised during the handshake
    ssl.SSLError: MAYBE_SENT,
    TimeoutError: MAYBE_SENT,
    OSError: MAYBE_SENT,
}


# Each driver's table is built on first use, so that a program using one transport never
# imports the other driver. Connect-phase errors of httpx come only from httpcore's
# connect/start_tls.
@functools.cache
def _httpx_rules() -> Rules:
    import httpx

    return {
        httpx.HTTPError: MAYBE_SENT,
        httpx.HTTPStatusError: MAYBE_SENT,
        httpx.RequestError: MAYBE_SENT,
        httpx.TransportError: MAYBE_SENT,
        httpx.TimeoutException: MAYBE_SENT,
        httpx.ConnectTimeout: NOT_CONNECTED,
        httpx.ReadTimeout: MAYBE_SENT,
        httpx.WriteTimeout: MAYBE_SENT,  # part of the body may be on its way
        httpx.PoolTimeout: NOT_SENT,  # waited for a free connection; nothing was written
        httpx.NetworkError: MAYBE_SENT,
        httpx.ConnectError: CONNECT_BY_CAUSE,
        httpx.ReadError: MAYBE_SENT,
        httpx.WriteError: MAYBE_SENT,
        httpx.CloseError: MAYBE_SENT,
        httpx.ProxyError: NOT_SENT,
        httpx.UnsupportedProtocol: NOT_SENT,
        httpx.ProtocolError: MAYBE_SENT,
        httpx.LocalProtocolError: MAYBE_SENT,  # h11 may raise it mid-message
        httpx.RemoteProtocolError: MAYBE_SENT,  # e.g. disconnected without a response
        httpx.DecodingError: MAYBE_SENT,
        httpx.TooManyRedirects: MAYBE_SENT,
        httpx.InvalidURL: NOT_SENT,
        httpx.StreamError: MAYBE_SENT,
        httpx.StreamConsumed: MAYBE_SENT,
        httpx.StreamClosed: MAYBE_SENT,
        httpx.ResponseNotRead: MAYBE_SENT,
        httpx.RequestNotRead: MAYBE_SENT,
    }


_DRIVER_RULES: dict[str, Callable[[], Rules]] = {"httpx": _httpx_rules}


def rules() -> Mapping[type[BaseException], Rule]:
    """Every exception class with an explicit decision (this imports httpx).

    A subclass that is not listed uses the decision of its nearest listed base class.
    """
    return {**_STDLIB_RULES, **_httpx_rules()}


def _rule_for(klass: type[BaseException]) -> Rule | None:
    driver = _DRIVER_RULES.get(klass.__module__.partition(".")[0])
    return (driver() if driver else _STDLIB_RULES).get(klass)


def _outcome_from_cause(exc: BaseException) -> HostOutcome:
    """The failover category of a connect-phase error, read from the exceptions it wraps."""
    seen: BaseException | None = exc
    for _ in range(16):  # chains are short; the bound only guards against a cycle
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return HostOutcome.DNS_ERROR
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return HostOutcome.OTHER_ERROR
        seen = seen.__cause__ or seen.__context__
    return HostOutcome.CONNECT_TIMEOUT


_PLAIN: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host name not found"),
    (ssl.SSLCertVerificationError, "server certificate not trusted"),
)


def _plain_cause(exc: BaseException) -> str | None:
    """The cause of a failed connection in a few words, for the errors people read."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return None
        for klass, words in _PLAIN:
            if isinstance(seen, klass):
                return words
        seen = seen.__cause__ or seen.__context__
    return None


class Mapped(NamedTuple):
    """A mapped driver exception: the error to raise and its failover category."""

    error: ConnectError | TransportError
    failure: HostOutcome


def map_exception(exc: BaseException, url: str) -> Mapped | None:
    """The hongbao error for a driver exception raised while calling `url`, or None if foreign.

    The caller reports `failure` to its `HostSelector` and raises `error` from `exc`. Foreign
    exceptions (bugs, cancellation) are not transport outcomes and must propagate unchanged.
    """
    rule = next(filter(None, map(_rule_for, type(exc).__mro__)), None)
    if rule is None:
        return None
    detail = _plain_cause(exc) or (
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    )
    failure = rule.failure or _outcome_from_cause(exc)
    error: ConnectError | TransportError
    if rule.not_sent:
        error = ConnectError(f"could not reach {url}: {detail}", failure=failure)
    else:
        error = TransportError(f"no usable answer from {url}: {detail}", failure=failure)
    return Mapped(error, failure)


def connect_failed(exc: BaseException, url: str, seconds: float) -> Mapped | None:
    """The `ConnectError` for an exception raised while connecting to `url`, or None if foreign.

    Nothing was written yet, so every connection-phase failure (refused, unreachable, no DNS
    answer, a failed TLS handshake, no connection within `seconds`) is "not sent".
    """
    if isinstance(exc, TimeoutError):
        detail, failure = f"no connection within {seconds:g} s", HostOutcome.CONNECT_TIMEOUT
    elif isinstance(exc, OSError):
        detail = _plain_cause(exc) or f"{type(exc).__name__}: {exc}"
        failure = _outcome_from_cause(exc)
    else:
        return None
    return Mapped(ConnectError(f"could not reach {url}: {detail}", failure=failure), failure)
