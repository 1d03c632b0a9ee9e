"""The driver-exception boundary: every driver class has a decision, and the decisions hold."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys

import httpx
import pytest

from hongbao.errors import ConnectError, Outcome, TransportError
from hongbao.wire.errormap import connect_failed, map_exception, rules
from hongbao.wire.failover import HostOutcome
from hongbao.wire.http11 import ProtocolViolation

URL = "https://api.mch.weixin.qq.com/mmpaymkttransfers/sendredpack"
CONNECT = HostOutcome.CONNECT_TIMEOUT
DNS = HostOutcome.DNS_ERROR
OTHER = HostOutcome.OTHER_ERROR


def _subclasses(base: type[BaseException]) -> set[type[BaseException]]:
    found = {base}
    for subclass in base.__subclasses__():
        found |= _subclasses(subclass)
    return found


DRIVER_CLASSES = sorted(
    (
        klass
        for base in (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
        for klass in _subclasses(base)
        if klass.__module__.split(".")[0] == "httpx"
    ),
    key=lambda klass: f"{klass.__module__}.{klass.__qualname__}",
)


@pytest.mark.parametrize("klass", DRIVER_CLASSES, ids=lambda klass: klass.__qualname__)
def test_every_driver_exception_class_has_its_own_decision(klass: type[BaseException]) -> None:
    # A driver upgrade that adds an exception class fails here until someone decides whether
    # it means "not sent" or "maybe sent".
    assert klass in rules()


def _chained(exc: Exception, cause: BaseException) -> Exception:
    try:
        raise exc from cause
    except Exception as raised:
        return raised


@pytest.mark.parametrize(
    ("exc", "error_class", "failure"),
    [
        (httpx.ConnectTimeout("timed out"), ConnectError, CONNECT),
        (
            _chained(httpx.ConnectError("x"), ConnectionRefusedError(111, "refused")),
            ConnectError,
            CONNECT,
        ),
        (_chained(httpx.ConnectError("x"), socket.gaierror(-2, "unknown host")), ConnectError, DNS),
        (
            _chained(httpx.ConnectError("x"), ssl.SSLCertVerificationError("bad")),
            ConnectError,
            OTHER,
        ),
        (httpx.PoolTimeout("no free connection"), ConnectError, OTHER),
        (httpx.UnsupportedProtocol("ftp"), ConnectError, OTHER),
        (httpx.ReadTimeout("timed out"), TransportError, OTHER),
        (httpx.WriteTimeout("timed out"), TransportError, OTHER),
        (httpx.ReadError("reset"), TransportError, OTHER),
        (httpx.WriteError("broken pipe"), TransportError, OTHER),
        (httpx.RemoteProtocolError("disconnected"), TransportError, OTHER),
        (ProtocolViolation("not HTTP"), TransportError, OTHER),
        (socket.gaierror(-2, "unknown host"), ConnectError, DNS),
        (ConnectionRefusedError(111, "refused"), ConnectError, CONNECT),
        (ssl.SSLCertVerificationError("bad"), ConnectError, OTHER),
        (ConnectionResetError(104, "reset"), TransportError, OTHER),
        (ssl.SSLError("bad record"), TransportError, OTHER),
        (TimeoutError(), TransportError, OTHER),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_mapping(
    exc: BaseException, error_class: type[ConnectError | TransportError], failure: HostOutcome
) -> None:
    mapped = map_exception(exc, URL)

    assert mapped is not None
    assert type(mapped.error) is error_class
    assert (mapped.failure, mapped.error.failure) == (failure, failure)
    assert URL in str(mapped.error)


def test_connect_errors_mean_not_sent_and_transport_errors_unknown() -> None:
    refused = map_exception(ConnectionRefusedError(111, "refused"), URL)
    timed_out = map_exception(httpx.ReadTimeout("timed out"), URL)

    assert refused is not None
    assert timed_out is not None
    assert refused.error.outcome is Outcome.NOT_SENT
    assert timed_out.error.outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    "exc",
    [ValueError("bug"), RuntimeError("client closed"), KeyError("x"), asyncio.CancelledError()],
)
def test_foreign_exceptions_are_left_alone(exc: BaseException) -> None:
    assert map_exception(exc, URL) is None


@pytest.mark.parametrize(
    ("module", "other_driver"),
    [("hongbao.wire.http_async", "httpx"), ("hongbao.wire.http_async", "aiohttp")],
)
def test_each_transport_imports_only_its_own_driver(module: str, other_driver: str) -> None:
    code = f"import sys, {module}; sys.exit({other_driver!r} in sys.modules)"

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("exc", "failure", "words"),
    [
        (ConnectionRefusedError(111, "refused"), CONNECT, "connection refused"),
        (socket.gaierror(-2, "unknown host"), DNS, "host name not found"),
        (ssl.SSLCertVerificationError("bad"), OTHER, "server certificate not trusted"),
        (ssl.SSLError("handshake failure"), OTHER, "SSLError"),
        (TimeoutError(), CONNECT, "no connection within 5 s"),
        (OSError(113, "no route to host"), CONNECT, "no route to host"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_whatever_fails_while_connecting_is_not_sent(
    exc: BaseException, failure: HostOutcome, words: str
) -> None:
    # The asyncio transport connects before it writes a byte: an SSL error or a timeout there
    # is "not sent", where the same class after writing is an unknown outcome.
    mapped = connect_failed(exc, URL, 5.0)

    assert mapped is not None
    assert type(mapped.error) is ConnectError
    assert mapped.error.outcome is Outcome.NOT_SENT
    assert (mapped.failure, mapped.error.failure) == (failure, failure)
    assert words in str(mapped.error)


@pytest.mark.parametrize("exc", [ValueError("bug"), asyncio.CancelledError()])
def test_a_foreign_exception_while_connecting_is_left_alone(exc: BaseException) -> None:
    assert connect_failed(exc, URL, 5.0) is None
