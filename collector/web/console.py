"""Console pages (/console): sign-in, fleet, line detail with charts, agents, quarantine, API tokens.

Pages render on the server from the same scoped queries as the API, so a console user sees
exactly what their API token would. Sessions are tokens of kind "session" (hashed like API
tokens) in an HttpOnly cookie; every form carries a CSRF token derived from the session.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection, select

from collector.api import promise_queries as pq
from collector.api import queries
from collector.api import ticket_queries as tq
from collector.api.accounts import DEFAULT_TOKEN_MAX_DAYS, SESSION_TTL, Principal, Role, csrf_token
from collector.api.deps import SESSION_COOKIE
from collector.api.headers import REPORT_CSP
from collector.api.pagination import PageParams
from collector.api.routes_enrolment import token_ttl
from collector.api.scope import Scope
from collector.api.throttle import LoginThrottle, request_address
from collector.fleet import enrolment
from collector.store import schema as t
from collector.tickets import lifecycle as tickets
from collector.web import charts, i18n
from linecheck.wire import valid_id

HERE = Path(__file__).parent
router = APIRouter(prefix="/console", include_in_schema=False)
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
# Pages for parts that other modules provide appear once those modules are there.
env.globals["features"] = {name for name in ("tickets", "promises") if name in t.metadata.tables}
LANG_COOKIE = "lc_lang"
PER_PAGE = 25
ACTORS = (Role.CARRIER_ADMIN, Role.TECHNICIAN, Role.ENTERPRISE)
INSTALLERS = (Role.CARRIER_ADMIN, Role.TECHNICIAN)  # who may issue a gateway's enrolment token


def static_app() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


# --- plumbing ------------------------------------------------------------------------------------


def _session(request: Request) -> tuple[Principal, str] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    who = request.app.state.accounts.resolve(token)
    return (who, token) if who is not None and who.kind == "session" else None


def _lang(request: Request, who: Principal | None = None) -> str:
    # Each source may spell the language otherwise (`?lang=zh`, an old cookie): normalise maps it to our tags.
    asked = i18n.normalise(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))
    if asked is not None:
        return asked
    stored = i18n.normalise(who.language) if who is not None else None
    if stored is not None:
        return stored
    return i18n.pick(request.headers.get("accept-language"))


def _tz(request: Request) -> ZoneInfo:
    return getattr(request.app.state, "timezone", None) or ZoneInfo("UTC")


def _render(request: Request, template: str, who: Principal | None, session: str | None = None,
            status_code: int = 200, **ctx: Any) -> HTMLResponse:
    lang = _lang(request, who)
    tz = _tz(request)

    def when(ts: datetime | None) -> str:
        return "—" if ts is None else queries.aware(ts).astimezone(tz).strftime("%Y-%m-%d %H:%M")  # type: ignore[union-attr]

    def link(**changes: Any) -> str:
        params = dict(request.query_params)
        params.pop("lang", None)
        params.update({k: v for k, v in changes.items()})
        params = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{request.url.path}?{urlencode(params)}" if params else request.url.path

    body = env.get_template(template).render(
        request=request, me=who, t=i18n.translator(lang), lang=lang, other_lang="en" if lang == "zh-CN" else "zh-CN",
        csrf=csrf_token(session) if session else "", when=when, link=link, tzname=str(tz), path=request.url.path,
        **ctx)
    response = HTMLResponse(body, status_code=status_code)
    if i18n.normalise(request.query_params.get("lang")) is not None:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)


def _csrf_ok(session: str, sent: str) -> bool:
    return hmac.compare_digest(csrf_token(session), sent or "")


def _form_caller(request: Request, csrf: str, roles: tuple[Role, ...] | None = None
                 ) -> tuple[Principal, str] | Response:
    """The session, CSRF and role checks every console form needs: the caller, or the refusal to send."""
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    if not _csrf_ok(session, csrf):
        return _render(request, "message.html", who, session, status_code=403, message="csrf")
    if roles is not None and who.role not in roles:
        return _render(request, "message.html", who, session, status_code=403, message="forbidden")
    return who, session


def _page(request: Request, name: str = "page") -> PageParams:
    try:
        page = max(1, min(1_000_000, int(request.query_params.get(name, "1"))))
    except ValueError:
        page = 1
    return PageParams(page, PER_PAGE)


def _pager(params: PageParams, total: int) -> dict[str, int]:
    return {"page": params.page, "pages": max(1, -(-total // params.per_page)), "total": total}


def _conn(request: Request) -> Connection:
    return request.app.state.engine.connect()  # type: ignore[no-any-return]


# --- sign-in -------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/console/") -> HTMLResponse:
    return _render(request, "login.html", None, next=_safe_next(next), error=None)


def _safe_next(target: str) -> str:
    # Only paths inside the console: never an open redirect to another site.
    return target if target.startswith("/console/") and not target.startswith("/console//") else "/console/"


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, user: str = Form(..., max_length=64), password: str = Form(..., max_length=200),
          next: str = Form("/console/")) -> Response:
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request_address(request)  # X-Forwarded-For only from a configured trusted proxy
    wait = throttle.retry_after(user, address)
    if wait > 0:
        response = _render(request, "login.html", None, status_code=429, next=_safe_next(next),
                           error="login_throttled", minutes=max(1, round(wait / 60)))
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    token = request.app.state.accounts.login(user, password)
    if token is None:
        throttle.failed(user, address)
        return _render(request, "login.html", None, status_code=401, next=_safe_next(next), error="login_failed")
    throttle.succeeded(user, address)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=bool(request.app.state.secure_cookies), path="/")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    """Sign out: the session the cookie names is revoked on the server, CSRF token or not.

    Deleting only the cookie would leave a copied session valid for hours. Revoking without the token is
    safe: the cookie is SameSite=Lax, so another site's form cannot send it (no cross-site logout), and
    the worst a same-site request can do is sign the user out. The form still carries the token."""
    found = _session(request)
    if found:
        request.app.state.accounts.revoke(found[0].token_id)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- fleet ---------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def fleet(request: Request) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    q = request.query_params
    filters = {k: (q.get(k) or None) for k in ("q", "tenant", "district", "status", "segment")}
    if filters["status"] not in (None, *queries.HEALTH):
        filters["status"] = None
    params = _page(request)
    with _conn(request) as conn:
        scope = Scope.of(conn, who)
        rows, total = queries.list_lines(conn, scope, params, **{k: v[:64] if v else v for k, v in filters.items()})
        by_district = _health_by_district(conn, scope)
        ctx = {"overview": queries.overview(conn, scope), "tenants": _tenants(conn, scope),
               "districts": [r["district"] for r in by_district if r["district"] is not None][:500],
               "by_district": by_district[:100]}
    return _render(request, "fleet.html", who, session, rows=rows, paging=_pager(params, total), filters=filters,
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


# --- one line ------------------------------------------------------------------------------------

CHART_DAYS = 30


@router.get("/lines/{line_id}", response_class=HTMLResponse)
def line(request: Request, line_id: str) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    return _line_page(request, who, session, line_id)


def _line_page(request: Request, who: Principal, session: str, line_id: str, status_code: int = 200,
               **extra: Any) -> Response:
    history_params = _page(request, "hpage")
    with _conn(request) as conn:
        scope = Scope.of(conn, who)
        detail = queries.line_detail(conn, scope, line_id)
        if detail is None:
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        history, history_total = queries.line_results(conn, line_id, history_params)
        findings, _ = queries.line_findings(conn, line_id, PageParams(1, 10))
        since = datetime.now(UTC) - timedelta(days=CHART_DAYS)
        series = queries.line_series(conn, line_id, ["down_mbps", "up_mbps", "rtt_avg_ms", "loss_pct"], since)
        line_promises = pq.line_promises(conn, line_id)
    tr = i18n.translator(_lang(request, who))
    tz = _tz(request)
    empty = tr("no_chart_data")
    refs = []
    if detail["plan_down_mbps"]:
        refs.append(charts.Reference(detail["plan_down_mbps"], f"{tr('plan_down')} {detail['plan_down_mbps']:g}"))
    if detail["plan_up_mbps"]:
        refs.append(charts.Reference(detail["plan_up_mbps"], f"{tr('plan_up')} {detail['plan_up_mbps']:g}",
                                     "#b45309"))
    svg = [
        charts.render(charts.Chart(tr("throughput_vs_plan"), "Mbit/s",
                                   [charts.Series(tr("download"), series["down_mbps"]),
                                    charts.Series(tr("upload"), series["up_mbps"], "#d97706")], refs), tz, empty),
        charts.render(charts.Chart(tr("latency"), "ms", [charts.Series(tr("rtt"), series["rtt_avg_ms"], "#15803d")]),
                      tz, empty),
        charts.render(charts.Chart(tr("loss"), "%", [charts.Series(tr("loss"), series["loss_pct"], "#dc2626")]),
                      tz, empty),
    ]
    return _render(request, "line.html", who, session, line=detail, history=history, promises=line_promises,
                   history_pager=_pager(history_params, history_total), findings=findings, charts=svg,
                   can_act=who.role in ACTORS, can_enrol=who.role in INSTALLERS and bool(detail["tenant_id"]),
                   msg=request.query_params.get("msg"), status_code=status_code, **extra)


@router.get("/lines/{line_id}/promises/{promise_id}/acceptance", response_class=HTMLResponse)
def acceptance_report(request: Request, line_id: str, promise_id: str) -> Response:
    """The signed acceptance report of a promise's stored verdict, signed for the technician viewing it
    (print it or save it as PDF from the browser; `linecheck-collector promises verify-report` checks it)."""
    from collector.promises import acceptance, ledger

    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    if who.role not in INSTALLERS:
        return _render(request, "message.html", who, session, status_code=403, message="forbidden")
    policy = getattr(request.app.state, "promises", None)
    with _conn(request) as conn:
        owner = conn.execute(select(t.promises.c.line_id).where(t.promises.c.promise_id == promise_id)).scalar()
        if owner != line_id or not Scope.of(conn, who).can_see_line(conn, line_id):
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        verdict = ledger.stored_verdict(conn, promise_id)
        if verdict is None or policy is None:  # not judged yet, or an app without the collector's config
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        try:
            signed = acceptance.sign(acceptance.build_payload(conn, verdict, technician=who.user_id),
                                     acceptance.load_or_create_key(policy.signing_key_file))
        except acceptance.ReportError:
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
    # Self-contained (inline <style>, printed to PDF too): its own, still script-free, policy.
    return HTMLResponse(acceptance.render_html(signed, policy.speed.zone),
                        headers={"Content-Security-Policy": REPORT_CSP})


@router.post("/lines/{line_id}/enrolment-token", response_class=HTMLResponse)
def enrolment_token(request: Request, line_id: str, csrf: str = Form(""),
                    agent_id: str = Form(..., min_length=1, max_length=64)) -> Response:
    """The console's face of POST /api/v1/lines/{line_id}/enrolment-tokens, for technicians on-site."""
    caller = _form_caller(request, csrf, INSTALLERS)
    if isinstance(caller, Response):
        return caller
    who, session = caller
    with _conn(request) as conn:
        if not Scope.of(conn, who).can_see_line(conn, line_id):
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        site_id = conn.execute(select(t.lines.c.site_id).where(t.lines.c.line_id == line_id)).scalar()
    if site_id is None:
        return _render(request, "message.html", who, session, status_code=404, message="not_found")
    try:
        if not valid_id(agent_id):
            raise enrolment.EnrolmentError(f"agent id {agent_id!r} must match ^[A-Za-z0-9_-]{{1,64}}$")
        issued = enrolment.issue_token(request.app.state.engine, agent_id, line_id, site_id,
                                       ttl=token_ttl(request), created_by=who.user_id)
    except enrolment.EnrolmentError as exc:
        return _line_page(request, who, session, line_id, status_code=409, enrol_error=str(exc))
    # Shown once in this response, never put in a URL (it would land in logs and history).
    return _line_page(request, who, session, line_id, enrolled=issued,
                      enrol_command=f"linecheck-agent enroll --collector {str(request.base_url).rstrip('/')} "
                                    f"--token '{issued.token}' --config-out /etc/linecheck/agent.yaml")


