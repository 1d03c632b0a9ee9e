"""The simulator is a model of WeChat of its own: it never imports our client, ledger or engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hongbao.sim

# `testing` (the pytest plugin) hands out clients bound to a simulator: it sits above sim/.
FORBIDDEN = {"api", "ledger", "engine", "cli", "web", "testing"}

# The package root re-exports the client (`from hongbao import Client`), so a plain import of
# hongbao.sim loads hongbao.api through hongbao/__init__.py. The check below stands in a bare
# root package, so that only what sim/ itself pulls in, directly or not, gets loaded. Every
# module of sim/ is imported, the server included.
_SCRIPT = """
import importlib, importlib.util, pkgutil, sys, types
spec = importlib.util.find_spec("hongbao")
root = types.ModuleType("hongbao")
root.__path__ = list(spec.submodule_search_locations)
sys.modules["hongbao"] = root
import hongbao.sim
for module in pkgutil.walk_packages(hongbao.sim.__path__, "hongbao.sim."):
    importlib.import_module(module.name)
print("\\n".join(sorted(m for m in sys.modules if m.startswith("hongbao."))))
"""


def test_importing_the_simulator_loads_no_upper_layer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
    )
    loaded = out.stdout.split()
    layers = {name.split(".")[1] for name in loaded}
    assert {"hongbao.sim.app", "hongbao.sim.server"} <= set(loaded)
    assert layers.isdisjoint(FORBIDDEN), loaded


def test_no_sim_module_names_an_upper_layer() -> None:
    sim_dir = Path(hongbao.sim.__file__).parent
    offending = []
    for path in sorted(sim_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [
                f"{path.relative_to(sim_dir)}: {name}"
                for name in names
                if name.startswith("hongbao.") and name.split(".")[1] in FORBIDDEN
            ]
    assert offending == []
