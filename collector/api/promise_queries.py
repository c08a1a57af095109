"""Promise verdicts as the API and console read them: scoped, paged, and aggregated in SQL.

The ledger (collector/promises) judges and stores the latest verdict per promise; this module
groups them per district / segment / tenant for compliance reports without loading the fleet:
counts come from GROUP BY, medians from percentile_cont on PostgreSQL (on SQLite, the embedded
single-site default, from the ratio column alone).
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Literal

from sqlalchemy import Connection, case, func, select

from collector.api.pagination import PageParams, paginate
from collector.api.scope import Scope
from collector.promises.model import DECISIVE, Outcome, delivered_share
from collector.store import schema as t

OUTCOMES = ("delivered", "not_delivered", "inconclusive", "limited_by_local_equipment")
SEVERITY = {"delivered": 0, "inconclusive": 1, "limited_by_local_equipment": 2, "not_delivered": 3}
GroupBy = Literal["district", "segment", "tenant"]
_GROUP = {"district": t.lines.c.district, "segment": t.lines.c.segment, "tenant": t.lines.c.tenant_id}


def _base(scope: Scope):  # type: ignore[no-untyped-def]
    v = t.promise_verdicts
    return v.outerjoin(t.lines, t.lines.c.line_id == v.c.line_id), scope.lines_clause(v.c.line_id)


def compliance(conn: Connection, scope: Scope, by: GroupBy = "district", kind: str | None = None,
               tenant: str | None = None) -> list[dict[str, Any]]:
    v = t.promise_verdicts.c
    source, visible = _base(scope)
    group = func.coalesce(_GROUP[by], "(none)").label("group")
    counts = [func.sum(case((v.outcome == o, 1), else_=0)).label(o) for o in OUTCOMES]
    # Judged: a verdict that says kept or not, past its grace window (collector/promises/model.py DECISIVE).
    settled = ~v.in_grace
    judged = func.sum(case((settled & v.outcome.in_([o.value for o in DECISIVE]), 1), else_=0)).label("judged")
    judged_delivered = func.sum(case((settled & (v.outcome == Outcome.DELIVERED.value), 1), else_=0)
                                ).label("judged_delivered")
    stmt = (select(group, v.kind, func.count().label("promises"), *counts,
                   func.sum(case((v.in_grace, 1), else_=0)).label("in_grace"), judged, judged_delivered)
            .select_from(source).where(visible).group_by(group, v.kind).order_by(group, v.kind))
    if kind:
        stmt = stmt.where(v.kind == kind)
    if tenant:
        stmt = stmt.where(t.lines.c.tenant_id == tenant)
    rows = [dict(r._mapping) for r in conn.execute(stmt.limit(1000)).all()]
    medians = _medians(conn, scope, group, kind, tenant)
    for r in rows:
        for o in (*OUTCOMES, "in_grace", "judged"):
            r[o] = int(r[o] or 0)
        r["delivered_share"] = delivered_share(int(r.pop("judged_delivered") or 0), r["judged"])
        r["median_delivered_ratio"] = medians.get((r["group"], r["kind"]))
    return rows


def _medians(conn: Connection, scope: Scope, group: Any, kind: str | None, tenant: str | None
             ) -> dict[tuple[str, str], float]:
    v = t.promise_verdicts.c
    source, visible = _base(scope)
    cond = [visible, v.delivered_ratio.is_not(None)] + ([v.kind == kind] if kind else [])
    cond += [t.lines.c.tenant_id == tenant] if tenant else []
    if conn.dialect.name == "postgresql":
        stmt = (select(group, v.kind, func.percentile_cont(0.5).within_group(v.delivered_ratio))
                .select_from(source).where(*cond).group_by(group, v.kind))
        return {(g, k): float(m) for g, k, m in conn.execute(stmt)}
    values: dict[tuple[str, str], list[float]] = {}
    for g, k, ratio in conn.execute(select(group, v.kind, v.delivered_ratio).select_from(source).where(*cond)):
        values.setdefault((g, k), []).append(float(ratio))
    return {key: statistics.median(vals) for key, vals in values.items()}


def verdict_view(row: dict[str, Any], with_detail: bool = False) -> dict[str, Any]:
    out = {k: row[k] for k in ("promise_id", "line_id", "kind", "outcome", "in_grace", "summary",
                               "delivered_ratio", "ticket_id", "tenant_id", "district", "segment",
                               "evaluated_at", "judgeable_from", "outcome_since")}
    detail = json.loads(row["detail"]) if row.get("detail") else {}
    out["said"] = detail.get("said") if isinstance(detail, dict) else None  # the summary as phrases (console)
    if with_detail:
        out["detail"] = detail
    return out


def list_verdicts(conn: Connection, scope: Scope, params: PageParams, line_id: str | None = None,
                  kind: str | None = None, outcome: str | None = None, district: str | None = None
                  ) -> tuple[list[dict[str, Any]], int]:
    v = t.promise_verdicts.c
    source, visible = _base(scope)
    stmt = (select(t.promise_verdicts, t.lines.c.tenant_id, t.lines.c.district, t.lines.c.segment)
            .select_from(source).where(visible).order_by(v.line_id, v.promise_id))
    for col, value in ((v.line_id, line_id), (v.kind, kind), (v.outcome, outcome), (t.lines.c.district, district)):
        if value:
            stmt = stmt.where(col == value)
    rows, total = paginate(conn, stmt, params)
    return [verdict_view(r) for r in rows], total


def line_promises(conn: Connection, line_id: str) -> list[dict[str, Any]]:
    """Each promise of the line with its terms and its latest verdict (with the evidence), if judged yet."""
    p, v = t.promises.c, t.promise_verdicts.c
    verdicts = {r["promise_id"]: dict(r) for r in conn.execute(
        select(t.promise_verdicts).where(v.line_id == line_id)).mappings()}
    out = []
    for r in conn.execute(select(t.promises).where(p.line_id == line_id).order_by(p.promise_id)).mappings():
        verdict = verdicts.get(r["promise_id"])
        if verdict is not None:
            verdict.update(tenant_id=None, district=None, segment=None)
        out.append({"promise_id": r["promise_id"], "kind": r["kind"], "effective": r["effective"],
                    "grace_days": r["grace_days"], "terms": json.loads(r["terms"]), "note": r["note"],
                    "verdict": verdict_view(verdict, with_detail=True) if verdict else None})
    return out


def worst_by_line(conn: Connection, line_ids: list[str]) -> dict[str, str]:
    """The worst current outcome among each line's promises (for one page of the fleet table)."""
    if not line_ids:
        return {}
    v = t.promise_verdicts.c
    worst: dict[str, str] = {}
    for line_id, outcome in conn.execute(select(v.line_id, v.outcome).where(v.line_id.in_(line_ids))):
        if line_id not in worst or SEVERITY.get(outcome, 0) > SEVERITY.get(worst[line_id], 0):
            worst[line_id] = outcome
    return worst