@router.post("/lines/{line_id}/check")
def check_now(request: Request, line_id: str, csrf: str = Form(""), action: str = Form("check_now")) -> Response:
    caller = _form_caller(request, csrf)
    if isinstance(caller, Response):
        return caller
    who, session = caller
    if who.role not in ACTORS or action not in ("check_now", "retest"):
        return _render(request, "message.html", who, session, status_code=403, message="forbidden")
    with _conn(request) as conn:
        if not Scope.of(conn, who).can_see_line(conn, line_id):
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        agent_ids = list(conn.execute(select(t.agents.c.agent_id).where(t.agents.c.line_id == line_id)).scalars())
    sender = request.app.state.commands
    if sender is None:
        msg = "command_unavailable"
    elif not agent_ids:
        msg = "no_agent"
    else:
        try:
            for agent_id in agent_ids:
                sender(agent_id, action, None, f"{action} requested by {who.user_id} in the console",
                       requested_by=who.user_id)
            msg = "command_sent"
        except RuntimeError as exc:  # RateLimited carries retry_after_s (collector/commands/limits.py)
            msg = "command_rate_limited" if hasattr(exc, "retry_after_s") else "command_unavailable"
    return RedirectResponse(f"/console/lines/{line_id}?msg={msg}", status_code=303)


