"""The check registry, built from the kind catalogue: every `check` row of linecheck/kinds.csv is a
module agent/checks/<kind>.py exposing `SPEC = CheckSpec(...)`.

To add a check, write that module, give it its catalogue rows (linecheck/kinds.csv, its metrics in
linecheck/metrics.csv, new finding codes in linecheck/findings.csv with their texts in linecheck/i18n)
and a sample in config/agent.example.yaml; nothing else lists kinds. See docs/extending.md.
"""

from __future__ import annotations

import importlib

from agent.checks.base import CheckSpec
from linecheck.catalogue import kinds


def _load() -> dict[str, CheckSpec]:
    registry: dict[str, CheckSpec] = {}
    for kind, row in kinds().items():  # the catalogue's order is the run order
        if row.source != "check":
            continue
        try:
            module = importlib.import_module(f"agent.checks.{kind}")
        except ModuleNotFoundError as exc:
            if exc.name != f"agent.checks.{kind}":
                raise
            raise ImportError(f"linecheck/kinds.csv lists check kind {kind!r} but agent/checks/{kind}.py "
                              "does not exist") from exc
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, CheckSpec) or spec.kind != kind:
            raise ImportError(f"agent/checks/{kind}.py must define SPEC = CheckSpec(kind={kind!r}, ...)")
        registry[kind] = spec
    return registry


REGISTRY: dict[str, CheckSpec] = _load()
