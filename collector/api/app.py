"""The collector's HTTP application: API (/api/v1, OpenAPI at /api/openapi.json, its pages at /api/docs and
/api/redoc), console (/console), /metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import Engine, text

from collector.api import (
    routes_dispatch,
    routes_enrolment,
    routes_exports,
    routes_fleet,
    routes_ops,
    routes_promises,
    routes_registry,
    routes_tickets,
)
from collector.api.accounts import DEFAULT_TOKEN_MAX_DAYS, Accounts
from collector.api.deps import route_roles
from collector.api.docs_pages import add_docs
from collector.api.headers import SecurityHeaders
from collector.api.read_after import ReadAfterWrites
from collector.api.throttle import LoginThrottle, parse_networks
from collector.commands.desk import CommandSender
from collector.service.metrics import CONTENT_TYPE, CollectorMetrics
from collector.store.replica import ReadRouting
from collector.store.replica_metrics import ReplicaGauges

API_ROUTERS: list[APIRouter] = [routes_fleet.router, routes_tickets.router, routes_promises.router, routes_ops.router,
                                 routes_registry.router, routes_exports.router, routes_enrolment.router,
                                 routes_dispatch.router]


def create_app(engine: Engine, *, commands: CommandSender | None = None, metrics: CollectorMetrics | None = None,
               extra_routers: Sequence[APIRouter] = (), console: bool = True, secure_cookies: bool = False,
               metrics_token: str | None = None, trusted_proxies: Sequence[str] = (),
               api_token_max_days: int = DEFAULT_TOKEN_MAX_DAYS, read_url: str | None = None) -> FastAPI:
    app = FastAPI(title="linecheck collector API", version="1",
                  description="Fleet, lines, results, tickets and promises of a linecheck collector. "
                              "Authenticate with `Authorization: Bearer lc_...` (see docs/api.md). "
                              "Every list is paged (`page`, `per_page` ≤ 200).",
                  # Swagger UI and ReDoc from the package, not a CDN (collector/api/docs_pages.py)
                  openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    # With a read replica (`database_read:`) routes read through ReadRouting; sign-in, sessions and tokens
    # stay on the primary (a revoked token must stop working at once, not after the replica's lag).
    app.state.engine = ReadRouting(engine, read_url) if read_url else engine
    app.state.accounts = Accounts(engine)
    app.state.commands = commands
    app.state.metrics = metrics or CollectorMetrics(engine)
    app.state.secure_cookies = secure_cookies
    app.state.login_throttle = LoginThrottle()
    app.state.trusted_proxies = parse_networks(trusted_proxies)
    app.state.api_token_max_days = api_token_max_days
    add_docs(app)
    for router in [*API_ROUTERS, *extra_routers]:
        _publish_roles(router.routes)
        app.include_router(router)
    if console:
        from collector.web.console import router as console_router
        from collector.web.console import static_app

        app.include_router(console_router)
        app.mount("/console/static", static_app(), name="console-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/" if console else "/api/docs")

    @app.get("/healthz", tags=["operations"], response_class=PlainTextResponse,
             responses={503: {"description": "not healthy: one line per reason"}})
    def healthz(request: Request) -> PlainTextResponse:
        """Database reachability and, in the collector process, ingest's broker connection and progress
        (no authentication). 200 `ok` only when all hold; else 503 with one reason per line."""
        problems = []
        try:
            with request.app.state.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            problems.append("database unreachable")
        ingest = getattr(request.app.state.metrics, "ingest", None)
        if ingest is not None:
            problems += ingest.health().problems()
        if problems:
            return PlainTextResponse("".join(p + "\n" for p in problems), status_code=503)
        return PlainTextResponse("ok\n")

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}}, 401: {"description": "metrics token required"}})
    def prometheus(request: Request) -> Response:
        """Prometheus exposition (no authentication unless `http.metrics_token_file` is set)."""
        if metrics_token and request.headers.get("authorization") != f"Bearer {metrics_token}":
            return PlainTextResponse("metrics token required\n", status_code=401)
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)

    _declare_bearer(app)
    # Answers a write after its commit (and, with a replica, with its WAL position: collector/api/read_after.py).
    app.add_middleware(ReadAfterWrites, routing=app.state.engine if read_url else None,
                       secure_cookies=secure_cookies)
    if read_url:
        app.state.metrics.registry.register(ReplicaGauges(app.state.engine))
    app.add_middleware(SecurityHeaders)
    return app


def _publish_roles(routes: Sequence[Any]) -> None:
    """Put each route's allowed roles into the OpenAPI document (x-roles) and its description."""
    for route in routes:
        if isinstance(route, APIRoute):
            roles = route_roles(route)
            if roles is not None:
                route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": list(roles),
                                       "security": [{"bearer": []}]}
                if "Roles:" not in (route.description or ""):
                    route.description = (route.description or "") + f"\n\nRoles: {', '.join(roles)}."


def _declare_bearer(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token: lc_<id>_<secret>"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
