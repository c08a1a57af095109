"""One translation catalogue for the agent's self-check report and the collector's console.

Texts live in one data file per language next to this module (`en.toml`, `zh-CN.toml`), in sections:
`report` (the report's words), `status`, `trigger`, `where`, `checks` (check titles by kind; English
ones are the `title` column of linecheck/kinds.csv, their one source), `findings` (by the `text_key`
of linecheck/findings.csv: a short label, a sentence with {detail} placeholders, the same without them,
what to do), `metrics` (a label per metric name of linecheck/metrics.csv), `values` (the wording of
codes that appear as values: `<name>.<code>`), the phrase sections `reasons` (a check's reason),
`progress` (a step of a running check), `tickets` and `verdicts` (linecheck/i18n/phrases.py), and
`console`. tests/test_i18n.py requires every key in every language with the same placeholders.

One language-code scheme: the BCP 47 tags of LANGUAGES (what the console, the HTML `lang` attribute
and the users table already say). The edges still accept the other spellings people type or send -
`zh`, `zh_CN.UTF-8`, `zh-TW`, `en-US` - and `normalise` maps them to the scheme; nothing inside
the code compares a raw language string.
"""

from __future__ import annotations

import os
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from types import MappingProxyType

from linecheck.catalogue import findings, kinds
from linecheck.i18n.phrases import Phrase, Renderer, number
from linecheck.wire import CheckResult, Finding, MetricValue, Status, Trigger

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANG = "en"
SECTIONS = ("report", "status", "trigger", "where", "checks", "findings", "metrics", "values", "reasons", "progress",
            "tickets", "verdicts", "console")
PHRASE_SECTIONS = ("reasons", "progress", "tickets", "verdicts")
# A written-out language name -> our tag: the first subtag decides (Chinese is written in Simplified
# characters here, so zh-TW and zh-Hant readers get zh-CN rather than English, as before).
_BY_PRIMARY = {"en": "en", "zh": "zh-CN"}


def normalise(tag: str | None) -> str | None:
    """Our tag for a BCP 47 tag, a short code or a POSIX locale (`zh`, `zh-cn`, `zh_CN.UTF-8`); None if not ours."""
    if not tag:
        return None
    primary = tag.strip().split(".")[0].split("@")[0].replace("_", "-").split("-")[0].lower()
    return _BY_PRIMARY.get(primary)


def resolve(tag: str) -> str:
    """Our tag for `tag`, or a ValueError naming the languages there are (for arguments and callers)."""
    lang = normalise(tag)
    if lang is None:
        raise ValueError(f"language {tag!r}: expected one of {', '.join(LANGUAGES)} (or zh for zh-CN)")
    return lang


def from_locale(env: Mapping[str, str] | None = None) -> str:
    """The language of the POSIX locale (LC_ALL, LC_MESSAGES, LANG, LANGUAGE: the first one set); English else."""
    env = os.environ if env is None else env
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(var, "")
        if value:
            return normalise(value.split(":")[0]) or DEFAULT_LANG
    return DEFAULT_LANG


def from_accept_language(header: str | None) -> str:
    """The language from an Accept-Language header: the first tag we have, in the order sent; English else."""
    for part in (header or "").split(","):
        lang = normalise(part.split(";")[0])
        if lang is not None:
            return lang
    return DEFAULT_LANG


@dataclass(frozen=True)
class FindingText:
    label: str  # a short name shown next to the code (the console, lists)
    sentence: str  # with {detail} placeholders
    plain: str  # the same without placeholders, when the detail lacks a value
    advice: str  # what to do


@dataclass(frozen=True)
class Catalogue:
    """Every text of one language, by section and key."""

    lang: str
    report: Mapping[str, str]
    status: Mapping[str, str]
    trigger: Mapping[str, str]
    where: Mapping[str, str]
    checks: Mapping[str, str]
    findings: Mapping[str, FindingText]
    metrics: Mapping[str, str]
    values: Mapping[str, str]
    reasons: Mapping[str, str]
    progress: Mapping[str, str]
    tickets: Mapping[str, str]
    verdicts: Mapping[str, str]
    console: Mapping[str, str]


def _strings(lang: str, section: str, table: object) -> Mapping[str, str]:
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"linecheck/i18n/{lang}.toml [{section}]: expected key = \"text\" lines")
    return MappingProxyType(dict(table))


