"""docs/cli.md shows what `--help` prints, for every command it documents (and it documents all)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from medrefine.cli import COMMANDS, cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
BLOCK = re.compile(r"## `(medrefine[^`]*)`\n\n```text\n(.*?)\n```", re.S)


def _help(words: list[str]) -> str:
    result = CliRunner().invoke(cli, [*words, "--help"], terminal_width=100, prog_name="medrefine")
    assert result.exit_code == 0, result.output
    return result.output.rstrip("\n")


BLOCKS = BLOCK.findall(DOC.read_text())


def test_every_command_is_documented():
    documented = {command.split()[1] for command, _ in BLOCKS if len(command.split()) > 1}
    assert set(COMMANDS) <= documented, f"docs/cli.md lacks {sorted(set(COMMANDS) - documented)}"


@pytest.mark.parametrize("command, text", BLOCKS, ids=[c for c, _ in BLOCKS])
def test_doc_block_is_the_help_text(command, text):
    assert text == _help(command.split()[1:]), (
        f"docs/cli.md is out of date for `{command}`: paste its `--help` output (100 columns)"
    )
