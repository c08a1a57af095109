"""Enrolment tokens for technicians on-site: issued for a registered line, spent by `linecheck-agent enroll`.

The redemption endpoint (POST /api/v1/enrol, collector/fleet/enrolment_api.py) needs the fleet CA and is
public; issuing a token is an authenticated act on a line, scoped like every other line route.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from collector.api.accounts import Principal, Role
from collector.api.deps import allow
from collector.api.routes_fleet import ID, Conn
from collector.api.scope import Scope
from collector.fleet import enrolment
from collector.store import schema as t

router = APIRouter(prefix="/api/v1")
# Those who put gateways on lines: the carrier's admins and its technicians (on their assigned lines).
Installer = Annotated[Principal, Depends(allow(Role.CARRIER_ADMIN, Role.TECHNICIAN))]


class EnrolmentTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(pattern=ID, description="The id the gateway will have (its certificate's name)")
    ttl_h: float | None = Field(default=None, gt=0, le=24 * 30,
                                description="Hours it stays valid (capped by enrolment.token_ttl_h)")


class EnrolmentTokenIssued(BaseModel):
    token: str = Field(description="Shown once; only its hash is stored. Single use.")
    agent_id: str
    line_id: str
    site_id: str
    expires_at: datetime
    command: str = Field(description="What the technician runs on the gateway")


def token_ttl(request: Request) -> timedelta:
    return getattr(request.app.state, "enrolment_token_ttl", enrolment.DEFAULT_TOKEN_TTL)  # type: ignore[no-any-return]


@router.post("/lines/{line_id}/enrolment-tokens", response_model=EnrolmentTokenIssued, status_code=201,
             tags=["enrolment"],
             responses={404: {"description": "no such registered line in the caller's scope"},
                        409: {"description": "the agent id belongs to another line"}})
def issue_enrolment_token(who: Installer, conn: Conn, request: Request, line_id: str,
                          body: EnrolmentTokenRequest) -> EnrolmentTokenIssued:
    """A one-time token that lets a gateway on this line obtain its fleet certificate."""
    Scope.of(conn, who).require_line(conn, line_id)
    site_id = conn.execute(select(t.lines.c.site_id).where(t.lines.c.line_id == line_id)).scalar()
    conn.rollback()  # end the read transaction before issuing in our own (SQLite allows one writer)
    if site_id is None:
        raise HTTPException(404, f"line {line_id!r} is not registered; import it into the registry first")
    limit = token_ttl(request)
    ttl = min(limit, timedelta(hours=body.ttl_h)) if body.ttl_h else limit
    try:
        issued = enrolment.issue_token(request.app.state.engine, body.agent_id, line_id, site_id, ttl=ttl,
                                       created_by=who.user_id)
    except enrolment.EnrolmentError as exc:
        raise HTTPException(409, str(exc)) from None
    base = str(request.base_url).rstrip("/")
    command = (f"linecheck-agent enroll --collector {base} --token '{issued.token}' "
               "--config-out /etc/linecheck/agent.yaml")
    return EnrolmentTokenIssued(token=issued.token, agent_id=issued.agent_id, line_id=line_id, site_id=site_id,
                                expires_at=issued.expires_at, command=command)
