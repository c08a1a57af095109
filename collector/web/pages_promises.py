"""Promise compliance (/console/promises): delivered or not, by district, segment or tenant."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from collector.api import promise_queries as pq
from collector.api.scope import Scope
from collector.web.auth import Anyone, console_router
from collector.web.render import connect, page_params, pager, render

router = console_router()


@router.get("/promises", response_class=HTMLResponse)
def promises_page(request: Request, me: Anyone) -> Response:
    by = request.query_params.get("by")
    by = by if by in ("district", "segment", "tenant") else "district"
    outcome = request.query_params.get("outcome")
    outcome = outcome if outcome in pq.OUTCOMES else "not_delivered"
    params = page_params(request)
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        groups = pq.compliance(conn, scope, by)  # type: ignore[arg-type]
        rows, total = pq.list_verdicts(conn, scope, params, outcome=outcome)
    return render(request, "promises.html", me, groups=groups, by=by, rows=rows, outcome=outcome,
                  outcomes=pq.OUTCOMES, paging=pager(params, total))
