"""The metric catalogue: every metric a check may emit, with its unit and meaning.

It is a contract (like Datadog's metadata.csv): tests fail when a check emits a metric that is
not listed here, and docs/metrics.md is generated from it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class MetricSpec:
    kind: str
    name: str
    unit: str
    meaning: str


@cache
def catalogue() -> dict[tuple[str, str], MetricSpec]:
    text = resources.files("linecheck").joinpath("metrics.csv").read_text(encoding="utf-8")
    specs: dict[tuple[str, str], MetricSpec] = {}
    for row in csv.DictReader(text.splitlines()):
        spec = MetricSpec(row["kind"], row["name"], row["unit"], row["meaning"])
        key = (spec.kind, spec.name)
        if key in specs:
            raise ValueError(f"linecheck/metrics.csv lists {spec.kind}.{spec.name} twice")
        specs[key] = spec
    return specs


def unlisted(kind: str, metric_names: list[str] | set[str]) -> list[str]:
    """Names a check of `kind` emitted that the catalogue does not list."""
    cat = catalogue()
    return sorted(name for name in metric_names if (kind, name) not in cat)


def render_markdown() -> str:
    lines = ["# Metric catalogue", "", "Generated from `linecheck/metrics.csv`; do not edit by hand.", ""]
    lines += ["| check | metric | unit | meaning |", "|---|---|---|---|"]
    for spec in catalogue().values():
        lines.append(f"| {spec.kind} | `{spec.name}` | {spec.unit} | {spec.meaning} |")
    return "\n".join(lines) + "\n"
