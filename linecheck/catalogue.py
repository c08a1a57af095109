"""The contracts both sides read: metrics, finding codes and result kinds, as data files in linecheck/.

- `metrics.csv`: every metric a check may emit, with its unit and meaning (like Datadog's
  metadata.csv); docs/metrics.md is generated from it.
- `findings.csv`: every finding code, with where the fault sits, the severities it may carry, its
  meaning, who emits it, its detail keys, the key of its texts in linecheck/i18n and the tests that prove
  it on a real (emulated) line, or on captured outputs where the lab has no such hardware (WiFi);
  docs/findings.md is generated from it.
- `kinds.csv`: every check kind a result may carry: the agent's registered checks (`check`), the
  agent's own pseudo-check (`agent`) and the room speed test (`lan`), with the English title.

The agent (agent/findings.py, agent/checks/__init__.py), the translations (linecheck/i18n) and the collector
(collector/rules/engine.py, collector/promises) import these and refuse what is not listed, at load and
in tests (tests/test_catalogue.py): an unknown code or kind is an error, never a silent no-op.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

SEVERITIES = ("warning", "critical")
KIND_SOURCES = ("check", "agent", "lan")


@dataclass(frozen=True)
class MetricSpec:
    kind: str
    name: str
    unit: str
    meaning: str


@dataclass(frozen=True)
class FindingSpec:
    code: str
    where: str  # wan, cpe, lan, wifi, dns, service
    severities: tuple[str, ...]  # the severities a finding with this code may carry
    meaning: str
    emitted_by: str  # the check kinds (or "localisation") that produce it, in words
    detail: str  # its detail keys, in words
    text_key: str  # key of its sentence and advice in [findings.<text_key>] of linecheck/i18n/<lang>.toml
    proven_by: tuple[str, ...] = ()  # pytest node ids of the tests that make the finding happen and check it


@dataclass(frozen=True)
class KindSpec:
    kind: str
    source: str  # check (agent/checks REGISTRY), agent (the pseudo-check), lan (the room speed test)
    title: str  # English title; the one source of the English check titles (linecheck/i18n) and progress
    meaning: str


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("linecheck").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def catalogue() -> dict[tuple[str, str], MetricSpec]:
    specs: dict[tuple[str, str], MetricSpec] = {}
    for row in _rows("metrics.csv"):
        spec = MetricSpec(row["kind"], row["name"], row["unit"], row["meaning"])
        key = (spec.kind, spec.name)
        if key in specs:
            raise ValueError(f"linecheck/metrics.csv lists {spec.kind}.{spec.name} twice")
        specs[key] = spec
    return specs


@cache
def findings() -> dict[str, FindingSpec]:
    specs: dict[str, FindingSpec] = {}
    for row in _rows("findings.csv"):
        spec = FindingSpec(row["code"], row["where"], tuple(row["severities"].split()), row["meaning"],
                           row["emitted_by"], row["detail"], row["text_key"],
                           tuple((row.get("proven_by") or "").split()))
        if spec.code in specs:
            raise ValueError(f"linecheck/findings.csv lists {spec.code} twice")
        if not spec.severities or not set(spec.severities) <= set(SEVERITIES):
            raise ValueError(f"linecheck/findings.csv: {spec.code} severities {row['severities']!r}: "
                             f"expected some of {SEVERITIES}")
        specs[spec.code] = spec
    return specs


@cache
def kinds() -> dict[str, KindSpec]:
    specs: dict[str, KindSpec] = {}
    for row in _rows("kinds.csv"):
        spec = KindSpec(row["kind"], row["source"], row["title"], row["meaning"])
        if spec.kind in specs:
            raise ValueError(f"linecheck/kinds.csv lists {spec.kind} twice")
        if spec.source not in KIND_SOURCES:
            raise ValueError(f"linecheck/kinds.csv: {spec.kind} source {spec.source!r}: expected one of {KIND_SOURCES}")
        specs[spec.kind] = spec
    return specs


def finding_spec(code: str) -> FindingSpec:
    """The catalogue row of `code`; a code the catalogue does not list is an error."""
    spec = findings().get(code)
    if spec is None:
        raise ValueError(f"finding code {code!r} is not in linecheck/findings.csv")
    return spec


def known_kind(kind: str) -> str:
    """`kind` itself, once checked against the catalogue (for module constants: a typo fails at import)."""
    if kind not in kinds():
        raise ValueError(f"check kind {kind!r} is not in linecheck/kinds.csv")
    return kind


def unknown_codes(codes: list[str] | set[str]) -> list[str]:
    return sorted(set(codes) - findings().keys())


def unknown_kinds(names: list[str] | set[str]) -> list[str]:
    return sorted(set(names) - kinds().keys())


# The kinds one side names in code (the registered checks are named by agent/checks REGISTRY).
AGENT = known_kind("agent")
LINK = known_kind("link")
THROUGHPUT = known_kind("throughput")
WIFI_THROUGHPUT = known_kind("wifi_throughput")


def unlisted(kind: str, metric_names: list[str] | set[str]) -> list[str]:
    """Names a check of `kind` emitted that the catalogue does not list."""
    cat = catalogue()
    return sorted(name for name in metric_names if (kind, name) not in cat)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    lines = ["# Metric catalogue", "", "Generated from `linecheck/metrics.csv`; do not edit by hand.", ""]
    lines += ["| check | metric | unit | meaning |", "|---|---|---|---|"]
    for spec in catalogue().values():
        lines.append(f"| {spec.kind} | `{spec.name}` | {spec.unit} | {spec.meaning} |")
    return "\n".join(lines) + "\n"


FINDINGS_INTRO = """\
# Finding codes

