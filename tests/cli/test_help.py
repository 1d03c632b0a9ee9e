"""Every command's `--help` renders, and the money-moving ones show an example."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from hongbao.cli.main import app
from tests.cli.conftest import run


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [prefix]
    paths = [prefix] if prefix else []
    for name, sub in sorted(subcommands.items()):
        paths.extend(_paths(sub, (*prefix, name)))
    return paths


ALL = _paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_help_renders(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Usage: hongbao " + " ".join(path) in " ".join(result.stdout.split())
    assert "<bool>" not in result.stdout  # a flag takes no value


@pytest.mark.parametrize(
    ("path", "example"),
    [
        (("send",), "hongbao send --openid"),
        (("send-group",), "hongbao send-group --openid"),
        (("send-mini",), "hongbao send-mini --openid"),
        (("query",), "hongbao query 19"),
        (("campaign", "create"), "hongbao campaign create --merchant"),
        (("campaign", "run"), "hongbao campaign run 1"),
        (("campaign", "status"), "hongbao campaign status 1 --json"),
        (("demo",), "hongbao demo"),
    ],
)
def test_help_shows_an_example(path: tuple[str, ...], example: str) -> None:
    assert example in " ".join(run(*path, "--help").stdout.split())


def test_every_command_is_listed() -> None:
    top = {path[0] for path in ALL}
    expected_top = {"demo", "send", "send-group", "send-mini", "query", "track", "reconcile"}
    assert expected_top | {"campaign", "sim", "db"} <= top
    campaign = {path[1] for path in ALL if path[0] == "campaign" and len(path) > 1}
    expected = {"create", "plan", "run", "status", "pause", "resume", "cancel", "report"}
    assert expected | {"export"} <= campaign