# --- agents, quarantine --------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
def agents(request: Request) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    status = request.query_params.get("status")
    status = status if status in ("online", "offline") else None
    q = (request.query_params.get("q") or "")[:64] or None
    params = _page(request)
    with _conn(request) as conn:
        rows, total = queries.list_agents(conn, Scope.of(conn, who), params, status=status, q=q)
    return _render(request, "agents.html", who, session, rows=rows, paging=_pager(params, total),
                   filters={"status": status, "q": q})


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine(request: Request) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    if who.role != Role.CARRIER_ADMIN:
        return _render(request, "message.html", who, session, status_code=403, message="forbidden")
    params = _page(request)
    item = None
    with _conn(request) as conn:
        scope = Scope.of(conn, who)
        rows, total = queries.list_quarantine(conn, scope, params)
        show = request.query_params.get("show")
        if show and show.isdigit():
            item = queries.quarantined(conn, scope, int(show))
    return _render(request, "quarantine.html", who, session, rows=rows, paging=_pager(params, total), item=item)


# --- API tokens ----------------------------------------------------------------------------------


@router.get("/account", response_class=HTMLResponse)
def account(request: Request) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    return _render(request, "account.html", who, session, tokens=request.app.state.accounts.tokens(who.user_id),
                   created=None)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(request: Request, csrf: str = Form(""), name: str = Form(..., min_length=1, max_length=200)
                 ) -> Response:
    caller = _form_caller(request, csrf)
    if isinstance(caller, Response):
        return caller
    who, session = caller
    accounts = request.app.state.accounts
    max_days = getattr(request.app.state, "api_token_max_days", DEFAULT_TOKEN_MAX_DAYS)
    _, token = accounts.issue_bounded_token(who, name, max_days, max_days)
    return _render(request, "account.html", who, session, tokens=accounts.tokens(who.user_id), created=token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: str, csrf: str = Form("")) -> Response:
    caller = _form_caller(request, csrf)
    if isinstance(caller, Response):
        return caller
    who, session = caller
    request.app.state.accounts.revoke(token_id, user_id=who.user_id)
    return RedirectResponse("/console/account", status_code=303)


