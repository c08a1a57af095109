"""The console's words for what the store keeps as codes and phrases, in the reader's language.

Pages get `w`, a Words for the page's language: check statuses, severities, triggers, where a fault sits,
check titles, metric labels, finding codes with their labels and sentences (rendered from the code and its
detail; the agent's English sentence for a code this version does not know), a check's reason (from its
phrases; its English text for an older or newer agent), ticket summaries and the system's notes, promise
kinds and verdicts. Codes keep being shown as codes where people look them up (`dns_failure`), beside the
label. What returns HTML is Markup: the template's text escaped, data in `<span translate="no">`, raw
diagnostics in `<code>` (linecheck/i18n/phrases.py); people's own words (notes) are shown as written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape
from pydantic import ValidationError

from linecheck.i18n import Texts
from linecheck.i18n.phrases import Phrase, Renderer, phrases_from_json
from linecheck.wire import CheckResult, Finding


def _phrases(said: object) -> list[Phrase] | None:
    if isinstance(said, str):
        try:
            said = json.loads(said)
        except ValueError:
            return None
    return phrases_from_json(said) if said else None


class Words:
    def __init__(self, lang: str):
        self.tx = Texts(lang)
        self.c = self.tx.catalogue

    # --- codes with a worded label ------------------------------------------------------------------
    def status(self, status: str) -> str:
        return self.c.status.get(status, status)

    def severity(self, severity: str | None) -> str:
        return self.c.report.get(f"severity_{severity}", severity or "—")

    def where(self, where: str | None) -> str:
        return self.c.where.get(where or "", where or "—")

    def trigger(self, trigger: str | None) -> str:
        return self.tx.value("trigger", trigger) if trigger else "—"

    def check(self, kind: str) -> str:
        return self.tx.check(kind)

    def value(self, name: str, code: str | None) -> str:
        return self.tx.value(name, code) if code else "—"

    def metric(self, name: str, value: Any) -> str:
        return self.tx.metric(name, value)

    def fault(self, fault_class: str) -> str | None:
        """A ticket's fault class (a rule's name, often a finding code): its label, or None (show the code)."""
        worded = self.c.values.get(f"fault_class.{fault_class}")
        return worded if worded is not None else self.tx.finding_label(fault_class)

    def finding_label(self, code: str) -> str | None:
        return self.tx.finding_label(code)

    # --- phrases and sentences ------------------------------------------------------------------------
    def finding(self, row: Mapping[str, Any]) -> Markup:
        """A stored finding's sentence in this language, from its code and detail."""
        try:
            f = Finding(code=row["code"], severity=row["severity"], message=row.get("message") or "",
                        detail=row.get("detail") or {})
        except (ValidationError, KeyError):
            return Markup(escape(row.get("message") or ""))
        return Markup(self.tx.finding(f, html=True)[0])

    def reason(self, check: Mapping[str, Any]) -> Markup:
        """A check's reason (from a stored envelope) in this language."""
        try:
            c = CheckResult.model_validate({k: check[k] for k in ("kind", "status", "duration_s") if k in check}
                                           | {"reason": check.get("reason"),
                                              "reason_parts": check.get("reason_parts") or []})
        except ValidationError:
            return Markup(escape(check.get("reason") or ""))
        return Markup(self.tx.reason(c, html=True))

    def say(self, section: str, said: object, fallback: str | None) -> Markup:
        """Stored phrases (a JSON list, or the list itself) as sentences; `fallback` (English) without them."""
        phrases = _phrases(said)
        text = self.tx.say(section, phrases, html=True, sentences=True) if phrases else None
        return Markup(text) if text is not None else Markup(escape(fallback or ""))

    def ticket_summary(self, ticket: Mapping[str, Any] | Any) -> Markup:
        """A ticket's summary (a row, or a dispatch job) in this language: its phrases, else its English."""
        if not isinstance(ticket, Mapping):
            ticket = {"detail": getattr(ticket, "detail", None), "summary": getattr(ticket, "summary", "")}
        detail = ticket.get("detail")
        if isinstance(detail, str):
            try:
                detail = json.loads(detail)
            except ValueError:
                detail = None
        said = detail.get("said") if isinstance(detail, dict) else None
        return self.say("tickets", said, ticket.get("summary"))

    def event_note(self, event: Mapping[str, Any]) -> Markup:
        """What the system wrote on a ticket, in this language; a person's note as they wrote it."""
        return self.say("tickets", event.get("said"), event.get("note"))

    def verdict(self, verdict: Mapping[str, Any] | None) -> Markup:
        if not verdict:
            return Markup("")
        return self.say("verdicts", verdict.get("said"), verdict.get("summary"))

    def console(self, key: str, args: Mapping[str, Any]) -> Markup:
        """A console text with {placeholders} (collector/web: a refusal naming what was typed): the values are
        data, escaped and marked translate="no"; an unknown key or a missing value shows the key."""
        renderer = Renderer(lambda _section, k: self.c.console.get(k), self.c.values, self.c.report["item_sep"],
                            html=True)
        return Markup(renderer.render("console", Phrase(key, dict(args))) or escape(key))

    def error(self, raw: str | None) -> Markup | None:
        """A form's refusal passed back in the page's address: only a catalogued ticket error renders (an
        address is anyone's to write: it never shows arbitrary text)."""
        if not raw:
            return None
        phrases = _phrases([json.loads(raw)] if raw.startswith("{") and _json_ok(raw) else None)
        if not phrases or not all(p.key.startswith("error_") for p in phrases):
            return None
        text = self.tx.say("tickets", phrases, html=True)
        return Markup(text) if text is not None else None


def _json_ok(raw: str) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True
