"""The collector's command line is one table (collector/cli/program.py SUBCOMMANDS): every subcommand the
docs mention is in it, every one in it is documented, and `--help` works for each, nested ones included."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.cli.program import SUBCOMMANDS, main, parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MENTION = re.compile(r"(?:linecheck-collector|python -m collector\.cli)[ \t]+([a-z][a-z-]*)")


def documented() -> set[str]:
    return {m.group(1) for doc in DOCS for m in MENTION.finditer(doc.read_text(encoding="utf-8"))}


def help_paths(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every subcommand path of the parser: ("tickets",), ("tickets", "list"), ..."""
    paths = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths.append((*prefix, name))
                paths.extend(help_paths(child, (*prefix, name)))
    return paths


def test_the_table_covers_every_documented_subcommand_and_nothing_undocumented() -> None:
    mentioned = documented()
    assert mentioned, "no `linecheck-collector <subcommand>` found in README.md or docs/"
    assert sorted(mentioned - set(SUBCOMMANDS)) == [], "documented but not in the table"
    assert sorted(set(SUBCOMMANDS) - mentioned) == [], "in the table but documented nowhere"


def test_the_parser_is_built_from_the_table_alone() -> None:
    top = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(top) == 1 and list(top[0].choices) == list(SUBCOMMANDS)


@pytest.mark.parametrize("path", help_paths(parser()), ids=" ".join)
def test_help_of_each_subcommand_works(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: linecheck-collector " + " ".join(path))


def test_help_through_python_m() -> None:
    out = subprocess.run([sys.executable, "-m", "collector.cli", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True).stdout
    assert all(name in out for name in SUBCOMMANDS)
