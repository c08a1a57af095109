"""The console's sign-in check, once: a FastAPI dependency every console page and form takes.

`signed_in(*roles)` resolves the session cookie to its user (the same lookup the API's bearer tokens go
through, `collector.api.deps.principal_for`), and refuses as the console always has:
- no session, or an expired or revoked one: 303 to /console/login?next=<this page>;
- a form (any method but GET/HEAD/OPTIONS) without the session's CSRF token: 403 "csrf";
- a role outside `roles` (when given): 403 "forbidden".
Refusals are pages and redirects, not JSON errors, so the dependency raises `Refused` carrying the
response and `ConsoleRoute` (the route class of every console router) answers with it.
tests/test_console.py::test_every_console_route_requires_sign_in walks the app's routes: a console
handler without this dependency fails it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from collector.api.accounts import Principal, Role, csrf_token
from collector.api.deps import SAFE_METHODS, console_session
from collector.web.render import message

# Routes a visitor reaches without signing in: the sign-in form itself, and sign-out (which revokes the
# session the cookie names, if any, and must work for an expired one too).
PUBLIC = {"/console/login", "/console/logout"}


@dataclass(frozen=True)
class SignedIn:
    """The console's caller: who, and the session token (the CSRF token of their forms derives from it)."""

    who: Principal
    session: str


class Refused(Exception):  # noqa: N818 - it is not an error: the answer is a page or a redirect
    """Raised by the dependency with the response to send instead of the page."""

    def __init__(self, response: Response):
        super().__init__(response.status_code)
        self.response = response


class ConsoleRoute(APIRoute):
    """An APIRoute that answers a `Refused` with its response (FastAPI would turn an exception into a 500)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def refusing(request: Request) -> Response:
            try:
                return await handle(request)
            except Refused as refused:
                return refused.response

        return refusing


def console_router() -> APIRouter:
    """A router for console pages: under /console, out of the OpenAPI document, refusals answered."""
    return APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?{urlencode({'next': target})}", status_code=303)


async def sent_csrf(request: Request) -> str:
    """The CSRF token a form carries ("" for reads and forms without one). Starlette keeps the parsed form,
    so the handler's own Form fields read the same body."""
    if request.method in SAFE_METHODS:
        return ""
    value = (await request.form()).get("csrf")
    return value if isinstance(value, str) else ""


def signed_in(*roles: Role) -> Callable[..., SignedIn]:
    """A dependency: the signed-in caller (with a valid CSRF token on forms, holding one of `roles` if any)."""
    allowed = frozenset(roles)

    def dependency(request: Request, csrf: str = Depends(sent_csrf)) -> SignedIn:
        found = console_session(request)
        if found is None:
            raise Refused(to_login(request))
        me = SignedIn(*found)
        if request.method not in SAFE_METHODS and not hmac.compare_digest(csrf_token(me.session).encode(),
                                                                             csrf.encode()):
            raise Refused(message(request, me, 403, "csrf"))
        if allowed and me.who.role not in allowed:
            raise Refused(message(request, me, 403, "forbidden"))
        return me

    dependency.console_sign_in = True  # type: ignore[attr-defined]
    # Not `roles`: that attribute publishes an API route's roles (collector.api.deps.route_roles).
    dependency.console_roles = tuple(r.value for r in roles)  # type: ignore[attr-defined]
    return dependency


# The callers a handler takes, as parameter types (`me: Anyone`): the dependency and its roles in one word.
Anyone = Annotated[SignedIn, Depends(signed_in())]
Admin = Annotated[SignedIn, Depends(signed_in(Role.CARRIER_ADMIN))]


def requires_sign_in(route: Any) -> bool:
    """Whether a route takes `signed_in(...)` somewhere in its dependencies."""
    dependant = getattr(route, "dependant", None)
    stack = list(dependant.dependencies) if dependant else []
    while stack:
        dep = stack.pop()
        if getattr(dep.call, "console_sign_in", False):
            return True
        stack.extend(dep.dependencies)
    return False
