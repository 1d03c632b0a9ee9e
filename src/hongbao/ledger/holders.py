"""Who holds a lease: this process, named by its host and pid, and whether a holder is gone.

A claim and a take-over record their holder with the lease (`payouts.lease_holder`). A holder on
this host whose process no longer exists is *provably* gone: its leases need not run out before
recovery takes its payouts over (`LedgerStore.claim_stale`). Anything else — another host,
another PID namespace (a container), a process that lives, an unreadable name — counts as alive:
its leases are waited for, as before.

>>> holder = this_holder()
>>> is_gone(holder)
False
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

__all__ = ["HOLDER_MAX", "RESEND_GAP", "is_gone", "this_holder"]

HOLDER_MAX = 128
"""The longest holder name the ledger keeps."""
RESEND_GAP = 1.0
"""Seconds between two sends of one bill at least (docs/protocol.md §1.4): a lease of a gone
holder is taken over no sooner after it was last taken or renewed."""


@functools.cache
def _host() -> str:
    # The PID namespace tells two containers of one host name apart: a pid means something only
    # inside its namespace.
    host = socket.gethostname()[:80]
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return host
    return f"{host}/{namespace}"


def this_holder() -> str:
    """This process as a lease holder: `host[/pid namespace]:pid`."""
    return f"{_host()}:{os.getpid()}"


def is_gone(holder: str | None) -> bool:
    """True when `holder` names a process of this host (and namespace) that has ended."""
    if not holder or os.name != "posix":
        return False
    host, _, pid_text = holder.rpartition(":")
    if host != _host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid < 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's process) or cannot be asked: alive
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    # A process that has exited but was not reaped by its parent still answers kill(pid, 0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
