"""`hongbao --help`, `--version` and every command's help load no engine: they start fast."""

from __future__ import annotations

import json
import subprocess
import sys

# Imported by a command only when it runs.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "pydantic",
    "aiohttp",
    "httpx",
    "starlette",
    "uvicorn",
    "procrastinate",
    "psycopg",
    "jinja2",
    "cryptography",
    "OpenSSL",
)

# In a fresh interpreter: `--version`, then `--help` of the root, of every group and of every
# command, in-process; after each, which heavy packages are loaded (they accumulate).
_PROBE = """
import json, sys
import typer.main
from typer.testing import CliRunner
from hongbao.cli.main import app

heavy = set(sys.argv[1:])

def paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from paths(sub, (*prefix, name))

runs = [["--version"]] + [[*path, "--help"] for path in paths(typer.main.get_command(app))]
report = []
for args in runs:
    result = CliRunner().invoke(app, args)
    loaded = sorted({name.partition(".")[0] for name in sys.modules} & heavy)
    report.append({"args": args, "exit_code": result.exit_code, "output": result.output,
                   "loaded": loaded})
print(json.dumps(report))
"""


def test_help_and_version_need_no_engine() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *HEAVY], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)
    shown = {" ".join(run["args"]): run for run in runs}
    assert shown["--version"]["output"].startswith("hongbao ")
    assert "campaign create --help" in shown, "the walk missed the nested commands"
    for args, run in shown.items():
        assert run["exit_code"] == 0, (args, run["output"])
        assert run["args"][0] == "--version" or "Usage: hongbao" in run["output"], args
    # Modules accumulate: the first run with a heavy module is the one that imported it.
    loaded = [(args, run["loaded"]) for args, run in shown.items() if run["loaded"]]
    assert not loaded, f"`hongbao {loaded[0][0]}` imported {loaded[0][1]}"


# In a fresh interpreter: one command's `--help`, then which command modules are loaded.
_ONE_COMMAND = """
import json, sys
from typer.testing import CliRunner
from hongbao.cli.main import app

result = CliRunner().invoke(app, sys.argv[1:])
loaded = sorted(name for name in sys.modules if name.startswith("hongbao.cli."))
print(json.dumps({"exit_code": result.exit_code, "output": result.output, "loaded": loaded}))
"""


def test_a_command_loads_only_its_own_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ONE_COMMAND, "campaign", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["exit_code"] == 0
    assert "Usage: hongbao campaign run" in run["output"]
    others = {"send", "tracking", "payouts", "rules", "sim", "db", "demo", "dashboard", "serve"}
    assert not {f"hongbao.cli.{name}" for name in others} & set(run["loaded"]), run["loaded"]
