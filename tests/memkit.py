"""Measuring how much resident memory a piece of work adds, and feeding it a big body cheaply."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


@dataclass
class Growth:
    """The peak resident size seen during the block, less the size at its start (bytes)."""

    bytes: int = 0


@contextmanager
def rss_growth() -> Iterator[Growth]:
    """Sample this process's RSS every few milliseconds while the block runs.

    Sampled rather than read from `ru_maxrss`, whose all-time peak an earlier test may already
    have pushed higher than anything this block does.
    """
    growth = Growth()
    start = _rss()
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth.bytes = max(peak, _rss()) - start


CHUNK = b"x" * (256 * 1024)


class Body:
    """`total` bytes of the same chunk, counted as they are drawn (nothing is held)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    def chunks(self) -> Iterator[bytes]:
        """The body for a sync client."""
        while self.sent < self.total:
            self.sent += len(CHUNK)
            yield CHUNK

    async def achunks(self) -> AsyncIterator[bytes]:
        """The body for an async client."""
        for chunk in self.chunks():
            yield chunk
