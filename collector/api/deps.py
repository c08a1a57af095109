"""Who may call what: the principal from a bearer token or the console's session cookie, and role checks.

Every API route takes its principal through `allow(...)`; the roles it names are published in the
OpenAPI document (`x-roles`) and tests/test_api_matrix.py checks each route against its own table,
so a route added without an access decision fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request

from collector.api.accounts import Accounts, Principal, Role

SESSION_COOKIE = "lc_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def accounts_of(request: Request) -> Accounts:
    return request.app.state.accounts  # type: ignore[no-any-return]


def token_of(request: Request, cookie_ok: bool) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    # The session cookie only authorises reads on the API: a cross-site form cannot make the
    # browser send a state-changing request with it (the console's own forms carry a CSRF token).
    if cookie_ok:
        return request.cookies.get(SESSION_COOKIE)
    return None


def principal_for(request: Request, token: str | None) -> Principal | None:
    """Who a token names (an API token or a console session), or None: the one lookup the API and the
    console share, so both refuse the same unknown, expired, revoked or disabled credentials."""
    return accounts_of(request).resolve(token) if token else None


def console_session(request: Request) -> tuple[Principal, str] | None:
    """The console's signed-in user and session token from the session cookie, or None.

    Only a token of kind "session" counts: an API token pasted into the cookie does not sign anyone in
    (the console's CSRF token is derived from the session)."""
    token = request.cookies.get(SESSION_COOKIE)
    who = principal_for(request, token)
    return (who, token) if who is not None and token and who.kind == "session" else None


def current_principal(request: Request) -> Principal:
    token = token_of(request, cookie_ok=request.method in SAFE_METHODS)
    principal = principal_for(request, token)
    if principal is None:
        raise HTTPException(status_code=401, detail="a valid API token is required (Authorization: Bearer lc_...)",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


ALL_ROLES = tuple(Role)
CARRIER_ROLES = (Role.CARRIER_ADMIN, Role.CARRIER_VIEWER)


def allow(*roles: Role) -> Callable[[Request], Principal]:
    """A dependency: the caller, if authenticated and holding one of `roles`; else 401/403."""
    allowed = frozenset(roles)

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        if principal.role not in allowed:
            raise HTTPException(status_code=403, detail=f"role {principal.role.value} may not do this")
        return principal

    dependency.roles = tuple(r.value for r in roles)  # type: ignore[attr-defined]
    return dependency


def route_roles(route: Any) -> tuple[str, ...] | None:
    """The roles a route allows (from its `allow` dependency), or None for a public route."""
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant else []
    while stack:
        dep = stack.pop()
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            return tuple(roles)
        stack.extend(dep.dependencies)
    return None
