"""The event loop the engine's commands run on: uvloop where it is installed, else asyncio's.

uvloop (which `uvicorn[standard]` installs everywhere but Windows) runs the runner's TLS and
scheduling in C; a campaign then costs about a tenth less CPU per payout. Setting
`HONGBAO_EVENT_LOOP=asyncio` keeps the standard loop, to rule uvloop out when chasing a problem.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hongbao.errors import ConfigurationError

__all__ = ["ENV_VAR", "loop_factory", "run"]

T = TypeVar("T")

ENV_VAR = "HONGBAO_EVENT_LOOP"
_CHOICES = ("uvloop", "asyncio")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default (as `asyncio.Runner` takes it)."""
    choice = os.environ.get(ENV_VAR, "uvloop").strip().lower() or "uvloop"
    if choice not in _CHOICES:
        raise ConfigurationError(f"{ENV_VAR} must be one of {', '.join(_CHOICES)}, not {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not installed (Windows): the standard loop serves
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` chooses."""
    try:
        factory = loop_factory()
    except ConfigurationError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
