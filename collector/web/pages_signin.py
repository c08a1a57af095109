"""Sign-in and sign-out (/console/login, /console/logout): the two console routes open without a session."""

from __future__ import annotations

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector.api.accounts import SESSION_TTL
from collector.api.deps import SESSION_COOKIE, console_session
from collector.api.throttle import LoginThrottle, request_address
from collector.web.auth import console_router
from collector.web.render import render

router = console_router()


def safe_next(target: str) -> str:
    # Only paths inside the console: never an open redirect to another site.
    return target if target.startswith("/console/") and not target.startswith("/console//") else "/console/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/console/") -> HTMLResponse:
    return render(request, "login.html", None, next=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, user: str = Form(..., max_length=64), password: str = Form(..., max_length=200),
          next: str = Form("/console/")) -> Response:
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request_address(request)  # X-Forwarded-For only from a configured trusted proxy
    wait = throttle.retry_after(user, address)
    if wait > 0:
        refused = render(request, "login.html", None, status_code=429, next=safe_next(next),
                         error="login_throttled", minutes=max(1, round(wait / 60)))
        refused.headers["Retry-After"] = str(int(wait) + 1)
        return refused
    token = request.app.state.accounts.login(user, password)
    if token is None:
        throttle.failed(user, address)
        return render(request, "login.html", None, status_code=401, next=safe_next(next), error="login_failed")
    throttle.succeeded(user, address)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=bool(request.app.state.secure_cookies), path="/")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    """Sign out: the session the cookie names is revoked on the server, CSRF token or not.

    Deleting only the cookie would leave a copied session valid for hours. Revoking without the token is
    safe: the cookie is SameSite=Lax, so another site's form cannot send it (no cross-site logout), and
    the worst a same-site request can do is sign the user out. The form still carries the token."""
    found = console_session(request)
    if found:
        request.app.state.accounts.revoke(found[0].token_id)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
