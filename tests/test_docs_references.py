"""The README and docs cite only files that exist (issue 23: docs/promises.md and docs/scaling.md cited
DESIGN.md, which lives outside the repository). Every markdown link to a local file and every `*.md`
named in the text must resolve from the citing file, the repository root or docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MD_NAME = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def _exists(doc: Path, target: str) -> bool:
    return any((base / target).exists() for base in (doc.parent, ROOT, ROOT / "docs"))


def test_cited_files_exist() -> None:
    missing = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            targets = [t for t in LINK.findall(line) if not re.match(r"[a-z]+:", t)] + MD_NAME.findall(line)
            missing += [f"{doc.relative_to(ROOT)}:{n}: {t}" for t in targets if not _exists(doc, t)]
    assert missing == []
