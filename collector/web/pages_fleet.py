"""The fleet's pages: every line with its health (/console/), the gateways (/agents), the quarantine."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, select

from collector.api import queries
from collector.api.accounts import Role
from collector.api.scope import Scope
from collector.store import schema as t
from collector.web.auth import Admin, Anyone, console_router
from collector.web.render import connect, page_params, pager, render

router = console_router()


@router.get("/", response_class=HTMLResponse)
def fleet(request: Request, me: Anyone) -> Response:
    q = request.query_params
    filters = {k: (q.get(k) or None) for k in ("q", "tenant", "district", "status", "segment")}
    if filters["status"] not in (None, *queries.HEALTH):
        filters["status"] = None
    params = page_params(request)
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        rows, total = queries.list_lines(conn, scope, params, **{k: v[:64] if v else v for k, v in filters.items()})
        by_district = _health_by_district(conn, scope)
        ctx: dict[str, Any] = {"overview": queries.overview(conn, scope), "tenants": _tenants(conn, scope),
               "districts": [r["district"] for r in by_district if r["district"] is not None][:500],
               "by_district": by_district[:100]}
    return render(request, "fleet.html", me, rows=rows, paging=pager(params, total), filters=filters,
                  health_values=queries.HEALTH, **ctx)


def _tenants(conn: Connection, scope: Scope) -> list[tuple[str, str]]:
    stmt = select(t.tenants.c.tenant_id, t.tenants.c.name).where(scope.tenant_clause(t.tenants.c.tenant_id))
    if scope.principal.role == Role.TECHNICIAN:
        # A technician sees its assigned lines only: not the names of every customer of its carrier.
        stmt = stmt.where(t.tenants.c.tenant_id.in_(
            select(t.lines.c.tenant_id).where(scope.lines_clause(t.lines.c.line_id))))
    return [tuple(r) for r in conn.execute(stmt.order_by(t.tenants.c.name).limit(500))]  # type: ignore[misc]


def _health_by_district(conn: Connection, scope: Scope) -> list[dict[str, Any]]:
    """Lines per district and health (line_state alone); its districts also fill the district filter."""
    table: dict[str | None, dict[str, Any]] = {}
    for district, h, n in queries.health_counts(conn, scope, by_district=True):
        row = table.setdefault(district, {"district": district, "total": 0, **{k: 0 for k in queries.HEALTH}})
        row[h] = int(n)
        row["total"] += int(n)
    return sorted(table.values(), key=lambda r: (r["district"] is None, r["district"] or ""))


@router.get("/agents", response_class=HTMLResponse)
def agents(request: Request, me: Anyone) -> Response:
    status = request.query_params.get("status")
    status = status if status in ("online", "offline") else None
    q = (request.query_params.get("q") or "")[:64] or None
    params = page_params(request)
    with connect(request) as conn:
        rows, total = queries.list_agents(conn, Scope.of(conn, me.who), params, status=status, q=q)
    return render(request, "agents.html", me, rows=rows, paging=pager(params, total),
                  filters={"status": status, "q": q})


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine(request: Request, me: Admin) -> Response:
    params = page_params(request)
    item = None
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        rows, total = queries.list_quarantine(conn, scope, params)
        show = request.query_params.get("show")
        if show and show.isdigit():
            item = queries.quarantined(conn, scope, int(show))
    return render(request, "quarantine.html", me, rows=rows, paging=pager(params, total), item=item)
