"""A check's reason and its progress steps as phrases (linecheck/i18n [reasons], [progress]): what the
report, the console and the progress line show in the reader's language.

A check returns its reason as `because("wan_down", interface="eth1")` (or a list of them), not as an
English sentence: the result carries the phrases (`reason_parts`) for readers in other languages and their
English rendering (`reason`) for everyone else. A key the English catalogue lacks, or an argument its
template names but the call does not give, fails at the call, so a test running the check finds it.
"""

from __future__ import annotations

from typing import Any

from linecheck.i18n import Texts, phrase
from linecheck.i18n.phrases import Phrase
from linecheck.wire import REASON_PARTS_MAX, MetricValue, ReasonPart

Reason = str | Phrase | list[Phrase] | None  # a str: not catalogued (shown as it is in every language)
REASON_MAX = 2000  # CheckResult.reason


def because(key: str, **args: MetricValue | str) -> Phrase:
    """A reason phrase (linecheck/i18n [reasons])."""
    return phrase("reasons", key, **args)


class Explained(Exception):
    """An exception whose message is a catalogued reason: `because_of` shows it in the reader's language."""

    def __init__(self, key: str, **args: MetricValue | str) -> None:
        self.phrase = because(key, **args)
        super().__init__(Texts("en").say("reasons", self.phrase))


class NotPermitted(Explained, PermissionError):
    pass


class NotFound(Explained, LookupError):
    pass


def because_of(exc: BaseException) -> Phrase:
    """The reason an exception gives: its phrase if it is `Explained`, else its own text as a raw diagnostic
    (an OS or library message, shown verbatim in every language)."""
    phrase = getattr(exc, "phrase", None)
    return phrase if isinstance(phrase, Phrase) else because("raw", diagnostic=str(exc)[:500])


def step(key: str, **args: MetricValue | str) -> Phrase:
    """A progress step of a running check (linecheck/i18n [progress]), shown by the CLI's progress line."""
    return phrase("progress", key, **args)


def english(reason: Reason) -> str:
    """A reason's English text (logs, and what an older reader shows)."""
    return reason_fields(reason)["reason"] or ""


def joined(*reasons: Reason) -> list[Phrase]:
    """Reasons one after the other (None left out), as one list of phrases."""
    out: list[Phrase] = []
    for r in reasons:
        if isinstance(r, str):
            raise TypeError("an uncatalogued str reason cannot be joined with phrases: use because()")
        out.extend([] if r is None else [r] if isinstance(r, Phrase) else r)
    return out


def reason_fields(reason: Reason) -> dict[str, Any]:
    """`reason` and `reason_parts` of a CheckResult for a check's reason."""
    if reason is None:
        return {"reason": None}
    if isinstance(reason, str):
        return {"reason": reason[:REASON_MAX]}
    parts = ([reason] if isinstance(reason, Phrase) else reason)[:REASON_PARTS_MAX]
    english = Texts("en").say("reasons", parts) or ""
    return {"reason": english[:REASON_MAX] or None,
            "reason_parts": [ReasonPart(key=p.key, args=dict(p.args)) for p in parts]}  # type: ignore[arg-type]
