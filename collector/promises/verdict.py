"""The judged state of one promise, in one shape for every kind: what reports, tickets and storage use.

`detail` holds the kind's evidence as plain JSON values (the tests counted, the exclusions, the
criterion, the confidence bounds, the billing rows), so a stored verdict renders the same report as
a fresh one. `said` is the summary as phrases (linecheck/i18n [verdicts]): `summary` is their English
text (`says` builds both), the console renders them in the reader's language.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from collector.promises.model import Outcome
from linecheck.i18n import english, phrase
from linecheck.i18n.phrases import Phrase, phrases_from_json


def says(key: str, **args: Any) -> Phrase:
    """A phrase of a verdict's summary (linecheck/i18n [verdicts])."""
    return phrase("verdicts", key, **args)


def summary_of(said: list[Phrase]) -> str:
    """The English summary: the phrases as sentences, one after the other."""
    return english("verdicts", said, sentences=True)


@dataclass
class PromiseVerdict:
    promise_id: str
    line_id: str
    kind: str
    outcome: Outcome
    summary: str  # one plain sentence a customer or technician can read
    evaluated_at: datetime
    judgeable_from: datetime  # due date + grace window
    in_grace: bool  # provisional: consequences wait until the grace window has passed
    detail: dict[str, Any] = field(default_factory=dict)
    fixes: list[str] = field(default_factory=list)  # customer-side actions (local equipment)
    delivered_ratio: float | None = None  # measured / promised (median), for fleet medians
    said: list[Phrase] = field(default_factory=list)  # the summary as phrases (empty: an older verdict)
    fixes_said: list[Phrase] = field(default_factory=list)  # `fixes` as phrases

    @property
    def actionable(self) -> bool:
        """Past the grace window with a verdict that calls for a ticket."""
        return not self.in_grace and self.outcome in (Outcome.NOT_DELIVERED, Outcome.LIMITED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "promise_id": self.promise_id, "line_id": self.line_id, "kind": self.kind,
            "outcome": self.outcome.value, "summary": self.summary,
            "evaluated_at": self.evaluated_at.isoformat(), "judgeable_from": self.judgeable_from.isoformat(),
            "in_grace": self.in_grace, "detail": self.detail, "fixes": self.fixes,
            "delivered_ratio": self.delivered_ratio, "said": [p.as_json() for p in self.said],
            "fixes_said": [p.as_json() for p in self.fixes_said],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromiseVerdict:
        return cls(promise_id=d["promise_id"], line_id=d["line_id"], kind=d["kind"], outcome=Outcome(d["outcome"]),
                   summary=d["summary"], evaluated_at=datetime.fromisoformat(d["evaluated_at"]),
                   judgeable_from=datetime.fromisoformat(d["judgeable_from"]), in_grace=d["in_grace"],
                   detail=d.get("detail", {}), fixes=list(d.get("fixes", [])),
                   delivered_ratio=d.get("delivered_ratio"), said=phrases_from_json(d.get("said") or []) or [],
                   fixes_said=phrases_from_json(d.get("fixes_said") or []) or [])


_PLAIN = (str, int, float, bool, type(None))


def jsonable(value: Any) -> Any:
    """Dataclasses, enums and datetimes into plain JSON values (recursively); plain values pass through."""
    if isinstance(value, _PLAIN) and not isinstance(value, Enum):
        return value
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _default(value: Any) -> Any:
    out = jsonable(value)
    if out is value:
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")
    return out


def dumps(value: Any) -> str:
    """JSON text; values already made plain (a PromiseVerdict's detail) are not walked again."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_default)
