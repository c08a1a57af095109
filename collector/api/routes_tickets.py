"""Tickets: list, read, move along the lifecycle, write notes, attach evidence, assign."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from collector.api import ticket_queries as tq
from collector.api.accounts import Principal, Role
from collector.api.deps import ALL_ROLES, allow
from collector.api.models import Problem
from collector.api.pagination import Page, page_of
from collector.api.routes_fleet import Paging
from collector.api.scope import Scope
from collector.store import schema as t
from collector.tickets import lifecycle as tickets

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
Anyone = Annotated[Principal, Depends(allow(*ALL_ROLES))]
Worker = Annotated[Principal, Depends(allow(*tq.WORKERS))]
Admin = Annotated[Principal, Depends(allow(Role.CARRIER_ADMIN))]
State = Literal["open", "acknowledged", "dispatched", "resolved", "verified"]
TicketId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NOT_FOUND = {404: {"description": "no such ticket in the caller's scope"}}


class TicketRow(BaseModel):
    ticket_id: int
    line_id: str
    fault_class: str
    state: str
    severity: str
    location: str | None
    summary: str
    tenant_id: str | None
    site_id: str | None
    agent_id: str | None
    opened_by: str
    assignee: str | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    dispatched_at: datetime | None
    resolved_at: datetime | None
    verified_at: datetime | None
    next_states: list[str] = Field(description="States this ticket may move to now")


class TicketEvent(BaseModel):
    at: datetime
    kind: str
    from_state: str | None
    to_state: str | None
    actor: str
    note: str | None
    result_id: str | None


class TicketEvidence(BaseModel):
    agent_id: str
    result_id: str
    role: str
    added_at: datetime
    verdict: str | None
    started_at: datetime | None
    trigger: str | None


class TicketDetail(TicketRow):
    detail: dict | None
    events: list[TicketEvent]
    evidence: list[TicketEvidence]


class Transition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to_state: State
    note: str | None = Field(default=None, max_length=2000)
    agent_id: str | None = Field(default=None, max_length=64, description="verified: the post-repair check")
    result_id: str | None = Field(default=None, max_length=36, description="verified: the post-repair check")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)


class EvidenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(max_length=64)
    result_id: str = Field(max_length=36)


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str | None = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
                                 description="a technician's user id; null to unassign")


def _conn(request: Request):  # type: ignore[no-untyped-def]
    with request.app.state.engine.begin() as conn:  # writes and their events commit together
        yield conn


Tx = Annotated[object, Depends(_conn)]


def _ticket(conn, who: Principal, ticket_id: TicketId):  # type: ignore[no-untyped-def]
    row = tq.find(conn, Scope.of(conn, who), ticket_id)
    if row is None:
        raise HTTPException(404, f"no ticket #{ticket_id}")
    return row


@router.get("", response_model=Page[TicketRow])
def list_tickets(who: Anyone, conn: Tx, paging: Paging,
                 state: Annotated[list[State], Query(description="repeat for several")] = [],  # noqa: B006
                 line_id: Annotated[str | None, Query(max_length=64)] = None,
                 fault_class: Annotated[str | None, Query(max_length=40)] = None,
                 assignee: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """Tickets of the caller's lines, newest first."""
    rows, total = tq.list_tickets(conn, Scope.of(conn, who), paging, list(state) or None, line_id, fault_class,
                                  assignee)
    return page_of(rows, total, paging)


@router.get("/{ticket_id}", response_model=TicketDetail, responses=NOT_FOUND)
def get_ticket(who: Anyone, conn: Tx, ticket_id: TicketId) -> dict:
    """A ticket with its event log and evidence (the results that opened, re-tested, resolved, verified it)."""
    return tq.detail(conn, _ticket(conn, who, ticket_id))


@router.post("/{ticket_id}/transition", response_model=TicketDetail,
             responses={**NOT_FOUND, 409: {"description": "the ticket's state does not allow this move"}})
