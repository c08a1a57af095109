"""Reports from stored verdicts: per line, fleet-wide per tenant / district / segment, and CSV exports.

A fleet group counts promises (a line with a speed and a WiFi promise counts once in each kind's
report) and gives the counts delivered / not delivered / inconclusive / limited by local equipment,
how many are still in their grace window, how many are judged and the share delivered among those
(model.DECISIVE: none judged is "not yet judged", never 0 %), and the median delivered ratio (measured /
promised for speed and WiFi, achieved / promised reduction for tariffs, months waived / promised).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from collector.promises.model import DECISIVE, Outcome, delivered_share

GroupBy = Literal["tenant", "district", "segment"]
GROUP_COLUMN = {"tenant": "tenant_id", "district": "district", "segment": "segment"}
UNSET = "(none)"


@dataclass(frozen=True)
class FleetGroup:
    group: str
    kind: str
    promises: int
    lines: int
    delivered: int
    not_delivered: int
    inconclusive: int
    limited: int
    in_grace: int
    median_delivered_ratio: float | None
    judged: int = 0  # delivered or not delivered, past the grace window
    judged_delivered: int = 0

    @property
    def delivered_share(self) -> float | None:
        """Delivered among the judged promises; None while none is judged."""
        return delivered_share(self.judged_delivered, self.judged)


def fleet(rows: Iterable[dict[str, Any]], by: GroupBy, kind: str | None = None) -> list[FleetGroup]:
    """Group verdict rows (ledger.verdict_rows) by tenant, district or segment, per promise kind."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if kind is None or r["kind"] == kind:
            groups[(r.get(GROUP_COLUMN[by]) or UNSET, r["kind"])].append(r)
    out = []
    for (group, k), members in sorted(groups.items()):
        counts: dict[Outcome, int] = defaultdict(int)
        judged: dict[Outcome, int] = defaultdict(int)
        for r in members:
            counts[Outcome(r["outcome"])] += 1
            if not r["in_grace"] and Outcome(r["outcome"]) in DECISIVE:
                judged[Outcome(r["outcome"])] += 1
        ratios = [r["delivered_ratio"] for r in members if r["delivered_ratio"] is not None]
        out.append(FleetGroup(
            group=group, kind=k, promises=len(members), lines=len({r["line_id"] for r in members}),
            delivered=counts[Outcome.DELIVERED], not_delivered=counts[Outcome.NOT_DELIVERED],
            inconclusive=counts[Outcome.INCONCLUSIVE], limited=counts[Outcome.LIMITED],
            in_grace=sum(1 for r in members if r["in_grace"]),
            median_delivered_ratio=statistics.median(ratios) if ratios else None,
            judged=sum(judged.values()), judged_delivered=judged[Outcome.DELIVERED]))
    return out


VERDICT_COLUMNS = ("promise_id", "line_id", "line_name", "tenant_id", "district", "segment", "kind", "outcome",
                   "in_grace", "delivered_ratio", "evaluated_at", "outcome_since", "judgeable_from", "ticket_id",
                   "summary")
FLEET_COLUMNS = ("group", "kind", "promises", "lines", "delivered", "not_delivered", "inconclusive",
                 "limited_by_local_equipment", "in_grace", "judged", "share_delivered", "median_delivered_ratio")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Outcome):
        return value.value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def verdicts_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(VERDICT_COLUMNS)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in VERDICT_COLUMNS])
    return out.getvalue()


def fleet_csv(groups: Sequence[FleetGroup]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(FLEET_COLUMNS)
    for g in groups:
        w.writerow([g.group, g.kind, g.promises, g.lines, g.delivered, g.not_delivered, g.inconclusive, g.limited,
                    g.in_grace, g.judged, _cell(g.delivered_share), _cell(g.median_delivered_ratio)])
    return out.getvalue()


def fleet_text(groups: Sequence[FleetGroup], by: GroupBy) -> str:
    """A fixed-width table for the terminal."""
    head = f"{by:<20} {'kind':<18} {'promises':>8} {'deliv.':>7} {'not':>5} {'incon.':>7} {'local':>6} " \
           f"{'grace':>6} {'judged':>6} {'%deliv.':>11} {'median':>7}"
    lines = [head, "-" * len(head)]
    for g in groups:
        med = "" if g.median_delivered_ratio is None else f"{g.median_delivered_ratio:.2f}"
        share = "not judged" if g.delivered_share is None else f"{g.delivered_share:.0%}"
        lines.append(f"{g.group[:20]:<20} {g.kind[:18]:<18} {g.promises:>8} {g.delivered:>7} {g.not_delivered:>5} "
                     f"{g.inconclusive:>7} {g.limited:>6} {g.in_grace:>6} {g.judged:>6} {share:>11} {med:>7}")
    if not groups:
        lines.append("no verdicts yet: run `linecheck-collector promises evaluate`")
    return "\n".join(lines)
