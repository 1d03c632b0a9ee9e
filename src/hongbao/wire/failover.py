"""Primary/backup host selection, exactly as the official Java SDK does it (docs/protocol.md §1.4).

The SDK never retries a call itself: after each call it records the outcome per host, and the
*next* call goes to the backup host while the primary is "bad" (more than two connect timeouts or
more than two DNS errors in a row), for at most three minutes, after which everything is reset and
the primary is tried again.

>>> from hongbao.clock import FrozenClock
>>> hosts = HostSelector("https://api.mch.weixin.qq.com", "https://api2.mch.weixin.qq.com",
...                      FrozenClock())
>>> for _ in range(3):
...     hosts.report(hosts.select(), HostOutcome.CONNECT_TIMEOUT)
>>> hosts.select()
'https://api2.mch.weixin.qq.com'
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from dataclasses import dataclass
from enum import StrEnum

from hongbao.clock import Clock, SystemClock
from hongbao.wire.transport import DEFAULT_BACKUP_URL, DEFAULT_BASE_URL

__all__ = [
    "AUTO_BACKUP",
    "SWITCH_BACK_AFTER",
    "AutoBackup",
    "HostOutcome",
    "HostSelector",
    "HostStats",
    "resolve_backup_url",
]

SWITCH_BACK_AFTER = 180.0
"""Seconds the SDK stays away from a bad primary before resetting and trying it again."""


class HostOutcome(StrEnum):
    """How one call to a host ended, in the SDK's four categories."""

    SUCCESS = "success"
    """An HTTP response came back, whatever its status (the SDK counts any answer)."""
    CONNECT_TIMEOUT = "connect_timeout"
    """No connection could be made (timeout, refused, unreachable): the host looks down."""
    DNS_ERROR = "dns_error"
    """The host name did not resolve."""
    OTHER_ERROR = "other_error"
    """Anything else, read timeouts and TLS failures included."""


class AutoBackup(enum.Enum):
    """Type of `AUTO_BACKUP`."""

    AUTO = "auto"


AUTO_BACKUP = AutoBackup.AUTO
"""Default for a transport's `backup_url`: WeChat's backup host for WeChat's primary, else none."""


def resolve_backup_url(base_url: str, backup_url: str | AutoBackup | None) -> str | None:
    """The backup URL to use: an explicit value wins; `AUTO_BACKUP` pairs only the official hosts.

    A custom `base_url` (the simulator, a proxy) gets no backup unless one is named, so traffic
    never silently leaves for WeChat's real backup host.
    """
    if backup_url is AUTO_BACKUP:
        return DEFAULT_BACKUP_URL if base_url.rstrip("/") == DEFAULT_BASE_URL else None
    return backup_url


@dataclass(slots=True)
class HostStats:
    """The SDK's per-host counters (`DomainStatics`)."""

    succ_count: int = 0
    connect_timeout_count: int = 0
    dns_error_count: int = 0
    other_error_count: int = 0

    def is_good(self) -> bool:
        """At most two connect timeouts and at most two DNS errors."""
        return self.connect_timeout_count <= 2 and self.dns_error_count <= 2

    def bad_score(self) -> int:
        """`connectTimeoutCount + 5*dnsErrorCount + otherErrorCount/4` (integer division)."""
        return self.connect_timeout_count + 5 * self.dns_error_count + self.other_error_count // 4

    def record(self, outcome: HostOutcome) -> None:
        """Update the counters the way the SDK's `report*` methods do."""
        if outcome is HostOutcome.SUCCESS:
            # Two successes in a row before this one: the host has recovered, forget its errors.
            if self.succ_count >= 2:
                self.connect_timeout_count = self.dns_error_count = self.other_error_count = 0
            else:
                self.succ_count += 1
        elif outcome is HostOutcome.CONNECT_TIMEOUT:
            self.succ_count = 0
            self.dns_error_count = 0
            self.connect_timeout_count += 1
        elif outcome is HostOutcome.DNS_ERROR:
            self.succ_count = 0
            self.dns_error_count += 1
        else:
            self.succ_count = 0
            self.other_error_count += 1

    def reset(self) -> None:
        """All counters back to zero."""
        self.succ_count = self.connect_timeout_count = 0
        self.dns_error_count = self.other_error_count = 0


class HostSelector:
    """Chooses the base URL of the next call from what earlier calls reported.

    Thread-safe; time comes from `clock.monotonic()`. Without a backup URL it always answers the
    primary.
    """

    def __init__(self, primary: str, backup: str | None = None, clock: Clock | None = None) -> None:
        self.primary = primary.rstrip("/")
        self.backup = backup.rstrip("/") if backup else None
        self._clock = clock or SystemClock()
        # A host is absent until its first report: "no statistics yet" is a rule of its own.
        self._stats: dict[str, HostStats] = {}
        self._switched_at: float | None = None
        self._lock = threading.Lock()

    def select(self) -> str:
        """The base URL for the next call (the SDK's `getDomain`)."""
        if self.backup is None:
            return self.primary
        with self._lock:
            primary = self._stats.get(self.primary)
            if primary is None or primary.is_good():
                return self.primary
            now = self._clock.monotonic()
            if self._switched_at is None:
                self._switched_at = now
                return self.backup
            if now - self._switched_at < SWITCH_BACK_AFTER:
                backup = self._stats.get(self.backup)
                if backup is None or backup.is_good() or backup.bad_score() < primary.bad_score():
                    return self.backup
                return self.primary
            self._switched_at = None
            for stats in self._stats.values():
                stats.reset()
            return self.primary

    def report(self, url: str, outcome: HostOutcome) -> None:
        """Record how a call to `url` (a value `select()` returned) ended."""
        if self.backup is None:
            return
        host = url.rstrip("/")
        if host not in (self.primary, self.backup):
            raise ValueError(f"{url!r} is neither the primary nor the backup URL")
        with self._lock:
            self._stats.setdefault(host, HostStats()).record(outcome)

    def stats(self, url: str) -> HostStats | None:
        """A copy of the counters of `url`, or None while it has none."""
        with self._lock:
            stats = self._stats.get(url.rstrip("/"))
            return None if stats is None else dataclasses.replace(stats)

    def __repr__(self) -> str:
        return f"HostSelector(primary={self.primary!r}, backup={self.backup!r})"
