"""The root's commands, each built (and its module imported) only when it is looked up.

typer turns every command's signature into options on each start: ~30 ms for all of hongbao's
commands, when `hongbao campaign run` needs one group of them. A root
group whose `commands` is a `LazyCommands` builds only the commands a run looks up; `--help`
of the root, which lists them all, builds them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from importlib import import_module
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

__all__ = ["LazyCommands"]


class LazyCommands(MutableMapping[str, Any]):
    """Command name → its click command, built from `"module:attribute"` on first lookup.

    The attribute is a command function or a sub-`Typer`; it is built as `Typer(**settings)`
    would build it when registered with `.command(name)` or `.add_typer(…, name=name)`.
    """

    def __init__(self, where: Mapping[str, str], settings: Mapping[str, Any]) -> None:
        # A command's entry is where it lives (a str) until it is built.
        self._entries: dict[str, Any] = dict(where)
        self._settings = settings

    def __getitem__(self, name: str) -> Any:
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = self._build(name, entry)
        return entry

    def __setitem__(self, name: str, command: Any) -> None:
        self._entries[name] = command

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _build(self, name: str, where: str) -> Any:
        module, _, attribute = where.partition(":")
        target = getattr(import_module(module), attribute)
        holder = typer.Typer(**self._settings)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name)
            group = typer.main.get_command(holder)
            assert isinstance(group, TyperGroup)
            return group.commands[name]
        holder.command(name)(target)
        return typer.main.get_command(holder)
