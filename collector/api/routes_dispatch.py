"""Dispatch: the field teams' queue of incidents and line tickets by impact, work orders, and the
crew's steps (assign, arrive, close) recorded on the ticket (collector/incidents/dispatch.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from collector.api import ticket_queries as tq
from collector.api.accounts import Principal, Role
from collector.api.deps import ALL_ROLES, allow
from collector.api.models import Problem
from collector.api.pagination import Page, PageParams, page_of
from collector.api.routes_fleet import Paging
from collector.api.scope import Scope
from collector.incidents import dispatch
from collector.store import schema as t

router = APIRouter(prefix="/api/v1/dispatch", tags=["dispatch"])
Anyone = Annotated[Principal, Depends(allow(*ALL_ROLES))]
Worker = Annotated[Principal, Depends(allow(*tq.WORKERS))]
Admin = Annotated[Principal, Depends(allow(Role.CARRIER_ADMIN))]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NOT_FOUND = {404: {"description": "no such job in the caller's scope"}}
CONFLICT = {409: {"description": "the job's state does not allow this step"}}


class JobRow(BaseModel):
    ticket_id: int
    kind: str = Field(description="incident (many lines behind one access node) or line")
    state: str
    fault_class: str
    summary: str
    district: str | None
    node: str | None
    lines_affected: int
    business_lines: int
    promises_at_stake: int
    age_h: float
    score: float = Field(description="impact: 10 per line, 5 per business line, 5 per promise, 1 per hour (<= 72)")
    why: list[str]
    assignee: str | None
    opened_at: datetime
    incident_id: int | None
    line_id: str | None


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class Crew(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="a technician's user id")


def _conn(request: Request):  # type: ignore[no-untyped-def]
    with request.app.state.engine.begin() as conn:
        yield conn


Tx = Annotated[Any, Depends(_conn)]


def _order(conn: Any, who: Principal, ticket_id: int) -> dict[str, Any]:
    try:
        return dispatch.work_order(conn, Scope.of(conn, who), ticket_id)
    except dispatch.DispatchError as exc:
        raise HTTPException(exc.status, str(exc)) from None


@router.get("", response_model=Page[JobRow])
def queue(who: Anyone, conn: Tx, paging: Paging,
          district: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """Open incidents and line tickets of the caller's scope, highest impact first."""
    jobs = [j.as_dict() for j in dispatch.queue(conn, Scope.of(conn, who), district)]
    return _page(jobs, paging)


def _page(rows: list[dict[str, Any]], p: PageParams) -> dict[str, Any]:
    return page_of(rows[p.offset:p.offset + p.per_page], len(rows), p)


@router.get("/{ticket_id}", responses=NOT_FOUND)
def work_order(who: Anyone, conn: Tx, ticket_id: JobId) -> dict:
    """A work order: what, where, which lines (address, segment, promises), the evidence, the trail."""
    return _order(conn, who, ticket_id)


@router.post("/{ticket_id}/assign", responses={**NOT_FOUND, **CONFLICT,
                                               422: {"model": Problem, "description": "not a technician of yours"}})
def assign(who: Admin, conn: Tx, ticket_id: JobId, body: Crew) -> dict:
    """Send a technician of the caller's tenants; the job becomes 'dispatched'."""
    scope = Scope.of(conn, who)
    tech = conn.execute(select(t.users.c.role, t.users.c.tenant_id).where(t.users.c.user_id == body.assignee)).first()
    if tech is None or tech.role != Role.TECHNICIAN.value or (scope.tenants is not None
                                                              and tech.tenant_id not in scope.tenants):
        _order(conn, who, ticket_id)  # a job outside the scope is 404 first
        raise HTTPException(422, f"{body.assignee!r} is not a technician in your tenants")
    return _step(conn, who, ticket_id, lambda s: dispatch.assign(conn, s, ticket_id, body.assignee, who.user_id))


@router.post("/{ticket_id}/arrive", responses={**NOT_FOUND, **CONFLICT})
def arrive(who: Worker, conn: Tx, ticket_id: JobId, body: Step) -> dict:
    """The crew is on site."""
    return _step(conn, who, ticket_id, lambda s: dispatch.arrive(conn, s, ticket_id, who.user_id, body.note))


@router.post("/{ticket_id}/close", responses={**NOT_FOUND, **CONFLICT})
def close(who: Worker, conn: Tx, ticket_id: JobId, body: Step) -> dict:
    """The work is done: the job resolves (an incident's members still failing get their own tickets)."""
    return _step(conn, who, ticket_id, lambda s: dispatch.close(conn, s, ticket_id, who.user_id, body.note))


def _step(conn: Any, who: Principal, ticket_id: int, do: Any) -> dict[str, Any]:
    try:
        do(Scope.of(conn, who))
    except dispatch.DispatchError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return _order(conn, who, ticket_id)
