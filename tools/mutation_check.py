"""Run mutmut over the pure money core and fail on any survivor not accepted with a reason.

The modules and tests are set in `[tool.mutmut]` of pyproject.toml; tools/mutation.sh is the
entry point. Each line of the accepted list is

    <mutant name>  <fingerprint>  <reason>

The fingerprint is a hash of the mutated lines (the `-`/`+` lines of `mutmut show`), so when an
edit renumbers a function's mutants, a name in the list can never silently accept a different
mutation: it turns into an unaccepted survivor to look at again. `--suggest` prints list lines
(reason TODO) for the survivors not accepted yet.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

KILLED = frozenset({"killed", "timeout", "caught by type check"})
"""Statuses where the tests noticed the mutant (a hang is caught by pytest-timeout)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    name: str
    fingerprint: str
    reason: str


def _mutmut(*args: str) -> list[str]:
    """The command line of the mutmut of this interpreter's environment."""
    executable = Path(sys.executable).with_name("mutmut")
    return [str(executable if executable.exists() else "mutmut"), *args]


_UTF8 = {**os.environ, "PYTHONIOENCODING": "utf-8"}
"""Mutant names hold "ǁ": mutmut must print them whatever the locale."""


def mutmut(*args: str) -> str:
    """Run mutmut; its standard output."""
    done = subprocess.run(  # noqa: S603
        _mutmut(*args), check=True, capture_output=True, encoding="utf-8", env=_UTF8
    )
    return done.stdout


def statuses() -> dict[str, str]:
    """Every mutant of the last run and its status."""
    found: dict[str, str] = {}
    for line in mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            found[name] = status
    return found


def diff(name: str) -> str:
    return mutmut("show", name)


def fingerprint(shown: str) -> str:
    """A hash of the lines a mutant removes and adds, whatever their place in the file."""
    changed = [
        line[0] + line[1:].strip()
        for line in shown.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:12]


def load_accepted(path: Path) -> tuple[dict[str, Accepted], list[str]]:
    """The accepted survivors by name, and the problems of the file."""
    accepted: dict[str, Accepted] = {}
    problems: list[str] = []
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or parts[2].startswith("TODO"):
            problems.append(f"{path}:{number}: needs a name, a fingerprint and a reason")
            continue
        name, print_, reason = parts
        if name in accepted:
            problems.append(f"{path}:{number}: {name} is listed twice")
        accepted[name] = Accepted(name, print_, reason)
    return accepted, problems


def run(max_children: int) -> float:
    """A fresh mutmut run (cached verdicts could hide a test that stopped killing); seconds."""
    shutil.rmtree("mutants", ignore_errors=True)
    started = time.monotonic()
    command = _mutmut("run", "--max-children", str(max_children))
    subprocess.run(command, check=True, env=_UTF8)  # noqa: S603
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("accepted", type=Path, help="the accepted survivors list")
    parser.add_argument("--run", action="store_true", help="run mutmut first (a fresh run)")
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--suggest", action="store_true", help="print lines for new survivors")
    args = parser.parse_args(argv)

    mutmut_version = version("mutmut")
    if not mutmut_version.startswith("3."):
        print(f"mutmut {mutmut_version}: the list is made with mutmut 3.x", file=sys.stderr)
        return 2
    seconds = run(args.max_children) if args.run else None

    accepted, problems = load_accepted(args.accepted)
    found = statuses()
    survivors = {name: status for name, status in found.items() if status not in KILLED}
    unaccepted: list[tuple[str, str, str]] = []
    matched: set[str] = set()
    for name, status in sorted(survivors.items()):
        shown = diff(name)
        print_ = fingerprint(shown)
        entry = accepted.get(name)
        if entry is not None and entry.fingerprint == print_ and status == "survived":
            matched.add(name)
        else:
            unaccepted.append((name, print_, shown))

    for name, print_, shown in unaccepted:
        print(f"\n=== not accepted: {name} ({survivors[name]}, fingerprint {print_})\n{shown}")
    stale = sorted(set(accepted) - matched)
    for name in stale:
        print(f"note: {name} is accepted but did not survive as listed: prune or re-check it")
    for problem in problems:
        print(problem)
    if args.suggest:
        for name, print_, _ in unaccepted:
            print(f"{name}  {print_}  TODO reason")

    killed = sum(status in KILLED for status in found.values())
    timeouts = sum(status == "timeout" for status in found.values())
    took = f", {seconds:.0f} s" if seconds is not None else ""
    print(
        f"\nmutation: {len(found)} mutants, {killed} killed ({timeouts} by timeout), "
        f"{len(survivors)} survived: {len(matched)} accepted, {len(unaccepted)} not{took}"
    )
    if not found:
        print("no mutants found: run tools/mutation.sh (or pass --run)")
        return 1
    return 1 if unaccepted or problems else 0


if __name__ == "__main__":
    sys.exit(main())
