"""A warning, once per file, when a file holding a secret is open to other users (as ssh does).

The API key, a key password, the dashboard's token and the merchant's private key are read from
files; at 0644 every account on the machine can read them. Nothing is refused (a container may
have no other users), but the operator is told which file and how to fix it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["warn_if_exposed"]

logger = logging.getLogger("hongbao.config")

_OTHERS = 0o077
_warned: set[Path] = set()


def warn_if_exposed(path: Path, what: str) -> bool:
    """Warn (once per file) when `path`, which holds `what`, is open to group or others.

    Returns True when it is open (warned now or before).
    """
    if os.name != "posix":
        return False
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return False  # the reader reports a missing or unreadable file itself
    if not mode & _OTHERS:
        return False
    resolved = path.resolve()
    if resolved not in _warned:
        _warned.add(resolved)
        logger.warning(
            "%s: %s is open to other users (mode %04o); it holds a secret: run `chmod 600 %s`",
            what,
            path,
            mode,
            path,
        )
    return True
