"""The web console (/console): one router made of the page groups, and its static files.

Pages render on the server from the same scoped queries as the API, so a console user sees exactly
what their API token would. Sessions are tokens of kind "session" (hashed like API tokens) in an
HttpOnly cookie; every form carries a CSRF token derived from the session. Every page but sign-in and
sign-out takes the one sign-in dependency, `collector.web.auth.signed_in`.

- pages_signin: /login, /logout
- pages_fleet: / (lines and health), /agents, /quarantine
- pages_line: /lines/{line_id} with its enrolment-token, check-now and acceptance-report actions
- pages_tickets: /tickets, /tickets/{ticket_id} and its forms
- pages_dispatch: /dispatch (the field teams' queue) and /dispatch/{ticket_id} (a work order)
- pages_promises: /promises
- pages_servers: /servers (per test server figures: an overloaded PoP)
- pages_account: /account and the caller's API tokens
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from collector.web import (
    pages_account,
    pages_dispatch,
    pages_fleet,
    pages_line,
    pages_promises,
    pages_servers,
    pages_signin,
    pages_tickets,
)
from collector.web.render import HERE

router = APIRouter()
for _pages in (pages_signin, pages_fleet, pages_line, pages_tickets, pages_dispatch, pages_promises, pages_account,
               pages_servers):
    router.include_router(_pages.router)


def static_app() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")
