"""Every command block of README.md and docs/*.md, run against a served simulator.

Per document, its shell blocks run in order in one working directory (`docs_world`), so a block
may use what an earlier one set up; servers it starts run until the document ends. A command
must exit as the doc implies (0, or `# exits N`) and print what the doc shows after a `$ `
prompt. Blocks marked `real-merchant` are not run; `setup` blocks are checked, not run
(CONTRIBUTING.md, "The docs tests").
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, SHELL, Block, blocks_of, commands_of, documents
from tests.docs.conftest import World
from tests.docs.session import Ran, Session, output_matches

pytestmark = [pytest.mark.served, pytest.mark.timeout(600)]

_SETUP_WORDS = re.compile(
    r"^(python3? -m venv \S+|\. \S*/bin/activate|source \S*/bin/activate|pip install .*"
    r"|pytest.*|ruff .*|mypy.*|tools/\S+\.sh.*)$"
)


def _shell_documents() -> Iterator[Path]:
    for path in documents():
        if any(block.lang in SHELL for block in blocks_of(path)):
            yield path


@pytest.mark.parametrize(
    "document", list(_shell_documents()), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_command_of_the_document_does_what_it_says(
    document: Path, docs_world: World, request: pytest.FixtureRequest
) -> None:
    text = document.read_text(encoding="utf-8")
    postgres = None
    if "@db.internal/" in text:
        postgres = lambda: str(request.getfixturevalue("pg_url"))  # noqa: E731
    session = Session(docs_world.workdir, docs_world.env, postgres=postgres)
    try:
        for block in blocks_of(document):
            if "config" in block.markers:
                session.configure(block.text)
                continue
            if block.lang not in SHELL or "real-merchant" in block.markers:
                continue
            if "setup" in block.markers:
                _check_setup(block)
                continue
            for command in commands_of(block):
                ran = session.run(command)
                where = f"{block.path.name}:{command.line}"
                assert ran.exit_code == command.expected_exit, _report(where, ran, command)
                if command.expected_output is not None:
                    expected = session.rewrite(command.expected_output)
                    assert output_matches(expected, ran.stdout + ran.stderr), _report(
                        where, ran, command, expected
                    )
    finally:
        faults = session.close()
    assert not faults, "\n".join(faults)


def _check_setup(block: Block) -> None:
    """A setup block holds only installation and the project's checks, with real extras."""
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    for command in commands_of(block):
        for step in re.split(r"\s*&&\s*", re.sub(r"\s+#.*$", "", command.text)):
            assert _SETUP_WORDS.match(step), f"{block.name}: {step!r} is not setup; run it"
            if step.startswith("pip install"):
                for word in shlex.split(step)[2:]:
                    named = re.fullmatch(r"\.\[([\w,-]+)\]", word)
                    wanted = set(named[1].split(",")) if named else set()
                    assert wanted <= extras, f"{block.name}: no extra {wanted - extras}"


def _report(where: str, ran: Ran, command: object, expected: str | None = None) -> str:
    shown = f"\nthe doc shows:\n{expected}" if expected is not None else ""
    return (
        f"{where}: `{ran.command}` exited {ran.exit_code} (the doc implies "
        f"{getattr(command, 'expected_exit', 0)}){shown}\n"
        f"--- stdout\n{ran.stdout[-3000:]}\n--- stderr\n{ran.stderr[-3000:]}"
    )
