"""/console/servers: per test server figures, so a carrier sees an overloaded PoP (issue 22 item 4).

The same scoped figures as GET /api/v1/test-servers (collector/api/test_servers.py). Targets are what
gateways reported: the template prints them escaped, and the query bounds their length and number.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from collector.api import test_servers
from collector.api.scope import Scope
from collector.web.auth import Anyone, console_router
from collector.web.render import connect, render

router = console_router()


@router.get("/servers", response_class=HTMLResponse)
def servers(request: Request, me: Anyone) -> Response:
    days = request.query_params.get("days", "7")
    days_n = int(days) if days.isdigit() and 1 <= int(days) <= 31 else 7
    with connect(request) as conn:
        rows = test_servers.per_server(conn, Scope.of(conn, me.who), days_n)
    return render(request, "servers.html", me, rows=rows, days=days_n)
