"""Reading a request body with a limit, for every endpoint hongbao serves.

`await request.body()` holds the whole body in memory before anyone can look at its size: one
unauthenticated POST of a gigabyte is a gigabyte of RAM. `read_limited` refuses a declared
`Content-Length` over the limit before reading anything, then counts while it reads, so at most
`limit` bytes are ever held; the caller answers `BodyTooLarge` with 413.

>>> body = await read_limited(request, 64 * 1024)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

__all__ = ["BodyTooLarge", "read_limited"]


class BodyTooLarge(Exception):
    """A request body over the endpoint's limit (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class _Request(Protocol):
    """What `read_limited` needs of a Starlette `Request`: its headers and byte stream."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def stream(self) -> AsyncIterator[bytes]: ...


async def read_limited(request: _Request, limit: int) -> bytes:
    """The request's body, or `BodyTooLarge` as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
