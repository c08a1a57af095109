"""Tickets (/console/tickets): the board by state, one ticket, and its forms (move, note, assign)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, select

from collector.api import ticket_queries as tq
from collector.api.accounts import Principal, Role
from collector.api.pagination import PageParams
from collector.api.scope import Scope
from collector.store import schema as t
from collector.tickets import lifecycle as tickets
from collector.web.auth import Admin, Anyone, SignedIn, console_router, signed_in
from collector.web.render import connect, message, page_params, pager, render

router = console_router()
BOARD_PER_COLUMN = 10
Worker = Annotated[SignedIn, Depends(signed_in(*tq.WORKERS))]


@router.get("/tickets", response_class=HTMLResponse)
def ticket_board(request: Request, me: Anyone) -> Response:
    fault = (request.query_params.get("fault_class") or "")[:40] or None
    line_q = (request.query_params.get("line_id") or "")[:64] or None
    columns = []
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        for state in tickets.STATES:
            params = PageParams(page_params(request, f"p_{state}").page, BOARD_PER_COLUMN)
            rows, total = tq.list_tickets(conn, scope, params, [state], line_q, fault)
            columns.append({"state": state, "rows": rows, "paging": pager(params, total), "param": f"p_{state}"})
        classes = list(conn.execute(select(t.tickets.c.fault_class).where(tq.visible(scope))
                                    .group_by(t.tickets.c.fault_class).order_by(t.tickets.c.fault_class)
                                    .limit(100)).scalars())
    return render(request, "tickets.html", me, columns=columns, classes=classes,
                  filters={"fault_class": fault, "line_id": line_q})


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(request: Request, me: Anyone, ticket_id: int) -> Response:
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        row = tq.find(conn, scope, ticket_id)
        if row is None:
            return message(request, me, 404, "not_found")
        ticket = tq.detail(conn, row)
        candidates = tq.verification_candidates(conn, row) if row.state == "resolved" else []
        technicians = []
        if me.who.role == Role.CARRIER_ADMIN:
            u = t.users.c
            technicians = list(conn.execute(select(u.user_id).where(
                u.role == Role.TECHNICIAN.value, scope.tenant_clause(u.tenant_id), u.disabled_at.is_(None))
                .order_by(u.user_id).limit(200)).scalars())
    return render(request, "ticket.html", me, ticket=ticket, candidates=candidates,
                  can_work=me.who.role in tq.WORKERS, technicians=technicians, error=request.query_params.get("error"))


def _ticket_action(request: Request, me: SignedIn, ticket_id: int,
                   act: Callable[[Connection, Principal], None]) -> Response:
    """The scope check every ticket form shares, then `act(conn, who)` in one transaction."""
    back = f"/console/tickets/{ticket_id}"
    with request.app.state.engine.begin() as conn:
        if tq.find(conn, Scope.of(conn, me.who), ticket_id) is None:
            return message(request, me, 404, "not_found")
        try:
            act(conn, me.who)
        except tickets.TicketError as exc:
            conn.rollback()
            # The refusal as its phrase: the page shows it in the reader's language (and only catalogued words).
            return RedirectResponse(f"{back}?{urlencode({'error': json.dumps(exc.phrase.as_json())[:1500]})}",
                                    status_code=303)
    return RedirectResponse(back, status_code=303)


@router.post("/tickets/{ticket_id}/transition")
def ticket_transition(request: Request, me: Worker, ticket_id: int, to_state: str = Form(...),
                      note: str = Form("", max_length=2000), result: str = Form("", max_length=120)) -> Response:
    def act(conn: Connection, who: Principal) -> None:
        text = note.strip() or None
        if to_state == "verified":
            agent_id, _, result_id = result.partition("/")
            if not result_id:
                raise tickets.TicketError("error_choose_check")
            tickets.verify(conn, ticket_id, agent_id, result_id, who.user_id, note=text)
        else:
            tickets.transition(conn, ticket_id, to_state, who.user_id, text)

    return _ticket_action(request, me, ticket_id, act)


@router.post("/tickets/{ticket_id}/note")
def ticket_note(request: Request, me: Worker, ticket_id: int,
                text: str = Form(..., min_length=1, max_length=2000)) -> Response:
    return _ticket_action(request, me, ticket_id,
                          lambda conn, who: tickets.note(conn, ticket_id, who.user_id, text.strip()))


@router.post("/tickets/{ticket_id}/assign")
def ticket_assign(request: Request, me: Admin, ticket_id: int, assignee: str = Form("", max_length=64)) -> Response:
    def act(conn: Connection, who: Principal) -> None:
        scope = Scope.of(conn, who)
        if assignee:
            tech = conn.execute(select(t.users.c.role, t.users.c.tenant_id).where(
                t.users.c.user_id == assignee)).first()
            if tech is None or tech.role != Role.TECHNICIAN.value or (
                    scope.tenants is not None and tech.tenant_id not in scope.tenants):
                raise tickets.TicketError("error_not_technician", user=assignee)
        conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket_id)
                     .values(assignee=assignee or None))
        if assignee:
            tickets.system_note(conn, ticket_id, who.user_id, "assigned", user=assignee)
        else:
            tickets.system_note(conn, ticket_id, who.user_id, "unassigned")

    return _ticket_action(request, me, ticket_id, act)
