"""Registry import and export over the API: the same files as `linecheck-collector registry`, scoped.

An import is validated whole by collector.fleet.registry (types, references, the tenant tree, the caller's
tenants) and upserted in one transaction. On top of that, ids that already exist in another tenant's
part of the registry are refused here: an upsert by id would otherwise move another tenant's site,
line or agent into the caller's tenant.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, select

from collector.api.accounts import Principal, Role
from collector.api.deps import allow
from collector.api.models import Problem
from collector.api.scope import Scope
from collector.fleet import registry
from collector.store import schema as t
from linecheck.configfile import ConfigError, format_validation_error

router = APIRouter(prefix="/api/v1/registry", tags=["registry"])
Admin = Annotated[Principal, Depends(allow(Role.CARRIER_ADMIN))]
Section = Literal["tenants", "sites", "lines", "agents"]
MAX_BYTES = 5 * 1024 * 1024


class Imported(BaseModel):
    imported: dict[str, int]


def _parse(body: bytes, content_type: str, section: str | None) -> registry.Registry:
    if len(body) > MAX_BYTES:
        raise ConfigError("request", [f"(top level): larger than {MAX_BYTES} bytes; split the file"])
    if "csv" in content_type:
        # collector.fleet.registry reads CSV from a file (BOM, header and row checks): give it one.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "request.csv"
            path.write_bytes(body)
            try:
                return registry.load_csv(path, section)
            except ConfigError as exc:
                raise ConfigError("request.csv", exc.problems) from None
    try:
        data = yaml.safe_load(body.decode("utf-8-sig")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError("request.yaml", [f"(top level): not valid UTF-8 YAML ({exc})"]) from None
    if not isinstance(data, dict):
        raise ConfigError("request.yaml", ["(top level): expected a mapping with tenants, sites, lines, agents"])
    try:
        return registry.Registry.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error("request.yaml", exc) from None


def _foreign(conn: Connection, data: registry.Registry, scope: Scope) -> list[str]:
    """Ids in the import that already belong to a tenant outside the caller's scope."""
    if scope.tenants is None:
        return []
    mine = sorted(scope.tenants)
    problems = []
    checks: list[tuple[str, Any, Any, list[str]]] = [
        ("tenants", t.tenants.c.tenant_id, t.tenants.c.tenant_id, [x.tenant_id for x in data.tenants]),
        ("sites", t.sites.c.site_id, t.sites.c.tenant_id, [x.site_id for x in data.sites]),
        ("lines", t.lines.c.line_id, t.lines.c.tenant_id, [x.line_id for x in data.lines]),
    ]
    for section, key, owner, ids in checks:
        if ids:
            for ident in conn.execute(select(key).where(key.in_(ids), owner.not_in(mine))).scalars():
                problems.append(f"{section}: {ident!r} belongs to a tenant outside yours")
    agent_ids = [x.agent_id for x in data.agents]
    if agent_ids:
        # Bound to a line outside the caller's tenants, or promised to one by a live enrolment token: both
        # read the same (the enrolment-token answer's one bit), and neither names the line or tenant.
        et = t.enrolment_tokens.c
        taken = set(conn.execute(select(t.agents.c.agent_id).where(
            t.agents.c.agent_id.in_(agent_ids), ~scope.lines_clause(t.agents.c.line_id))).scalars())
        now = datetime.now(UTC)
        taken |= {a for a, expires in conn.execute(select(et.agent_id, et.expires_at).where(
            et.agent_id.in_(agent_ids), et.used_at.is_(None), ~scope.lines_clause(et.line_id)))
            if expires > now}
        problems += [f"agents: {a!r} is taken by a line outside your tenants; choose another id"
                     for a in sorted(taken)]
    return problems


@router.get("", response_class=PlainTextResponse,
            responses={200: {"content": {"application/yaml": {}, "text/csv": {}}}})
def export(who: Admin, request: Request, format: Literal["yaml", "csv"] = "yaml",  # noqa: A002
           section: Section | None = None) -> PlainTextResponse:
    """The registry of the caller's tenants: all sections as YAML, or one section as CSV (default lines)."""
    with request.app.state.engine.connect() as conn:
        scope = Scope.of(conn, who)
        data = registry.export_registry(conn, None if scope.tenants is None else set(scope.tenants))
    if format == "csv":
        return PlainTextResponse(registry.to_csv(data, section or "lines"), media_type="text/csv")
    return PlainTextResponse(registry.to_yaml(data), media_type="application/yaml")


@router.post("", response_model=Imported, responses={
    422: {"model": Problem, "description": "the file has problems; nothing was imported (each problem named)"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/yaml": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}}})
async def import_(who: Admin, request: Request, section: Annotated[Section | None, Query()] = None,
                  dry_run: bool = False) -> dict:
    """Import a registry file (YAML, or CSV with `Content-Type: text/csv`): validated whole, then upserted."""
    body = await request.body()
    content_type = request.headers.get("content-type", "application/yaml")
    try:
        data = _parse(body, content_type, section)
    except ConfigError as exc:
        raise HTTPException(422, exc.problems) from None
    engine = request.app.state.engine

    def run() -> dict[str, int]:
        with engine.begin() as conn:
            scope = Scope.of(conn, who)
            foreign = _foreign(conn, data, scope)
            if foreign:
                raise ConfigError("request", foreign)
            counts = registry.import_registry(conn, data, source="request",
                                              scope=None if scope.tenants is None else set(scope.tenants),
                                              caller_tenant=who.tenant_id)
            if dry_run:
                conn.rollback()
            return counts

    from starlette.concurrency import run_in_threadpool

    try:
        counts = await run_in_threadpool(run)
    except ConfigError as exc:
        raise HTTPException(422, exc.problems) from None
    return {"imported": counts}
