"""Promise verdicts and compliance reports (the promise ledger's output, scoped to the caller)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from collector.api import promise_queries as pq
from collector.api.accounts import Principal
from collector.api.deps import ALL_ROLES, allow
from collector.api.pagination import Page, page_of
from collector.api.routes_fleet import Conn, Paging
from collector.api.scope import Scope

router = APIRouter(prefix="/api/v1", tags=["promises"])
Anyone = Annotated[Principal, Depends(allow(*ALL_ROLES))]
Outcome = Literal["delivered", "not_delivered", "inconclusive", "limited_by_local_equipment"]


class VerdictRow(BaseModel):
    promise_id: str
    line_id: str
    kind: str
    outcome: str
    in_grace: bool
    summary: str
    delivered_ratio: float | None
    ticket_id: int | None
    tenant_id: str | None
    district: str | None
    segment: str | None
    evaluated_at: datetime
    judgeable_from: datetime
    outcome_since: datetime


class VerdictDetail(VerdictRow):
    detail: dict[str, Any]


class LinePromise(BaseModel):
    promise_id: str
    kind: str
    effective: date
    grace_days: int | None
    terms: dict[str, Any]
    note: str | None
    verdict: VerdictDetail | None


class ComplianceRow(BaseModel):
    group: str
    kind: str
    promises: int
    delivered: int
    not_delivered: int
    inconclusive: int
    limited_by_local_equipment: int
    in_grace: int
    judged: int = Field(description="Promises whose verdict says kept or not (delivered or not_delivered), past "
                                    "their grace window; inconclusive, limited_by_local_equipment and in-grace "
                                    "verdicts are not judgements")
    delivered_share: float | None = Field(description="Delivered among the judged promises (0..1); null when "
                                                      "none is judged yet (show \"not yet judged\", not 0 %)")
    median_delivered_ratio: float | None


@router.get("/promises/verdicts", response_model=Page[VerdictRow])
def verdicts(who: Anyone, conn: Conn, paging: Paging,
             line_id: Annotated[str | None, Query(max_length=64)] = None,
             kind: Annotated[str | None, Query(max_length=32)] = None,
             outcome: Outcome | None = None,
             district: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """The latest verdict of each promise on the caller's lines."""
    rows, total = pq.list_verdicts(conn, Scope.of(conn, who), paging, line_id, kind, outcome, district)
    return page_of(rows, total, paging)


@router.get("/promises/compliance", response_model=list[ComplianceRow])
def compliance(who: Anyone, conn: Conn, by: Literal["district", "segment", "tenant"] = "district",
               kind: Annotated[str | None, Query(max_length=32)] = None,
               tenant: Annotated[str | None, Query(max_length=64)] = None) -> list[dict]:
    """Promise compliance per district, segment or tenant: counts per outcome, how many are judged, the share
    delivered among them (null when none is judged yet), median delivered ratio (measured / promised).
    At most 1000 groups."""
    return pq.compliance(conn, Scope.of(conn, who), by, kind, tenant)


@router.get("/lines/{line_id}/promises", response_model=list[LinePromise],
            responses={404: {"description": "no such line in the caller's scope"}})
def line_promises(who: Anyone, conn: Conn, line_id: str) -> list[dict]:
    """What was promised on the line and the latest verdict of each promise, with its evidence."""
    if not Scope.of(conn, who).can_see_line(conn, line_id):
        raise HTTPException(404, f"no line {line_id!r}")
    return pq.line_promises(conn, line_id)
