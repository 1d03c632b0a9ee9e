"""Every Python block of README.md and docs/*.md runs as written, against a served simulator.

A block runs in `docs_world` (its `hongbao.toml` configures merchant 1900000109 of a served
simulator); the `test_*` functions it defines are then called with the pytest plugin's fixtures.
A block marked `fragment` or `real-merchant` is not executed, but it must compile, every name
it uses must be defined or imported, and its imports of hongbao must work.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import symtable
import sys

import pytest

from tests.docs.blocks import PYTHON, Block, blocks_of, documents
from tests.docs.conftest import World

pytestmark = pytest.mark.served

BLOCKS = [block for path in documents() for block in blocks_of(path) if block.lang in PYTHON]


def undefined_names(source: str) -> set[str]:
    """Names a block uses that it neither defines nor imports (builtins aside)."""
    module = symtable.symtable(source, "<block>", "exec")
    bound = {
        symbol.get_name()
        for symbol in module.get_symbols()
        if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace()
    } | set(dir(builtins))
    used: set[str] = set()

    def walk(table: symtable.SymbolTable) -> None:
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (table is module or symbol.is_global()):
                used.add(symbol.get_name())
        for child in table.get_children():
            walk(child)

    walk(module)
    return used - bound


def test_the_docs_have_python_blocks_and_undefined_names_are_found() -> None:
    assert len(BLOCKS) >= 4
    assert undefined_names("def view(r):\n    return HttpResponse(Path(r))\n") == {
        "HttpResponse",
        "Path",
    }
    assert undefined_names("from pathlib import Path\nprint(Path('.'))\n") == set()


def _own_import(node: ast.stmt) -> bool:
    """An import of hongbao or the standard library (a fragment's other imports are the user's)."""
    if isinstance(node, ast.ImportFrom):
        modules = [node.module or ""]
    elif isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
    else:
        return False
    return all(m.split(".")[0] in {"hongbao", *sys.stdlib_module_names} for m in modules)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_every_python_block_runs_as_written(
    block: Block,
    docs_world: World,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = compile(block.text, block.name, "exec")
    assert undefined_names(block.text) == set(), f"{block.name} uses names it never defines"
    if block.markers & {"fragment", "real-merchant"}:
        for node in ast.parse(block.text).body:
            if _own_import(node):
                exec(compile(ast.Module([node], []), block.name, "exec"), {})  # noqa: S102
        return
    monkeypatch.chdir(docs_world.workdir)
    namespace: dict[str, object] = {"__name__": "docs_block"}
    exec(code, namespace)  # noqa: S102 - the documentation's own example
    for name, function in namespace.items():
        if name.startswith("test_") and callable(function):
            parameters = inspect.signature(function).parameters
            function(**{p: request.getfixturevalue(p) for p in parameters})