def transition(who: Worker, conn: Tx, ticket_id: TicketId, body: Transition) -> dict:
    """Move a ticket: open → acknowledged → dispatched → resolved → verified (verified needs a healthy
    post-repair result of the line, taken after the ticket opened)."""
    _ticket(conn, who, ticket_id)
    try:
        if body.to_state == "verified":
            if not (body.agent_id and body.result_id):
                raise tickets.TicketError("error_verify_needs_check")
            tickets.verify(conn, ticket_id, body.agent_id, body.result_id, who.user_id, note=body.note)  # type: ignore[arg-type]
        else:
            tickets.transition(conn, ticket_id, body.to_state, who.user_id, body.note)  # type: ignore[arg-type]
    except tickets.TicketError as exc:
        raise HTTPException(409, str(exc)) from None
    return tq.detail(conn, _ticket(conn, who, ticket_id))


@router.post("/{ticket_id}/notes", status_code=201, response_model=TicketDetail, responses=NOT_FOUND)
def add_note(who: Worker, conn: Tx, ticket_id: TicketId, body: Note) -> dict:
    """Write a note into the ticket's event log."""
    _ticket(conn, who, ticket_id)
    tickets.note(conn, ticket_id, who.user_id, body.text)  # type: ignore[arg-type]
    return tq.detail(conn, _ticket(conn, who, ticket_id))


@router.post("/{ticket_id}/evidence", status_code=201, response_model=TicketDetail,
             responses={404: {"description": "no such ticket in the caller's scope, or no such result of its line"}})
def add_evidence(who: Worker, conn: Tx, ticket_id: TicketId, body: EvidenceIn) -> dict:
    """Attach a stored result of the ticket's line (e.g. a technician's on-site check)."""
    row = _ticket(conn, who, ticket_id)
    found = conn.execute(select(t.results.c.line_id).where(  # type: ignore[attr-defined]
        t.results.c.agent_id == body.agent_id, t.results.c.result_id == body.result_id)).first()
    if found is None or found.line_id != row.line_id:
        raise HTTPException(404, f"no stored result {body.result_id} of line {row.line_id}")
    tickets.add_evidence(conn, ticket_id, [(body.agent_id, body.result_id)], "attached")  # type: ignore[arg-type]
    tickets.system_note(conn, ticket_id, who.user_id, "evidence_attached", result=body.result_id)  # type: ignore[arg-type]
    return tq.detail(conn, _ticket(conn, who, ticket_id))


@router.put("/{ticket_id}/assignee", response_model=TicketDetail,
            responses={**NOT_FOUND, 422: {"model": Problem, "description": "not a technician in the caller's tenants"}})
def assign(who: Admin, conn: Tx, ticket_id: TicketId, body: Assignment) -> dict:
    """Give the ticket to a technician of the caller's tenants (or take it back)."""
    _ticket(conn, who, ticket_id)
    if body.assignee is not None:
        tech = conn.execute(select(t.users.c.role, t.users.c.tenant_id).where(  # type: ignore[attr-defined]
            t.users.c.user_id == body.assignee)).first()
        scope = Scope.of(conn, who)  # type: ignore[arg-type]
        in_scope = tech is not None and (scope.tenants is None or tech.tenant_id in scope.tenants)
        if not in_scope or tech.role != Role.TECHNICIAN.value:
            raise HTTPException(422, f"{body.assignee!r} is not a technician in your tenants")
    conn.execute(t.tickets.update().where(t.tickets.c.ticket_id == ticket_id)  # type: ignore[attr-defined]
                 .values(assignee=body.assignee))
    if body.assignee:
        tickets.system_note(conn, ticket_id, who.user_id, "assigned", user=body.assignee)  # type: ignore[arg-type]
    else:
        tickets.system_note(conn, ticket_id, who.user_id, "unassigned")  # type: ignore[arg-type]
    return tq.detail(conn, _ticket(conn, who, ticket_id))