Generated from `linecheck/findings.csv` (`python -m linecheck.schema`); do not edit by hand.

A finding is a problem the agent concluded from its checks: a stable `code`, a `severity`
(`warning` or `critical`), the `check` that found it, `where` the fault most likely sits, one plain
English sentence (`message`) and a `detail` map with the evidence. The collector's rules
(docs/rules.md), WiFi localisation (docs/wifi.md) and the self-check report key on `code`, so codes
are never renamed; new ones are added.

The catalogue `linecheck/findings.csv` is the contract both sides import (`linecheck/catalogue.py`):
the agent refuses to build a finding whose code it does not list, the collector refuses
a rule that matches an unknown code, and `tests/test_catalogue.py` fails when a check emits a code
the catalogue lacks, or when a rule or a translation names a code no check emits. Its `text_key` is
the key of the code's label, sentence and advice in the translation catalogue, `[findings.<text_key>]` of
`linecheck/i18n/en.toml` and `linecheck/i18n/zh-CN.toml` (shared by the agent's report and the console:
the console shows the code beside its label and renders the sentence from the code and its detail).

`where`: `wan` the carrier's line and network beyond the gateway; `cpe` the customer's
equipment (gateway port, cable); `lan` / `wifi` inside the office; `dns` name resolution;
`service` the carrier's account and service state.
"""


def render_findings_markdown() -> str:
    lines = [FINDINGS_INTRO, "| code | where | severity | meaning | emitted by | detail |", "|---|---|---|---|---|---|"]
    for s in findings().values():
        lines.append(f"| `{s.code}` | {s.where} | {' or '.join(s.severities)} | {_cell(s.meaning)} | "
                     f"{_cell(s.emitted_by)} | {_cell(s.detail)} |")
    lines += ["", "## The test that proves each finding", "",
              "Each code is made to happen and checked by these tests (`linecheck/findings.csv`, column "
              "`proven_by`; `tests/test_catalogue.py` fails on a code without one, or on a test that does not "
              "exist). The `*_lab.py` ones run the real agent on the line lab (network namespaces, `tc tbf`, the "
              "user-space line emulator) and most also follow the result through the collector's rules and "
              "promise ledger to the ticket it opens or does not; the WiFi codes are proven on captured `iw` "
              "outputs (the lab has no WiFi hardware).", "", "| code | proven by |", "|---|---|"]
    for s in findings().values():
        lines.append(f"| `{s.code}` | " + "<br>".join(f"`{t}`" for t in s.proven_by) + " |")
    lines += ["", "## Result kinds", "", "Generated from `linecheck/kinds.csv`. `check`: a check of the agent's "
              "registry (`agent/checks/__init__.py`); `agent`: the agent's own pseudo-check; `lan`: the room "
              "speed test (`agent/lan`).", "", "| kind | source | title | meaning |", "|---|---|---|---|"]
    for k in kinds().values():
        lines.append(f"| {k.kind} | {k.source} | {_cell(k.title)} | {_cell(k.meaning)} |")
    return "\n".join(lines) + "\n"