# --- tickets -------------------------------------------------------------------------------------

BOARD_PER_COLUMN = 10


@router.get("/tickets", response_class=HTMLResponse)
def ticket_board(request: Request) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    fault = (request.query_params.get("fault_class") or "")[:40] or None
    line_q = (request.query_params.get("line_id") or "")[:64] or None
    columns = []
    with _conn(request) as conn:
        scope = Scope.of(conn, who)
        for state in tickets.STATES:
            params = PageParams(_page(request, f"p_{state}").page, BOARD_PER_COLUMN)
            rows, total = tq.list_tickets(conn, scope, params, [state], line_q, fault)
            columns.append({"state": state, "rows": rows, "paging": _pager(params, total), "param": f"p_{state}"})
        classes = list(conn.execute(select(t.tickets.c.fault_class).where(tq.visible(scope))
                                    .group_by(t.tickets.c.fault_class).order_by(t.tickets.c.fault_class)
                                    .limit(100)).scalars())
    return _render(request, "tickets.html", who, session, columns=columns, classes=classes,
                   filters={"fault_class": fault, "line_id": line_q})


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(request: Request, ticket_id: int) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    with _conn(request) as conn:
        scope = Scope.of(conn, who)
        row = tq.find(conn, scope, ticket_id)
        if row is None:
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        ticket = tq.detail(conn, row)
        candidates = tq.verification_candidates(conn, row) if row.state == "resolved" else []
        technicians = []
        if who.role == Role.CARRIER_ADMIN:
            u = t.users.c
            technicians = list(conn.execute(select(u.user_id).where(
                u.role == Role.TECHNICIAN.value, scope.tenant_clause(u.tenant_id), u.disabled_at.is_(None))
                .order_by(u.user_id).limit(200)).scalars())
    return _render(request, "ticket.html", who, session, ticket=ticket, candidates=candidates,
                   can_work=who.role in tq.WORKERS, technicians=technicians, error=request.query_params.get("error"))


