"""Texts of the self-check report in English and Chinese, and finding codes in plain language.

Each finding code of the catalogue (linecheck/findings.csv, docs/findings.md) has, per language,
under its `text_key`, a sentence with the finding's detail in {placeholders}, the same sentence
without them (used when the detail lacks a value), and what to do. A code without a text falls
back to the finding's own English message and a general advice, so a report from a newer agent
never breaks; tests/test_catalogue.py requires texts for exactly the catalogued codes in both
languages. English check titles come from linecheck/kinds.csv.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from types import ModuleType

from agent.i18n import en, zh
from linecheck.wire import Finding, MetricValue, Status, Trigger

LANGS: dict[str, ModuleType] = {"en": en, "zh": zh}


def detect_lang(env: Mapping[str, str] | None = None) -> str:
    """'zh' when the locale (LC_ALL, LC_MESSAGES, LANG, LANGUAGE: the first one set) is Chinese, else 'en'."""
    env = os.environ if env is None else env
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def _fmt(value: MetricValue | str) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class Texts:
    """The report's texts in one language."""

    def __init__(self, lang: str):
        if lang not in LANGS:
            raise ValueError(f"language {lang!r}: expected one of {', '.join(LANGS)}")
        self.lang = lang
        self._m = LANGS[lang]

    def ui(self, key: str, **values: object) -> str:
        return str(self._m.UI[key]).format(**values)

    def status(self, status: Status) -> str:
        return str(self._m.STATUS[status.value])

    def where(self, where: str | None) -> str:
        return str(self._m.WHERE.get(where or "", where or "?"))

    def check(self, kind: str) -> str:
        return str(self._m.CHECKS.get(kind, kind))

    def severity(self, severity: str) -> str:
        return self.ui(f"severity_{severity}")

    def trigger(self, trigger: Trigger, info: Mapping[str, MetricValue | str]) -> str:
        idle_s = info.get("idle_s")
        days = f"{idle_s / 86400:.0f}" if isinstance(idle_s, int | float) else "?"
        return str(self._m.TRIGGER[trigger.value]).format(days=days)

    def finding(self, f: Finding) -> tuple[str, str]:
        """(what it means, what to do) for a finding, in this language."""
        texts = self._m.FINDINGS.get(f.code)
        if texts is None:  # a code this version does not know: the check's own English sentence
            return f.message, self.ui("unknown_advice")
        full, plain, advice = texts
        values = {k: _fmt(v) for k, v in f.detail.items() if v is not None}
        sentence = full.format(**values) if placeholders(full) <= values.keys() else plain
        return sentence, advice
