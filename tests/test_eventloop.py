"""The commands' event loop: uvloop by default, asyncio on request, a typo refused; the heap of a
command's own process frozen, an in-process caller's left alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import uvloop

from hongbao import eventloop
from hongbao.errors import ConfigurationError


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_commands_run_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV_VAR, raising=False)
    assert issubclass(eventloop.run(_loop_type()), uvloop.Loop)


def test_the_environment_can_keep_the_standard_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV_VAR, "asyncio")
    assert not issubclass(eventloop.run(_loop_type()), uvloop.Loop)


def test_an_unknown_loop_name_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV_VAR, "tokio")
    with pytest.raises(
        ConfigurationError, match="HONGBAO_EVENT_LOOP must be one of uvloop, asyncio"
    ):
        eventloop.run(_loop_type())


_FREEZES = """
import asyncio, gc
from hongbao import eventloop
eventloop.run(asyncio.sleep(0))
in_process = gc.get_freeze_count(), gc.get_threshold()[0]
eventloop.command_process()
starting = gc.get_threshold()[0]
eventloop.run(asyncio.sleep(0))
print(*in_process, starting, gc.get_freeze_count() > 0, gc.get_threshold()[0])
"""


def test_only_a_commands_own_process_freezes_its_start_up_heap_and_collects_less_starting() -> None:
    # In a fresh interpreter: frozen objects that become cyclic garbage are never freed, so a
    # program calling hongbao in-process must keep its collector as it was.
    done = subprocess.run(
        [sys.executable, "-c", _FREEZES], capture_output=True, text=True, check=True
    )
    # Python's own youngest-generation threshold (700) is kept in-process; a command starts
    # with it raised and gets it back once its heap is frozen.
    assert done.stdout.split() == ["0", "700", "200000", "True", "700"]


def test_the_console_script_runs_the_cli_as_a_command_process() -> None:
    # What the `hongbao` script does (pyproject's entry point), then a command's loop.
    code = (
        "import asyncio, gc, sys; sys.argv = ['hongbao', '--version']\n"
        "from hongbao.cli.main import console\n"
        "try:\n    console()\nexcept SystemExit:\n    pass\n"
        "from hongbao import eventloop\n"
        "eventloop.run(asyncio.sleep(0))\nprint(gc.get_freeze_count() > 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "True"
