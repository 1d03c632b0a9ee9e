"""The event loop the engine's commands run on: uvloop where it is installed, else asyncio's.

uvloop (which `uvicorn[standard]` installs everywhere but Windows) runs the runner's TLS and
scheduling in C; a campaign then costs about a tenth less CPU per payout. Setting
`HONGBAO_EVENT_LOOP=asyncio` keeps the standard loop, to rule uvloop out when chasing a problem.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, ParamSpec, TypeVar

from hongbao.errors import ConfigurationError

__all__ = [
    "ENV_VAR",
    "Interrupted",
    "command_process",
    "freeze_heap",
    "in_thread",
    "loop_factory",
    "run",
]

T = TypeVar("T")
A = ParamSpec("A")

ENV_VAR = "HONGBAO_EVENT_LOOP"
_CHOICES = ("uvloop", "asyncio")


_command_process = False
_START_UP_GEN0 = 200_000
"""The youngest generation's threshold while a command starts (Python's default is 700)."""
_collector_thresholds: tuple[int, ...] | None = None
"""The collector's own thresholds while a command's start-up holds them raised."""


def command_process() -> None:
    """Mark this process as a `hongbao` command's own (the console script): from now on
    `freeze_heap` freezes; until it does, the collector seldom runs.

    A command's imports build objects that live as long as the process, and the collections
    they set off every 700 new objects find nothing to free: some 8 % of the imports' CPU
    (about 18 ms of `hongbao campaign run`'s start-up). Until `freeze_heap`, only every
    `_START_UP_GEN0` net new objects set off one; a command that never freezes keeps that
    setting, which still frees its cycles (a short command, or one that plans a file).
    """
    global _command_process, _collector_thresholds
    _command_process = True
    if _collector_thresholds is None:
        _collector_thresholds = gc.get_threshold()
        gc.set_threshold(_START_UP_GEN0, *_collector_thresholds[1:])


def freeze_heap() -> None:
    """In a command's own process, hide every object alive now from the garbage collector,
    and give the collector back its own thresholds (`command_process` raised them).

    A command starts by importing and building some hundreds of thousands of objects (SQLAlchemy,
    pydantic, the engine) that live as long as it does, and every full collection walked them
    all: pauses of tens of milliseconds. In `hongbao serve` they made the p99 latency three
    times the median (`bench/serve.py`: 66 ms, 23 ms frozen); a campaign run spent about 4 % of
    its CPU on them (`bench/campaign.py`). Frozen objects that later become cyclic garbage are
    never freed, which a command's start-up heap does not do; a program or a test suite calling
    hongbao in-process keeps its collector as it is.
    """
    global _collector_thresholds
    if _command_process:
        gc.freeze()
        if _collector_thresholds is not None:
            gc.set_threshold(*_collector_thresholds)
            _collector_thresholds = None


class Interrupted(Exception):
    """A second SIGINT cancelled the work at once (`run` with `on_interrupt`)."""


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


def run(main: Coroutine[Any, Any, T], *, on_interrupt: Callable[[], None] | None = None) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` chooses.

    With `on_interrupt`, the first SIGINT (Ctrl-C) calls it on the loop, to wind down; a second
    one cancels `main` and raises `Interrupted` at once.
    """
    try:
        factory = loop_factory()
    except ConfigurationError:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    freeze_heap()
    with asyncio.Runner(loop_factory=factory) as runner:
        if on_interrupt is None:
            return runner.run(main)
        return runner.run(_interruptible(main, on_interrupt))


async def _interruptible(main: Coroutine[Any, Any, T], on_interrupt: Callable[[], None]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupts = 0

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            on_interrupt()
        else:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, interrupted)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return await main
    try:
        return await main
    except asyncio.CancelledError:
        if interrupts > 1:
            raise Interrupted("stopped at once by a second interrupt") from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def in_thread(
    executor: Executor | None, work: Callable[A, T], *args: A.args, **kwargs: A.kwargs
) -> T:
    """Run a blocking call (a ledger transaction) on `executor` (None: the loop's default) and
    wait for it without blocking the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(work, *args, **kwargs))
