"""How every console page is drawn: the templates, the language and time zone of the answer, paging.

The language comes from `?lang=` (remembered in a cookie), then the cookie, then the user's stored
language, then Accept-Language; every source may spell it otherwise and is mapped by `i18n.normalise`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection

from collector.api.accounts import Principal, csrf_token
from collector.api.pagination import PageParams
from collector.store import schema as t
from collector.web import i18n
from collector.web.clock import shown
from collector.web.words import Words

if TYPE_CHECKING:
    from collector.web.auth import SignedIn

HERE = Path(__file__).parent
env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
# Pages for parts that other modules provide appear once those modules are there.
env.globals["features"] = {name for name in ("tickets", "promises") if name in t.metadata.tables}
LANG_COOKIE = "lc_lang"
PER_PAGE = 25


def language(request: Request, who: Principal | None = None) -> str:
    # Each source may spell the language otherwise (`?lang=zh`, an old cookie): normalise maps it to our tags.
    asked = i18n.normalise(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))
    if asked is not None:
        return asked
    stored = i18n.normalise(who.language) if who is not None else None
    if stored is not None:
        return stored
    return i18n.pick(request.headers.get("accept-language"))


def timezone(request: Request) -> ZoneInfo:
    return getattr(request.app.state, "timezone", None) or ZoneInfo("UTC")


def render(request: Request, template: str, me: SignedIn | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """The page for `me` (None on the sign-in page): its words, times and form CSRF token follow the caller."""
    who = me.who if me is not None else None
    lang = language(request, who)
    tz = timezone(request)

    def when(ts: datetime | None) -> str:
        return "—" if ts is None else shown(ts, tz)

    def link(**changes: Any) -> str:
        params = dict(request.query_params)
        params.pop("lang", None)
        params.update({k: v for k, v in changes.items()})
        params = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{request.url.path}?{urlencode(params)}" if params else request.url.path

    body = env.get_template(template).render(
        request=request, me=who, t=i18n.translator(lang), w=Words(lang), lang=lang,
        other_lang="en" if lang == "zh-CN" else "zh-CN",
        csrf=csrf_token(me.session) if me is not None else "", when=when, link=link, tzname=str(tz),
        path=request.url.path, **ctx)
    response = HTMLResponse(body, status_code=status_code)
    if i18n.normalise(request.query_params.get("lang")) is not None:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


def message(request: Request, me: SignedIn | None, status_code: int, key: str) -> HTMLResponse:
    """A page that only says why not (`forbidden`, `not_found`, `csrf`), in the caller's language."""
    return render(request, "message.html", me, status_code=status_code, message=key)


def page_params(request: Request, name: str = "page") -> PageParams:
    try:
        page = max(1, min(1_000_000, int(request.query_params.get(name, "1"))))
    except ValueError:
        page = 1
    return PageParams(page, PER_PAGE)


def pager(params: PageParams, total: int) -> dict[str, int]:
    return {"page": params.page, "pages": max(1, -(-total // params.per_page)), "total": total}


def connect(request: Request) -> Connection:
    return request.app.state.engine.connect()  # type: ignore[no-any-return]
