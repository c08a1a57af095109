"""Generate docs/result.schema.json, docs/metrics.md and docs/findings.md from the code and the catalogues
(`python -m linecheck.schema`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from linecheck.catalogue import render_findings_markdown, render_markdown
from linecheck.wire import ResultEnvelope

DOCS = Path(__file__).resolve().parent.parent / "docs"


def result_schema() -> str:
    schema = ResultEnvelope.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://linecheck.example/schema/result-1.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


GENERATED = {"result.schema.json": result_schema, "metrics.md": render_markdown,
             "findings.md": render_findings_markdown}


def main() -> int:
    for name, make in GENERATED.items():
        (DOCS / name).write_text(make())
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
