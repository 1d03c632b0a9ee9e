"""The code blocks of the documentation, and the commands in its shell blocks (pure).

What the docs tests run: every fenced block of `README.md` and `docs/*.md` (new files are picked
up by themselves). A block may be marked by an HTML comment on the line right before its fence,
`<!-- docs-test: WORD … -->`; CONTRIBUTING.md lists the words.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MARKERS",
    "PYTHON",
    "SHELL",
    "Block",
    "Command",
    "blocks_of",
    "commands_of",
    "documents",
]

ROOT = Path(__file__).resolve().parents[2]
SHELL = frozenset({"console", "sh", "shell", "bash"})
PYTHON = frozenset({"python", "py"})
MARKERS = frozenset({"real-merchant", "fragment", "setup", "config"})
"""real-merchant: needs WeChat itself (not run; a Python block is compiled and its imports run).
fragment: a Python excerpt (compiled, every name defined, its imports run; not executed).
setup: installs hongbao or runs its own checks — what the docs tests run inside (not run; each
`pip install -e '.[EXTRAS]'` must name extras that pyproject.toml defines).
config: a TOML block the reader puts in `hongbao.toml`: the commands test does so there."""

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<words>.*?)\s*-->\s*$")
_EXPECTED_EXIT = re.compile(r"#\s*exits?\s+(\d+)\b")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its markers."""

    path: Path
    line: int
    """The line of the opening fence (1-based)."""
    lang: str
    text: str
    markers: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass(frozen=True)
class Command:
    """A command of a shell block, what it should print (when the doc shows it) and its exit."""

    text: str
    line: int
    expected_output: str | None = None
    expected_exit: int = 0


def documents() -> list[Path]:
    """README.md and every docs/*.md, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with the markers on the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        index += 1
        marker = _MARKER.match(lines[start - 1]) if start > 0 else None
        markers = frozenset(marker["words"].split()) if marker else frozenset()
        unknown = markers - MARKERS
        if unknown:
            raise ValueError(f"{path}:{start}: unknown docs-test marker(s) {sorted(unknown)}")
        blocks.append(Block(path, start + 1, opening["lang"].lower(), "\n".join(body), markers))
    return blocks


def commands_of(block: Block) -> list[Command]:
    """The commands of a shell block.

    With `$ ` prompts, the lines after a command up to the next prompt are its output; without,
    every line is a command. A line ending in `\\` or inside an open quote goes on on the next.
    A trailing comment `# exits N` (or `# exit N`) gives the exit status the doc implies.
    """
    lines = block.text.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    commands: list[Command] = []
    pending: list[str] = []
    output: list[str] = []
    start = 0

    def finish() -> None:
        if pending:
            text = "\n".join(pending)
            expected = "\n".join(output).strip() if prompted and output else None
            found = _EXPECTED_EXIT.search(pending[-1])
            exit_code = int(found[1]) if found else 0
            commands.append(Command(text, start, expected, exit_code))
        pending.clear()
        output.clear()

    for offset, line in enumerate(lines, start=block.line + 1):
        if pending and not _complete("\n".join(pending)):
            pending.append(line)
            continue
        if prompted:
            if line.startswith("$ "):
                finish()
                pending.append(line[2:])
                start = offset
            elif pending:
                output.append(line)
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        finish()
        pending.append(line)
        start = offset
    finish()
    return commands


def _complete(text: str) -> bool:
    """Whether shell text is a whole command (no trailing backslash, no open quote)."""
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True