@cache
def catalogue(lang: str) -> Catalogue:
    """The texts of `lang` (any spelling `normalise` knows), read once from linecheck/i18n/<tag>.toml."""
    lang = resolve(lang)
    return parse(lang, resources.files("linecheck.i18n").joinpath(f"{lang}.toml").read_text(encoding="utf-8"))


def parse(lang: str, text: str) -> Catalogue:
    """One language's file; a malformed one is refused whole (a wrong section or shape is a typo, not a blank)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"linecheck/i18n/{lang}.toml: {exc}") from None
    extra = set(data) - set(SECTIONS)
    if extra:
        raise ValueError(f"linecheck/i18n/{lang}.toml: unknown section(s) {sorted(extra)}; expected {SECTIONS}")
    if lang == "en":  # English titles have one source, the kind catalogue
        if "checks" in data:
            raise ValueError("linecheck/i18n/en.toml: English check titles belong in linecheck/kinds.csv")
        data["checks"] = {spec.kind: spec.title for spec in kinds().values()}
    finding_texts: dict[str, FindingText] = {}
    findings_table = data.get("findings", {})
    if not isinstance(findings_table, dict):
        raise ValueError(f"linecheck/i18n/{lang}.toml: [findings] holds one [findings.<text_key>] table per finding")
    for key, texts in findings_table.items():
        parts = _strings(lang, f"findings.{key}", texts)
        if set(parts) != {"label", "sentence", "plain", "advice"}:
            raise ValueError(f"linecheck/i18n/{lang}.toml [findings.{key}]: expected label, sentence, plain and advice")
        finding_texts[key] = FindingText(parts["label"], parts["sentence"], parts["plain"], parts["advice"])
    sections = {name: _strings(lang, name, data.get(name, {})) for name in SECTIONS if name != "findings"}
    return Catalogue(lang=lang, findings=MappingProxyType(finding_texts), **sections)  # type: ignore[arg-type]


def phrase(section: str, key: str, **args: object) -> Phrase:
    """A phrase of `section` (linecheck/i18n/phrases.py), checked where it is said: a key the English catalogue
    lacks, or an argument its template names but the call does not give, is an error there, not a blank later."""
    template = getattr(catalogue("en"), section).get(key) if section in PHRASE_SECTIONS else None
    if template is None:
        raise ValueError(f"{key!r} is not in linecheck/i18n/en.toml [{section}]")
    if missing := placeholders(template) - args.keys():
        raise ValueError(f"[{section}] {key!r} needs {sorted(missing)}")
    return Phrase(key, args)  # type: ignore[arg-type]


def english(section: str, phrases: Phrase | list[Phrase], sentences: bool = False) -> str:
    """The English text of phrases we said ourselves (their keys are checked when said, so it renders)."""
    return Texts("en").say(section, phrases, sentences=sentences) or ""


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _fmt(value: MetricValue | str) -> str:
    return number(value) if isinstance(value, int | float) else str(value)


# Unit suffixes of metric names (linecheck/metrics.csv) as a reader writes them; bytes and seconds are
# words in some languages (report.unit_bytes, report.unit_s), the rest are symbols everywhere.
_UNITS = (("_mbps", " Mbit/s"), ("_kbps", " kbit/s"), ("_ms", " ms"), ("_pct", "%"), ("_dbm", " dBm"),
          ("_mhz", " MHz"), ("_ghz", " GHz"), ("_rpm", " RPM"), ("_bytes", "unit_bytes"), ("_count", ""),
          ("_num", ""), ("_s", "unit_s"))


class Texts:
    """The report's texts in one language, with the phrasing rules (detail in sentences, fallbacks)."""

    def __init__(self, lang: str):
        self.catalogue = catalogue(lang)
        self.lang = self.catalogue.lang

    def ui(self, key: str, **values: object) -> str:
        return self.catalogue.report[key].format(**values)

    def status(self, status: Status) -> str:
        return self.catalogue.status[status.value]

    def where(self, where: str | None) -> str:
        return self.catalogue.where.get(where or "", where or "?")

    def check(self, kind: str) -> str:
        return self.catalogue.checks.get(kind, kind)

    def severity(self, severity: str) -> str:
        return self.ui(f"severity_{severity}")

    def trigger(self, trigger: Trigger, info: Mapping[str, MetricValue | str]) -> str:
        idle_s = info.get("idle_s")
        days = f"{idle_s / 86400:.0f}" if isinstance(idle_s, int | float) else "?"
        return self.catalogue.trigger[trigger.value].format(days=days)

    def finding(self, f: Finding, html: bool = False) -> tuple[str, str]:
        """(what it means, what to do) for a finding, in this language. With `html`, both are escaped HTML
        with the detail's values marked as data (linecheck/i18n/phrases.py)."""
        spec = findings().get(f.code)
        texts = self.catalogue.findings.get(spec.text_key) if spec is not None else None
        if texts is None:  # a code this version does not know (a newer agent): its own English sentence
            return (escape(f.message) if html else f.message), self.ui("unknown_advice")
        sentence = self._renderer(html).render("findings", Phrase(f"{spec.text_key}.sentence",  # type: ignore[union-attr]
                                                                  {k: v for k, v in f.detail.items() if v is not None}))
        if sentence is None:  # a detail lacks a value the sentence names: the sentence without them
            sentence = escape(texts.plain) if html else texts.plain
        return sentence, (escape(texts.advice) if html else texts.advice)

    def finding_label(self, code: str) -> str | None:
        """The short name of a finding code (also a rule's fault class named after one); None if unknown."""
        spec = findings().get(code)
        texts = self.catalogue.findings.get(spec.text_key) if spec is not None else None
        return texts.label if texts is not None else None

    def _template(self, section: str, key: str) -> str | None:
        if section == "tickets" and key not in self.catalogue.tickets:
            section = "verdicts"  # a ticket says what a promise verdict said (the ledger's tickets and notes)
        if section == "findings":
            text_key, _, part = key.rpartition(".")
            texts = self.catalogue.findings.get(text_key)
            return getattr(texts, part, None) if texts is not None and part == "sentence" else None
        table = getattr(self.catalogue, section, None) if section in PHRASE_SECTIONS else None
        return table.get(key) if table is not None else None

    def _renderer(self, html: bool) -> Renderer:
        return Renderer(self._template, self.catalogue.values, self.catalogue.report["item_sep"], html)

    def say(self, section: str, phrase: Phrase | list[Phrase] | None, html: bool = False,
            sentences: bool = False) -> str | None:
        """A phrase (or several, joined as a list, or as `sentences` one after the other) of `section` in this
        language; None when any cannot be rendered."""
        if phrase is None:
            return None
        items = phrase if isinstance(phrase, list) else [phrase]
        renderer = self._renderer(html)
        parts = [renderer.render(section, p) for p in items]
        if not parts or any(p is None for p in parts):
            return None
        sep = self.catalogue.report["sentence_gap" if sentences else "list_sep"]
        return sep.join(parts)  # type: ignore[arg-type]

    def reason(self, check: CheckResult, html: bool = False) -> str:
        """A check's reason in this language, from its phrases; the check's own (English) text when it has no
        phrases (an older agent) or one this version cannot render (a newer one)."""
        parts = [Phrase(p.key, dict(p.args)) for p in check.reason_parts]
        said = self.say("reasons", parts, html) if parts else None
        if said is not None:
            return said
        text = check.reason or ""
        return escape(text) if html else text

    def metric(self, name: str, value: MetricValue) -> str:
        """A measured figure as `label value unit` (a flag as yes/no), e.g. "WAN speed 100 Mbit/s"."""
        label = self.catalogue.metrics.get(name)
        if name.endswith("_flag"):
            return f"{label or name[:-5]} {self.ui('yes' if value else 'no')}"
        if value is None:  # not measured: no figure, so no unit either
            return f"{label or name} —"
        shown = f"{value:.3g}" if isinstance(value, float) and abs(value) < 1000 else f"{value:g}"
        for suffix, unit in _UNITS:
            if name.endswith(suffix):
                unit = self.catalogue.report[unit] if unit.startswith("unit_") else unit
                return f"{label or name[: -len(suffix)]} {shown}{unit}"
        return f"{label or name} {shown}"

    def value(self, name: str, code: str) -> str:
        """The wording of a code that appears as a value (a direction, a DNS error kind); the code if none."""
        return self.catalogue.values.get(f"{name}.{code}", code)
