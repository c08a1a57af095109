"""Operations: quarantine, remote checks, API tokens, users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from sqlalchemy import select

from collector.api import queries
from collector.api.accounts import DEFAULT_TOKEN_MAX_DAYS, AccountError, Principal, Role
from collector.api.deps import ALL_ROLES, accounts_of, allow
from collector.api.models import (
    CommandRequest,
    CommandSent,
    Problem,
    QuarantineItem,
    QuarantineRow,
    TokenCreated,
    TokenRequest,
    TokenRow,
    UserRequest,
    UserRow,
)
from collector.api.pagination import Page, page_of
from collector.api.routes_fleet import Conn, Paging
from collector.api.scope import Scope
from collector.commands.desk import CommandInvalid, NoAgent, RateLimited, send_to_line
from collector.store import schema as t

router = APIRouter(prefix="/api/v1")
Anyone = Annotated[Principal, Depends(allow(*ALL_ROLES))]
Admin = Annotated[Principal, Depends(allow(Role.CARRIER_ADMIN))]
# Who may ask a line to check itself: not the read-only viewer.
Actor = Annotated[Principal, Depends(allow(Role.CARRIER_ADMIN, Role.TECHNICIAN, Role.ENTERPRISE))]


@router.get("/quarantine", response_model=Page[QuarantineRow], tags=["operations"])
def quarantine(who: Admin, conn: Conn, paging: Paging,
               agent_id: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    """Messages refused at ingest, newest first, with the reason."""
    rows, total = queries.list_quarantine(conn, Scope.of(conn, who), paging, agent_id)
    return page_of(rows, total, paging)


@router.get("/quarantine/{item_id}", response_model=QuarantineItem, tags=["operations"],
            responses={404: {"description": "no such message in the caller's scope"}})
def quarantine_item(who: Admin, conn: Conn, item_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict:
    """One refused message with its payload as received."""
    item = queries.quarantined(conn, Scope.of(conn, who), item_id)
    if item is None:
        raise HTTPException(404, "no such quarantined message")
    return item


@router.post("/lines/{line_id}/commands", response_model=CommandSent, status_code=202, tags=["operations"],
             responses={404: {"description": "no such line in the caller's scope"},
                        409: {"description": "the line has no agent"},
                        422: {"description": "unknown check kind or too many checks"},
                        429: {"description": "rate limit (per line, per user): Retry-After says when to retry"},
                        503: {"description": "remote commands are not available (no broker connection)"}})
def send_command(who: Actor, conn: Conn, request: Request, line_id: str, body: CommandRequest) -> dict:
    """Ask every agent on the line to check now (or re-test); the result arrives like any other."""
    Scope.of(conn, who).require_line(conn, line_id)
    sender = request.app.state.commands
    if sender is None:
        raise HTTPException(503, "remote commands are not available: this API runs without a broker connection")
    reason = body.reason or f"{body.action} requested by {who.user_id}"
    try:
        sent = send_to_line(sender, conn, line_id, body.action, body.checks, reason, who.user_id)
    except NoAgent as exc:
        raise HTTPException(409, str(exc)) from None
    except RateLimited as exc:  # per line / per user (collector/commands/limits.py)
        raise HTTPException(429, f"command not sent: {exc}", headers={"Retry-After": str(exc.retry_after_s)}) from None
    except CommandInvalid as exc:  # unknown check kind, too many checks
        raise HTTPException(422, f"command not sent: {exc}") from None
    except RuntimeError as exc:  # collector.commands.publish.CommandError: the broker did not take it
        raise HTTPException(503, f"command not sent: {exc}") from None
    return {"line_id": line_id, "action": body.action, "commands": sent}


@router.get("/tokens", response_model=list[TokenRow], tags=["access"])
def tokens(who: Anyone, request: Request) -> list[dict]:
    """The caller's own API tokens (never the secrets)."""
    return accounts_of(request).tokens(who.user_id)


@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["access"])
def create_token(who: Anyone, request: Request, body: TokenRequest) -> dict:
    """A new API token for the caller, with the caller's role and tenant. The token is shown once.

    Every token expires: `expires_in_days` is capped by the collector's `http.api_token_max_days`, and a
    token minted with an API token expires no later than that token (`expires_at` says when)."""
    max_days = getattr(request.app.state, "api_token_max_days", DEFAULT_TOKEN_MAX_DAYS)
    token_id, token = accounts_of(request).issue_bounded_token(who, body.name, body.expires_in_days, max_days)
    row = next(r for r in accounts_of(request).tokens(who.user_id) if r["token_id"] == token_id)
    return {"token_id": token_id, "token": token, "expires_at": row["expires_at"]}


@router.delete("/tokens/{token_id}", status_code=204, tags=["access"],
               responses={404: {"description": "no such token of the caller"}})
def revoke_token(who: Anyone, request: Request, token_id: str) -> None:
    """Revoke one of the caller's tokens."""
    if not accounts_of(request).revoke(token_id, user_id=who.user_id):
        raise HTTPException(404, "no such active token")


@router.get("/users", response_model=Page[UserRow], tags=["access"])
def users(who: Admin, conn: Conn, paging: Paging) -> dict:
    """Users of the caller's tenants."""
    from collector.api.pagination import paginate

    u = t.users.c
    stmt = (select(u.user_id, u.display_name, u.role, u.tenant_id, u.created_at, u.disabled_at)
            .where(Scope.of(conn, who).tenant_clause(u.tenant_id)).order_by(u.user_id))
    if who.tenant_id is not None:
        stmt = stmt.where(u.tenant_id.is_not(None))
    rows, total = paginate(conn, stmt, paging)
    return page_of(rows, total, paging)


@router.post("/users", response_model=UserRow, status_code=201, tags=["access"],
             responses={403: {"description": "tenant outside the caller's scope"},
                        409: {"description": "user exists"},
                        422: {"model": Problem, "description": "invalid request, unknown tenant or line"}})
def create_user(who: Admin, conn: Conn, request: Request, body: UserRequest) -> dict:
    """Create a user in one of the caller's tenants (the operator may create operators)."""
    scope = Scope.of(conn, who)
    if body.tenant_id is None and not who.is_operator:
        raise HTTPException(403, "only the operator may create users without a tenant")
    if body.tenant_id is not None and scope.tenants is not None and body.tenant_id not in scope.tenants:
        raise HTTPException(403, f"tenant {body.tenant_id!r} is outside your scope")
    if body.tenant_id is not None and not conn.execute(
            select(t.tenants.c.tenant_id).where(t.tenants.c.tenant_id == body.tenant_id)).first():
        raise HTTPException(422, f"no tenant {body.tenant_id!r}")
    for line_id in body.lines:
        if not scope.can_see_line(conn, line_id):
            raise HTTPException(422, f"no line {line_id!r} in your scope")
    accounts = accounts_of(request)
    try:
        accounts.create_user(body.user_id, body.role, body.tenant_id, body.password, body.display_name)
    except AccountError as exc:
        raise HTTPException(409 if "exists" in str(exc) else 422, str(exc)) from None
    for line_id in body.lines:
        accounts.assign_line(body.user_id, line_id)
    user = accounts.user(body.user_id)
    assert user is not None
    return user