def _ticket_action(request: Request, ticket_id: int, csrf: str, roles: tuple[Role, ...], act) -> Response:  # type: ignore[no-untyped-def]
    """Shared checks of the ticket forms: session, CSRF, role, scope; then `act(conn, who)` in one transaction."""
    caller = _form_caller(request, csrf, roles)
    if isinstance(caller, Response):
        return caller
    who, session = caller
    back = f"/console/tickets/{ticket_id}"
    with request.app.state.engine.begin() as conn:
        if tq.find(conn, Scope.of(conn, who), ticket_id) is None:
            return _render(request, "message.html", who, session, status_code=404, message="not_found")
        try:
            act(conn, who)
        except tickets.TicketError as exc:
            conn.rollback()
            return RedirectResponse(f"{back}?{urlencode({'error': str(exc)[:300]})}", status_code=303)
    return RedirectResponse(back, status_code=303)


@router.post("/tickets/{ticket_id}/transition")
def ticket_transition(request: Request, ticket_id: int, csrf: str = Form(""), to_state: str = Form(...),
                      note: str = Form("", max_length=2000), result: str = Form("", max_length=120)) -> Response:
    def act(conn: Connection, who: Principal) -> None:
        text = note.strip() or None
        if to_state == "verified":
            agent_id, _, result_id = result.partition("/")
            if not result_id:
                raise tickets.TicketError("choose the post-repair check that shows the line healthy")
            tickets.verify(conn, ticket_id, agent_id, result_id, who.user_id, note=text)
        else:
            tickets.transition(conn, ticket_id, to_state, who.user_id, text)

    return _ticket_action(request, ticket_id, csrf, tq.WORKERS, act)


@router.post("/tickets/{ticket_id}/note")
def ticket_note(request: Request, ticket_id: int, csrf: str = Form(""),
                text: str = Form(..., min_length=1, max_length=2000)) -> Response:
    return _ticket_action(request, ticket_id, csrf, tq.WORKERS,
                          lambda conn, who: tickets.note(conn, ticket_id, who.user_id, text.strip()))


@router.post("/tickets/{ticket_id}/assign")
def ticket_assign(request: Request, ticket_id: int, csrf: str = Form(""),
                  assignee: str = Form("", max_length=64)) -> Response:
    def act(conn: Connection, who: Principal) -> None:
        scope = Scope.of(conn, who)
        if assignee:
            tech = conn.execute(select(t.users.c.role, t.users.c.tenant_id).where(
                t.users.c.user_id == assignee)).first()
            if tech is None or tech.role != Role.TECHNICIAN.value or (
                    scope.tenants is not None and tech.tenant_id not in scope.tenants):
                raise tickets.TicketError(f"{assignee} is not a technician in your tenants")
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket_id)
                     .values(assignee=assignee or None))
        tickets.note(conn, ticket_id, who.user_id, f"assigned to {assignee}" if assignee else "unassigned")

    return _ticket_action(request, ticket_id, csrf, (Role.CARRIER_ADMIN,), act)


# --- promises ------------------------------------------------------------------------------------


@router.get("/promises", response_class=HTMLResponse)
def promises_page(request: Request) -> Response:
    found = _session(request)
    if not found:
        return _to_login(request)
    who, session = found
    by = request.query_params.get("by")
    by = by if by in ("district", "segment", "tenant") else "district"
    outcome = request.query_params.get("outcome")
    outcome = outcome if outcome in pq.OUTCOMES else "not_delivered"
    params = _page(request)
    with _conn(request) as conn:
        scope = Scope.of(conn, who)
        groups = pq.compliance(conn, scope, by)  # type: ignore[arg-type]
        rows, total = pq.list_verdicts(conn, scope, params, outcome=outcome)
    return _render(request, "promises.html", who, session, groups=groups, by=by, rows=rows, outcome=outcome,
                   outcomes=pq.OUTCOMES, paging=_pager(params, total))
