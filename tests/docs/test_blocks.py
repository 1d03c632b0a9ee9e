"""How the docs tests read a document: blocks, markers, commands, outputs and exit codes."""

from __future__ import annotations

from pathlib import Path

from tests.docs.blocks import ROOT, Block, blocks_of, commands_of
from tests.docs.session import output_matches


def test_blocks_carry_the_marker_on_the_line_before_and_keep_their_indent(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- docs-test: real-merchant -->\n```console\nopenssl x\n```\n\n"
        "1. step:\n\n   ```sh\n   hongbao db upgrade\n   ```\n"
    )
    first, second = blocks_of(doc)
    assert (first.markers, first.text, first.line) == (frozenset({"real-merchant"}), "openssl x", 2)
    assert (second.lang, second.text, second.markers) == ("sh", "hongbao db upgrade", frozenset())


def test_commands_join_continuations_and_split_prompts_from_output() -> None:
    block = Block(
        ROOT / "x.md",
        1,
        "console",
        '$ curl -d \'{\n  "a": 1}\'\n{"ok": true}\n$ hongbao rules test bad.xml  # exits 3\n',
    )
    curl, test = commands_of(block)
    assert curl.text == "curl -d '{\n  \"a\": 1}'"
    assert (curl.expected_output, curl.expected_exit) == ('{"ok": true}', 0)
    assert (test.expected_output, test.expected_exit) == (None, 3)
    plain = Block(ROOT / "x.md", 1, "sh", "# a comment\nhongbao a \\\n  --b\n\nhongbao c\n")
    assert [c.text for c in commands_of(plain)] == ["hongbao a \\\n  --b", "hongbao c"]


def test_output_matches_numbers_ellipses_and_wrapping_but_not_other_words() -> None:
    shown = '{"id": "42001", "appid": "wx…",\n "done": true}'
    assert output_matches(shown, '{"id":"97","appid":"wx12ab","done":true}')
    assert not output_matches(shown, '{"id":"97","appid":"wx12ab","done":false}')
    assert not output_matches("status NOT FOUND", "status SENT")
