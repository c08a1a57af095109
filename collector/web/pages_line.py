"""One line's page (/console/lines/{line_id}): detail and charts, and what may be done from it — issue a
gateway's enrolment token, ask for a check now, print a promise's signed acceptance report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from collector.api import promise_queries as pq
from collector.api import queries
from collector.api.accounts import Role
from collector.api.headers import REPORT_CSP
from collector.api.pagination import PageParams
from collector.api.routes_enrolment import token_ttl
from collector.api.scope import Scope
from collector.commands.desk import NoAgent, RateLimited, send_to_line
from collector.fleet import enrolment
from collector.rules.outages import stored_outages
from collector.store import schema as t
from collector.web import charts, i18n, qr, timeline
from collector.web.auth import Anyone, SignedIn, console_router, signed_in
from collector.web.render import connect, language, message, page_params, pager, render, timezone
from linecheck.wire import valid_id

router = console_router()
ACTORS = (Role.CARRIER_ADMIN, Role.TECHNICIAN, Role.ENTERPRISE)
INSTALLERS = (Role.CARRIER_ADMIN, Role.TECHNICIAN)  # who may issue a gateway's enrolment token
CHART_DAYS = 30
OUTAGE_DAYS = 7  # the outage timeline: the days the intermittent_outage rule looks at by default
Installer = Annotated[SignedIn, Depends(signed_in(*INSTALLERS))]
Actor = Annotated[SignedIn, Depends(signed_in(*ACTORS))]


@router.get("/lines/{line_id}", response_class=HTMLResponse)
def line(request: Request, me: Anyone, line_id: str) -> Response:
    return _line_page(request, me, line_id)


def _line_page(request: Request, me: SignedIn, line_id: str, status_code: int = 200, **extra: Any) -> Response:
    history_params = page_params(request, "hpage")
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        detail = queries.line_detail(conn, scope, line_id)
        if detail is None:
            return message(request, me, 404, "not_found")
        history, history_total = queries.line_results(conn, line_id, history_params)
        findings, _ = queries.line_findings(conn, line_id, PageParams(1, 10))
        since = datetime.now(UTC) - timedelta(days=CHART_DAYS)
        series = queries.line_series(conn, line_id, ["down_mbps", "up_mbps", "rtt_avg_ms", "loss_pct"], since)
        line_promises = pq.line_promises(conn, line_id)
        outages = stored_outages(conn, line_id, datetime.now(UTC) - timedelta(days=OUTAGE_DAYS + 1))
    tr = i18n.translator(language(request, me.who))
    tz = timezone(request)
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
    svg.append(timeline.render(outages, datetime.now(tz).date(), OUTAGE_DAYS, tz, tr("outage_timeline"),
                               tr("no_outages"), {w: tr(f"outage_at_{w}") for w in ("link", "gateway", "beyond")}))
    return render(request, "line.html", me, line=detail, history=history, promises=line_promises,
                  history_pager=pager(history_params, history_total), findings=findings, charts=svg,
                  can_act=me.who.role in ACTORS, can_enrol=me.who.role in INSTALLERS and bool(detail["tenant_id"]),
                  msg=request.query_params.get("msg"), status_code=status_code, **extra)


@router.get("/lines/{line_id}/promises/{promise_id}/acceptance", response_class=HTMLResponse)
def acceptance_report(request: Request, me: Installer, line_id: str, promise_id: str) -> Response:
    """The signed acceptance report of a promise's stored verdict, signed for the technician viewing it
    (print it or save it as PDF from the browser; `linecheck-collector promises verify-report` checks it)."""
    from collector.promises import acceptance, ledger

    policy = getattr(request.app.state, "promises", None)
    with connect(request) as conn:
        owner = conn.execute(select(t.promises.c.line_id).where(t.promises.c.promise_id == promise_id)).scalar()
        if owner != line_id or not Scope.of(conn, me.who).can_see_line(conn, line_id):
            return message(request, me, 404, "not_found")
        verdict = ledger.stored_verdict(conn, promise_id)
        if verdict is None or policy is None:  # not judged yet, or an app without the collector's config
            return message(request, me, 404, "not_found")
        try:
            signed = acceptance.sign(acceptance.build_payload(conn, verdict, technician=me.who.user_id),
                                     acceptance.load_or_create_key(policy.signing_key_file))
        except acceptance.ReportError:
            return message(request, me, 404, "not_found")
    # Self-contained (inline <style>, printed to PDF too): its own, still script-free, policy.
    return HTMLResponse(acceptance.render_html(signed, policy.speed.zone),
                        headers={"Content-Security-Policy": REPORT_CSP})


@router.post("/lines/{line_id}/enrolment-token", response_class=HTMLResponse)
def enrolment_token(request: Request, me: Installer, line_id: str,
                    agent_id: str = Form(..., min_length=1, max_length=64)) -> Response:
    """The console's face of POST /api/v1/lines/{line_id}/enrolment-tokens, for technicians on-site."""
    with connect(request) as conn:
        if not Scope.of(conn, me.who).can_see_line(conn, line_id):
            return message(request, me, 404, "not_found")
        site_id = conn.execute(select(t.lines.c.site_id).where(t.lines.c.line_id == line_id)).scalar()
    if site_id is None:
        return message(request, me, 404, "not_found")
    try:
        if not valid_id(agent_id):
            raise enrolment.EnrolmentError(f"agent id {agent_id!r} must match ^[A-Za-z0-9_-]{{1,64}}$",
                                           "enrol_bad_id", agent_id=agent_id)
        issued = enrolment.issue_token(request.app.state.engine, agent_id, line_id, site_id,
                                       ttl=token_ttl(request), created_by=me.who.user_id)
    except enrolment.EnrolmentError as exc:  # in the reader's words when it has them, else as said (English)
        said = {"key": exc.key, "args": exc.values} if exc.key else {"key": "enrol_refused",
                                                                      "args": {"diagnostic": str(exc)}}
        return _line_page(request, me, line_id, status_code=409, enrol_error=said)
    # Shown once in this response, never put in a URL (it would land in logs and history); the QR code
    # carries the same command to the technician's phone, to paste into the gateway's shell.
    command = (f"linecheck-agent enroll --collector {str(request.base_url).rstrip('/')} "
               f"--token '{issued.token}' --config-out /etc/linecheck/agent.yaml")
    return _line_page(request, me, line_id, enrolled=issued, enrol_command=command, enrol_qr=qr.svg(command))


@router.post("/lines/{line_id}/check")
def check_now(request: Request, me: Actor, line_id: str, action: str = Form("check_now")) -> Response:
    if action not in ("check_now", "retest"):
        return message(request, me, 403, "forbidden")
    with connect(request) as conn:
        if not Scope.of(conn, me.who).can_see_line(conn, line_id):
            return message(request, me, 404, "not_found")
        sender = request.app.state.commands
        # The API's POST /api/v1/lines/{line_id}/commands and this button share send_to_line.
        try:
            if sender is None:
                msg = "command_unavailable"
            else:
                send_to_line(sender, conn, line_id, action, None,
                             f"{action} requested by {me.who.user_id} in the console", me.who.user_id)
                msg = "command_sent"
        except NoAgent:
            msg = "no_agent"
        except RateLimited:
            msg = "command_rate_limited"
        except RuntimeError:  # the broker did not take it
            msg = "command_unavailable"
    return RedirectResponse(f"/console/lines/{line_id}?msg={msg}", status_code=303)
