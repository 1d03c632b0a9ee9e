"""The commands' event loop: uvloop by default, asyncio on request, a typo refused."""

from __future__ import annotations

import asyncio

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
