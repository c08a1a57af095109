"""Dispatch (/console/dispatch): the field teams' queue by impact, a printable work order, and the crew's
steps (assign, arrive, close). Same scoped queries as /api/v1/dispatch (collector/incidents/dispatch.py).

Its words live here (en, zh-CN) rather than in the shared catalogue while that is being reworked;
`d(key)` in its templates, and tests/test_console_dispatch.py checks both languages have every key."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, select

from collector.api import ticket_queries as tq
from collector.api.accounts import Role
from collector.api.scope import Scope
from collector.incidents import dispatch
from collector.store import schema as t
from collector.web.auth import Admin, Anyone, SignedIn, console_router, signed_in
from collector.web.render import connect, env, language, message, render

router = console_router()
Worker = Annotated[SignedIn, Depends(signed_in(*tq.WORKERS))]

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "dispatch": "Dispatch", "queue": "Dispatch queue", "district": "District", "all": "all", "filter": "Filter",
        "job": "Job", "incident": "Area incident", "line": "Line", "lines": "lines", "impact": "Impact",
        "why": "Why", "node": "Access node", "age": "Open", "hours": "h", "assignee": "Crew", "state": "State",
        "business": "business", "promises": "promises at stake", "nothing": "Nothing to dispatch.",
        "work_order": "Work order", "print": "Print this page from the browser (Ctrl+P): the work order prints without the console around it.", "summary": "Fault", "members": "Lines affected",
        "address": "Address", "segment": "Segment", "recovered": "Recovered", "still_down": "still down",
        "evidence": "Evidence", "findings": "Findings", "trail": "Trail", "when": "When", "who": "Who",
        "what": "What", "assign": "Send crew", "arrive": "Crew on site", "close": "Work done", "note": "Note",
        "opened": "Opened", "level": "Level", "reporting": "reporting lines behind the node",
        "access_path": "Access path", "incidents_of_line": "Area incidents",
    },
    "zh-CN": {
        "dispatch": "派单", "queue": "派单队列", "district": "区", "all": "全部", "filter": "筛选",
        "job": "工单", "incident": "区域故障", "line": "线路", "lines": "条线路", "impact": "影响",
        "why": "原因", "node": "接入节点", "age": "已开", "hours": "小时", "assignee": "维修人员", "state": "状态",
        "business": "条商业线路", "promises": "项承诺受影响", "nothing": "暂无待派工单。",
        "work_order": "维修工单", "print": "用浏览器的打印功能打印本页：打印出的工单不含控制台的其他内容。", "summary": "故障", "members": "受影响线路",
        "address": "地址", "segment": "客户类型", "recovered": "已恢复", "still_down": "仍故障",
        "evidence": "证据", "findings": "发现", "trail": "记录", "when": "时间", "who": "人员",
        "what": "事项", "assign": "派遣维修", "arrive": "已到现场", "close": "维修完成", "note": "备注",
        "opened": "开单", "level": "层级", "reporting": "条该节点下近期上报的线路",
        "access_path": "接入路径", "incidents_of_line": "区域故障",
    },
}


def words(lang: str) -> Callable[[str], str]:
    table = WORDS.get(lang, WORDS["en"])
    return lambda key: table.get(key, WORDS["en"].get(key, key))


@router.get("/dispatch", response_class=HTMLResponse)
def dispatch_queue(request: Request, me: Anyone) -> Response:
    district = (request.query_params.get("district") or "")[:64] or None
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        everything = dispatch.queue(conn, scope)
        jobs = [j for j in everything if district is None or j.district == district]
    districts = sorted({j.district for j in everything if j.district})
    return render(request, "dispatch.html", me, d=words(language(request, me.who)), jobs=jobs,
                  districts=districts, district=district)


@router.get("/dispatch/{ticket_id}", response_class=HTMLResponse)
def work_order_page(request: Request, me: Anyone, ticket_id: int) -> Response:
    with connect(request) as conn:
        scope = Scope.of(conn, me.who)
        try:
            order = dispatch.work_order(conn, scope, ticket_id)
        except dispatch.DispatchError:
            return message(request, me, 404, "not_found")
        technicians: list[str] = []
        if me.who.role == Role.CARRIER_ADMIN:
            u = t.users.c
            technicians = list(conn.execute(select(u.user_id).where(
                u.role == Role.TECHNICIAN.value, scope.tenant_clause(u.tenant_id), u.disabled_at.is_(None))
                .order_by(u.user_id).limit(200)).scalars())
    return render(request, "work_order.html", me, d=words(language(request, me.who)), o=order,
                  technicians=technicians, can_work=me.who.role in tq.WORKERS,
                  error=request.query_params.get("error"))


def _step(request: Request, me: SignedIn, ticket_id: int, act: Callable[[Connection, Scope], None]) -> Response:
    back = f"/console/dispatch/{ticket_id}"
    with request.app.state.engine.begin() as conn:
        try:
            act(conn, Scope.of(conn, me.who))
        except dispatch.DispatchError as exc:
            conn.rollback()
            if exc.status == 404:
                return message(request, me, 404, "not_found")
            # The refusal as its phrase: shown in the reader's language, and only catalogued words.
            return RedirectResponse(f"{back}?{urlencode({'error': json.dumps(exc.phrase.as_json())[:1500]})}",
                                    status_code=303)
    return RedirectResponse(back, status_code=303)


@router.post("/dispatch/{ticket_id}/assign")
def assign(request: Request, me: Admin, ticket_id: int, assignee: str = Form("", max_length=64)) -> Response:
    def act(conn: Connection, scope: Scope) -> None:
        tech = conn.execute(select(t.users.c.role, t.users.c.tenant_id).where(t.users.c.user_id == assignee)).first()
        dispatch.work_order(conn, scope, ticket_id)  # outside the scope: 404 before anything else
        if tech is None or tech.role != Role.TECHNICIAN.value or (
                scope.tenants is not None and tech.tenant_id not in scope.tenants):
            raise dispatch.DispatchError(422, "error_not_technician", user=assignee)
        dispatch.assign(conn, scope, ticket_id, assignee, me.who.user_id)

    return _step(request, me, ticket_id, act)


@router.post("/dispatch/{ticket_id}/arrive")
def arrive(request: Request, me: Worker, ticket_id: int, note: str = Form("", max_length=2000)) -> Response:
    return _step(request, me, ticket_id,
                 lambda conn, scope: dispatch.arrive(conn, scope, ticket_id, me.who.user_id, note.strip() or None))


@router.post("/dispatch/{ticket_id}/close")
def close(request: Request, me: Worker, ticket_id: int, note: str = Form("", max_length=2000)) -> Response:
    return _step(request, me, ticket_id,
                 lambda conn, scope: dispatch.close(conn, scope, ticket_id, me.who.user_id, note.strip() or None))


def line_access(request: Request, line_id: str, lang: str) -> dict[str, object]:
    """For the line page (templates/_line_access.html): its access path and the area incidents it was in.
    The line page has already checked that the caller may see the line."""
    from collector.incidents import correlate, topology

    with connect(request) as conn:
        return {"path": topology.path_of(conn, line_id), "incidents": correlate.memberships(conn, line_id),
                "d": words(lang)}


# The nav link (base.html) and the line page's access path need these on every page.
env.globals["dispatch_label"] = lambda lang: words(lang)("dispatch")
env.globals["line_access"] = line_access
