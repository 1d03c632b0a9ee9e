"""What both HTTP transports do when an answer is too large or too late: a `TransportError`.

Either way the request has left, so the packet may have been issued: an unknown outcome, never
"not sent", and never a gigabyte held in memory or a call held open by a dripping server.
"""

from __future__ import annotations

from hongbao.errors import TransportError
from hongbao.wire.failover import HostOutcome

__all__ = ["TooLarge", "check_declared", "late"]


class TooLarge(Exception):
    """An answer over the transport's size limit (raised while reading, mapped by the caller)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit

    def error(self, url: str) -> TransportError:
        """The unknown outcome to raise for it."""
        return TransportError(
            f"no usable answer from {url}: larger than {self.limit} bytes, not read",
            failure=HostOutcome.OTHER_ERROR,
        )


def check_declared(content_length: str | int | None, limit: int) -> None:
    """Raise `TooLarge` when a declared `Content-Length` is over `limit`, before reading."""
    if content_length is None:
        return
    text = str(content_length).strip()
    if text.isascii() and text.isdigit() and int(text) > limit:
        raise TooLarge(limit)


def late(url: str, seconds: float) -> TransportError:
    """The unknown outcome of a request whose answer had not fully come within its deadline."""
    return TransportError(
        f"no complete answer from {url} within the {seconds:g} s deadline",
        failure=HostOutcome.OTHER_ERROR,
    )
