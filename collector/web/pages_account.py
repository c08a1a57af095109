"""The caller's own account (/console/account): their API tokens, minted and revoked from the console."""

from __future__ import annotations

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector.api.accounts import DEFAULT_TOKEN_MAX_DAYS
from collector.web.auth import Anyone, console_router
from collector.web.render import render

router = console_router()


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, me: Anyone) -> Response:
    return render(request, "account.html", me, tokens=request.app.state.accounts.tokens(me.who.user_id), created=None)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(request: Request, me: Anyone, name: str = Form(..., min_length=1, max_length=200)
                 ) -> Response:
    accounts = request.app.state.accounts
    max_days = getattr(request.app.state, "api_token_max_days", DEFAULT_TOKEN_MAX_DAYS)
    _, token = accounts.issue_bounded_token(me.who, name, max_days, max_days)
    return render(request, "account.html", me, tokens=accounts.tokens(me.who.user_id), created=token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(request: Request, me: Anyone, token_id: str) -> Response:
    # Only the caller's own tokens: another user's token id changes nothing.
    request.app.state.accounts.revoke(token_id, user_id=me.who.user_id)
    return RedirectResponse("/console/account", status_code=303)
