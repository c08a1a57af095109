"""CSV exports, streamed in chunks so an export of a large fleet never sits in memory at once."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, Select, select

from collector.api import queries
from collector.api.accounts import Principal
from collector.api.deps import ALL_ROLES, allow
from collector.api.scope import Scope, scope_for
from collector.store import schema as t

router = APIRouter(prefix="/api/v1/exports")
Anyone = Annotated[Principal, Depends(allow(*ALL_ROLES))]
CHUNK = 1000
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}, "description": "CSV"}}


def _stream(engine: Engine, stmt: Select, columns: list[str]) -> Iterator[str]:  # type: ignore[type-arg]
    """One server-side cursor, read in chunks: linear in the export's size, bounded in memory."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    yield buf.getvalue()
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(stmt)
        for rows in result.mappings().partitions(CHUNK):
            buf.seek(0)
            buf.truncate()
            for r in rows:
                writer.writerow(["" if r[c] is None else _cell(r[c]) for c in columns])
            yield buf.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) from a gateway's
# check target would be a link, or worse, in the carrier's own Excel). OWASP's CSV-injection advice:
# prefix such text with a quote so it shows as text. Numbers stay numbers, negative ones included.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return neutralise(value)
    return value


def neutralise(text: str) -> str:
    """Text a spreadsheet would run as a formula, made inert with a leading quote; anything else unchanged."""
    if text.startswith(FORMULA_START) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


def _csv(body: Iterator[str], name: str) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/lines.csv", tags=["exports"], response_class=StreamingResponse, responses=CSV_RESPONSE)
def lines_csv(who: Anyone, request: Request) -> StreamingResponse:
    """The caller's lines with registry data (no per-line health: that is the lines endpoint's job)."""
    engine = request.app.state.engine
    stmt = queries.fleet_lines(scope_for(engine, who))
    cols = ["line_id", "tenant_id", "site_id", "name", "district", "segment", "plan_down_mbps", "plan_up_mbps"]
    return _csv(_stream(engine, stmt.order_by("line_id"), cols), "lines.csv")


@router.get("/results.csv", tags=["exports"], response_class=StreamingResponse, responses=CSV_RESPONSE)
def results_csv(who: Anyone, request: Request,
                days: Annotated[int, Query(ge=1, le=366)] = 7,
                line_id: Annotated[str | None, Query(max_length=64)] = None) -> StreamingResponse:
    """Results of the caller's lines over the last `days` days, one row per check and metric."""
    engine = request.app.state.engine
    scope: Scope = scope_for(engine, who)
    c, m = t.checks.c, t.metrics.c
    since = datetime.now(UTC) - timedelta(days=days)
    stmt = (select(c.started_at, c.line_id, c.agent_id, c.result_id, c.kind, c.target, c.status,
                   m.name.label("metric"), m.value)
            .join(t.metrics, (m.agent_id == c.agent_id) & (m.result_id == c.result_id) & (m.idx == c.idx)
                  & (m.started_at == c.started_at))
            .where(c.started_at >= since, scope.lines_clause(c.line_id)))
    if line_id:
        stmt = stmt.where(c.line_id == line_id)
    cols = ["started_at", "line_id", "agent_id", "result_id", "kind", "target", "status", "metric", "value"]
    stmt = stmt.order_by(c.started_at, c.agent_id, c.result_id, c.idx, m.name)
    return _csv(_stream(engine, stmt, cols), "results.csv")


@router.get("/tickets.csv", tags=["exports"], response_class=StreamingResponse, responses=CSV_RESPONSE)
def tickets_csv(who: Anyone, request: Request, days: Annotated[int, Query(ge=1, le=3660)] = 90) -> StreamingResponse:
    """Tickets of the caller's lines opened in the last `days` days, with their lifecycle times."""
    from collector.api.ticket_queries import visible

    engine = request.app.state.engine
    c = t.tickets.c
    cols = ["ticket_id", "line_id", "tenant_id", "fault_class", "state", "severity", "location", "assignee",
            "opened_at", "acknowledged_at", "dispatched_at", "resolved_at", "verified_at", "summary"]
    stmt = (select(*[c[k] for k in cols]).where(visible(scope_for(engine, who)),
                                                c.opened_at >= datetime.now(UTC) - timedelta(days=days))
            .order_by(c.ticket_id))
    return _csv(_stream(engine, stmt, cols), "tickets.csv")


@router.get("/promises.csv", tags=["exports"], response_class=StreamingResponse, responses=CSV_RESPONSE)
def promises_csv(who: Anyone, request: Request) -> StreamingResponse:
    """The latest verdict of every promise on the caller's lines, with district and segment."""
    engine = request.app.state.engine
    v, ln = t.promise_verdicts.c, t.lines.c
    cols = ["promise_id", "line_id", "tenant_id", "district", "segment", "kind", "outcome", "in_grace",
            "delivered_ratio", "evaluated_at", "outcome_since", "ticket_id", "summary"]
    stmt = (select(v.promise_id, v.line_id, ln.tenant_id, ln.district, ln.segment, v.kind, v.outcome, v.in_grace,
                   v.delivered_ratio, v.evaluated_at, v.outcome_since, v.ticket_id, v.summary)
            .select_from(t.promise_verdicts.outerjoin(t.lines, ln.line_id == v.line_id))
            .where(scope_for(engine, who).lines_clause(v.line_id)).order_by(v.line_id, v.promise_id))
    return _csv(_stream(engine, stmt, cols), "promises.csv")
