"""Read endpoints: who am I, fleet overview, lines, a line's results/findings/series, agents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import Connection

from collector.api import queries, test_servers
from collector.api.accounts import Principal
from collector.api.deps import ALL_ROLES, allow
from collector.api.models import (
    AgentRow,
    FindingRow,
    LineDetail,
    LineRow,
    Me,
    Overview,
    ResultFull,
    ResultRow,
    Series,
    TestServerRow,
)
from collector.api.pagination import Page, PageParams, page_of, page_params
from collector.api.scope import Scope

router = APIRouter(prefix="/api/v1")
Anyone = Annotated[Principal, Depends(allow(*ALL_ROLES))]
Paging = Annotated[PageParams, Depends(page_params)]
ID = r"^[A-Za-z0-9_-]{1,64}$"


def connection(request: Request) -> Iterator[Connection]:
    with request.app.state.engine.connect() as conn:
        yield conn


Conn = Annotated[Connection, Depends(connection)]


@router.get("/me", response_model=Me, tags=["access"])
def me(who: Anyone) -> Me:
    """The caller's identity, role and tenant."""
    return Me(user_id=who.user_id, role=who.role, tenant_id=who.tenant_id, language=who.language)


@router.get("/overview", response_model=Overview, tags=["fleet"])
def overview(who: Anyone, conn: Conn) -> dict:
    """Counts over the caller's lines: health of the latest result, agents online, results in 24 h."""
    return queries.overview(conn, Scope.of(conn, who))


@router.get("/lines", response_model=Page[LineRow], tags=["fleet"])
def lines(who: Anyone, conn: Conn, paging: Paging,
          q: Annotated[str | None, Query(max_length=64, description="part of a line id, name or site id")] = None,
          tenant: Annotated[str | None, Query(max_length=64)] = None,
          district: Annotated[str | None, Query(max_length=64)] = None,
          segment: Annotated[str | None, Query(max_length=64)] = None,
          status: Annotated[str | None, Query(pattern="^(healthy|problems|unknown|no_data)$")] = None,
          after: Annotated[str | None, Query(pattern=ID, description="the page starts after this line id "
                                             "(keyset paging; `page` is then ignored)")] = None) -> dict:
    """The caller's lines ordered by line id, one page at a time, with the health of each line's latest result.

    Deep in a large fleet, page with `after` = the last line id of the previous page: it costs the
    same wherever the page is, where `page=N` skips N-1 pages first.
    """
    rows, total = queries.list_lines(conn, Scope.of(conn, who), paging, q=q, tenant=tenant, district=district,
                                     status=status, segment=segment, after=after)
    return page_of(rows, total, paging)


def _visible_line(conn: Connection, who: Principal, line_id: str) -> Scope:
    scope = Scope.of(conn, who)
    scope.require_line(conn, line_id)
    return scope


@router.get("/lines/{line_id}", response_model=LineDetail, tags=["fleet"],
            responses={404: {"description": "no such line in the caller's scope"}})
def line(who: Anyone, conn: Conn, line_id: str) -> dict:
    """A line: registry data, its agents and the latest result in full."""
    detail = queries.line_detail(conn, Scope.of(conn, who), line_id)
    if detail is None:
        raise HTTPException(404, f"no line {line_id!r}")
    return detail


@router.get("/lines/{line_id}/results", response_model=Page[ResultRow], tags=["fleet"],
            responses={404: {"description": "no such line in the caller's scope"}})
def line_results(who: Anyone, conn: Conn, line_id: str, paging: Paging,
                 since: datetime | None = None) -> dict:
    """A line's results, newest first."""
    _visible_line(conn, who, line_id)
    rows, total = queries.line_results(conn, line_id, paging, since)
    return page_of(rows, total, paging)


@router.get("/lines/{line_id}/findings", response_model=Page[FindingRow], tags=["fleet"],
            responses={404: {"description": "no such line in the caller's scope"}})
def line_findings(who: Anyone, conn: Conn, line_id: str, paging: Paging) -> dict:
    """Problems the agent concluded, newest first."""
    _visible_line(conn, who, line_id)
    rows, total = queries.line_findings(conn, line_id, paging)
    return page_of(rows, total, paging)


@router.get("/lines/{line_id}/series", response_model=Series, tags=["fleet"],
            responses={404: {"description": "no such line in the caller's scope"}})
def line_series(who: Anyone, conn: Conn, line_id: str,
                metric: Annotated[list[str], Query(max_length=10, description="metric names (repeat)")] = [],  # noqa: B006
                days: Annotated[int, Query(ge=1, le=366)] = 30) -> dict:
    """Metric values over time for charts (at most 5000 points, oldest first)."""
    _visible_line(conn, who, line_id)
    names = metric or ["down_mbps", "up_mbps", "rtt_avg_ms", "loss_pct"]
    since = datetime.now(UTC) - timedelta(days=days)
    raw = queries.line_series(conn, line_id, names, since)
    return {"line_id": line_id, "since": since,
            "series": {n: [{"at": at, "value": v} for at, v in pts] for n, pts in raw.items()}}


@router.get("/results/{agent_id}/{result_id}", response_model=ResultFull, tags=["fleet"],
            responses={404: {"description": "no such result in the caller's scope"}})
def result(who: Anyone, conn: Conn, agent_id: str, result_id: str) -> dict:
    """One result in full: every check with its metrics, and the findings."""
    row = queries.one_result(conn, Scope.of(conn, who), agent_id, result_id)
    if row is None:
        raise HTTPException(404, "no such result")
    return row


@router.get("/agents", response_model=Page[AgentRow], tags=["fleet"])
def agents(who: Anyone, conn: Conn, paging: Paging,
           status: Annotated[str | None, Query(pattern="^(online|offline)$")] = None,
           q: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """Agents: online/offline, last seen, sequence backlog."""
    rows, total = queries.list_agents(conn, Scope.of(conn, who), paging, status=status, q=q)
    return page_of(rows, total, paging)


@router.get("/test-servers", response_model=list[TestServerRow], tags=["fleet"])
def test_server_figures(who: Anyone, conn: Conn,
                        days: Annotated[int, Query(ge=1, le=31, description="the last N days")] = 7) -> list:
    """Per test server the caller's lines used: tests, median speeds, busy refusals, tests the server itself
    reported saturated. An overloaded PoP shows as many refusals or saturated tests (issue 22)."""
    return [{**vars(s), "busy_pct": s.busy_pct} for s in test_servers.per_server(conn, Scope.of(conn, who), days)]
