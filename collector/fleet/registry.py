"""The fleet registry: tenants, sites, lines and enrolled agents; import and export as YAML or CSV.

Import is an upsert of everything in one transaction, after the whole input has been validated
(types, references, the tenant tree); any problem refuses the whole import with messages that name
the file, the entry and what was expected. Import never deletes: a line that leaves the fleet is
removed with `remove_line` so that its tickets and results are not orphaned silently.

Tenants are the isolation unit: carriers and enterprises. An enterprise's `parent_id` is the
carrier that serves it, so a carrier's scope is itself plus its enterprise customers
(`tenant_scope`). A line belongs to the enterprise (or directly to the carrier).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Connection, func, select

from collector.incidents import topology
from collector.store import line_state
from collector.store import schema as t
from collector.store.upsert import insert_for, upsert_rows
from linecheck.configfile import ConfigError, Strict, format_validation_error, parse_yaml
from linecheck.wire import Ident


class Tenant(Strict):
    tenant_id: Ident
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["carrier", "enterprise"]
    parent_id: Ident | None = Field(default=None, description="An enterprise's carrier")


class Site(Strict):
    site_id: Ident
    tenant_id: Ident
    name: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=1000)
    district: str | None = Field(default=None, max_length=64)


class Line(Strict):
    line_id: Ident
    tenant_id: Ident
    site_id: Ident
    name: str | None = Field(default=None, max_length=200)
    district: str | None = Field(default=None, max_length=64, description="Defaults to the site's district")
    segment: str | None = Field(default=None, max_length=64)
    plan_down_mbps: float | None = Field(default=None, gt=0, le=100_000)
    plan_up_mbps: float | None = Field(default=None, gt=0, le=100_000)
    account_since: date | None = None
    access_path: str | None = Field(default=None, max_length=512, description=(
        "district/central office/OLT/PON port/splitter, e.g. 'Xuhui/CO-XH1/OLT-3/PON-1-2/SPL-7' (docs/incidents.md)"))


class Agent(Strict):
    agent_id: Ident
    line_id: Ident
    report_interval_s: int | None = Field(default=None, ge=10, le=7 * 86400,
                                          description="The agent's schedule; silence past it is agent_offline")


class Registry(Strict):
    tenants: list[Tenant] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)
    lines: list[Line] = Field(default_factory=list)
    agents: list[Agent] = Field(default_factory=list)


SECTIONS: dict[str, tuple[type[BaseModel], t.Table, str]] = {
    "tenants": (Tenant, t.tenants, "tenant_id"),
    "sites": (Site, t.sites, "site_id"),
    "lines": (Line, t.lines, "line_id"),
    "agents": (Agent, t.agents, "agent_id"),
}


# --- reading files ------------------------------------------------------------------------------


def load_yaml(path: Path | str) -> Registry:
    data = parse_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, [f"(top level): expected a mapping with {', '.join(SECTIONS)}, "
                                 f"got {type(data).__name__}"])
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(path, exc) from None


def guess_section(header: Sequence[str]) -> str | None:
    """Which table a CSV holds, from its id column (agents name their line, lines their site, ...)."""
    for section in ("agents", "lines", "sites", "tenants"):
        if SECTIONS[section][2] in header:
            return section
    return None


def load_csv(path: Path | str, section: str | None = None) -> Registry:
    """One CSV file = one table; the header names the columns (as in the YAML). Empty cell = null."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # spreadsheets like to add a BOM
    except FileNotFoundError:
        raise ConfigError(p, ["file not found"]) from None
    except UnicodeDecodeError:
        raise ConfigError(p, ["file is not UTF-8 text"]) from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    section = section or guess_section(header)
    if section not in SECTIONS:
        raise ConfigError(p, [f"header: expected an id column (one of agent_id, line_id, site_id, tenant_id), "
                              f"got {header}"])
    model = SECTIONS[section][0]
    unknown = [h for h in header if h not in model.model_fields]
    if unknown:
        raise ConfigError(p, [f"header: unknown column(s) {unknown} for {section}; "
                              f"expected {list(model.model_fields)}"])
    rows: list[BaseModel] = []
    problems: list[str] = []
    for n, raw in enumerate(reader, start=2):  # row 1 is the header
        if None in raw:
            problems.append(f"row {n}: more cells than header columns")
            continue
        cells = {k: (v.strip() if v and v.strip() else None) for k, v in raw.items()}
        try:
            rows.append(model.model_validate(cells))
        except ValidationError as exc:
            problems += [f"row {n}: {p_}" for p_ in format_validation_error(p, exc).problems]
    if problems:
        raise ConfigError(p, problems)
    return Registry(**{section: rows})


def load_file(path: Path | str, section: str | None = None) -> Registry:
    return load_csv(path, section) if str(path).lower().endswith(".csv") else load_yaml(path)


# --- validation against the database ------------------------------------------------------------


def _existing(conn: Connection, table: t.Table, key: str, ids: Iterable[str]) -> dict[str, Any]:
    wanted = sorted(set(ids))
    found: dict[str, Any] = {}
    for i in range(0, len(wanted), 500):
        for row in conn.execute(select(table).where(table.c[key].in_(wanted[i:i + 500]))):
            found[row._mapping[key]] = row
    return found


def check(conn: Connection, data: Registry, source: str = "registry",
          scope: set[str] | None = None, caller_tenant: str | None = None) -> list[str]:
    """Every problem with importing `data` on top of the database; [] when it can be imported.

    `scope` None is the operator (the CLI, or an API user without a tenant): anything goes. Otherwise the
    caller is a tenant's admin, `caller_tenant` its own tenant: it may create and edit enterprises under its
    own carrier, and nothing else about the tenant tree (see `_tenant_tree_problems`)."""
    problems: list[str] = []
    for section, (_, _, key) in SECTIONS.items():
        seen: set[str] = set()
        for i, item in enumerate(getattr(data, section)):
            ident = getattr(item, key)
            if ident in seen:
                problems.append(f"{section}[{i}].{key}: {ident!r} appears twice")
            seen.add(ident)

    db_tenants = _existing(conn, t.tenants, "tenant_id",
                           [x.tenant_id for x in data.tenants] + [x.parent_id for x in data.tenants if x.parent_id]
                           + [x.tenant_id for x in data.sites] + [x.tenant_id for x in data.lines])
    kinds = {k: r.kind for k, r in db_tenants.items()} | {x.tenant_id: x.kind for x in data.tenants}
    for i, x in enumerate(data.tenants):
        where = f"tenants[{i}]"
        if x.kind == "carrier" and x.parent_id:
            problems.append(f"{where}.parent_id: a carrier has no parent (got {x.parent_id!r})")
        if x.kind == "enterprise" and x.parent_id:
            if x.parent_id not in kinds:
                problems.append(f"{where}.parent_id: unknown tenant {x.parent_id!r} (not in this file nor stored)")
            elif kinds[x.parent_id] != "carrier":
                problems.append(f"{where}.parent_id: {x.parent_id!r} is an enterprise; expected a carrier")
        if scope is not None and x.tenant_id not in scope and (x.parent_id or x.tenant_id) not in scope:
            problems.append(f"{where}.tenant_id: {x.tenant_id!r} is outside your tenants")
        elif scope is not None:
            problems += _tenant_tree_problems(where, x, db_tenants.get(x.tenant_id), kinds, caller_tenant)
    # No cycle is possible: only enterprises have parents, and a parent must be a carrier.

    db_sites = _existing(conn, t.sites, "site_id", [x.site_id for x in data.lines])
    site_tenant = {k: r.tenant_id for k, r in db_sites.items()} | {x.site_id: x.tenant_id for x in data.sites}
    for section in ("sites", "lines"):
        for i, x in enumerate(getattr(data, section)):
            if x.tenant_id not in kinds:
                problems.append(f"{section}[{i}].tenant_id: unknown tenant {x.tenant_id!r} "
                                "(define it under tenants first)")
            elif scope is not None and x.tenant_id not in scope:
                problems.append(f"{section}[{i}].tenant_id: {x.tenant_id!r} is outside your tenants")
    for i, x in enumerate(data.lines):
        if x.site_id not in site_tenant:
            problems.append(f"lines[{i}].site_id: unknown site {x.site_id!r} (define it under sites first)")
        elif site_tenant[x.site_id] != x.tenant_id:
            problems.append(f"lines[{i}].site_id: site {x.site_id!r} belongs to tenant {site_tenant[x.site_id]!r}, "
                            f"not {x.tenant_id!r}")

    for i, x in enumerate(data.lines):
        problems += [f"lines[{i}].access_path: {p}" for p in topology.problems(x.access_path or "x")]

    db_lines = _existing(conn, t.lines, "line_id", [x.line_id for x in data.agents])
    line_tenant = {k: r.tenant_id for k, r in db_lines.items()} | {x.line_id: x.tenant_id for x in data.lines}
    for i, x in enumerate(data.agents):
        if x.line_id not in line_tenant:
            problems.append(f"agents[{i}].line_id: unknown line {x.line_id!r} (define it under lines first)")
        elif scope is not None and line_tenant[x.line_id] not in scope:
            problems.append(f"agents[{i}].line_id: line {x.line_id!r} is outside your tenants")
    return [f"{source}: {p}" if not p.startswith(source) else p for p in problems]


def _tenant_tree_problems(where: str, x: Tenant, stored: Any, kinds: dict[str, str],
                          caller_tenant: str | None) -> list[str]:
    """What a tenant's admin may not do to the tenant tree: make a carrier, change a tenant's kind or
    parent (which moves it, its lines and their results into another carrier's sight), or touch any
    tenant other than an enterprise of its own carrier. Only the operator shapes the tree."""
    own_carrier = caller_tenant if caller_tenant is not None and kinds.get(caller_tenant) == "carrier" else None
    if stored is None:
        if x.kind != "enterprise" or own_carrier is None or x.parent_id != own_carrier:
            return [f"{where}: only the operator may create this tenant; expected kind enterprise with parent_id "
                    f"{own_carrier!r} (your carrier)" if own_carrier else
                    f"{where}: only the operator may create tenants (your account belongs to an enterprise)"]
        return []
    problems = []
    if x.kind != stored.kind:
        problems.append(f"{where}.kind: only the operator may change a tenant's kind "
                        f"(stored {stored.kind!r}, got {x.kind!r})")
    if x.parent_id != stored.parent_id:
        problems.append(f"{where}.parent_id: only the operator may change a tenant's parent "
                        f"(stored {stored.parent_id!r}, got {x.parent_id!r})")
    under_own = stored.kind == "enterprise" and own_carrier is not None and stored.parent_id == own_carrier
    if not problems and not under_own and x.name != stored.name:
        problems.append(f"{where}.name: only the operator may rename {x.tenant_id!r}; "
                        "you may edit the enterprises of your own carrier")
    return problems


# --- import / export ----------------------------------------------------------------------------

_KEEP = ("created_at",)  # a re-import updates a row; only its first import sets created_at

def import_registry(conn: Connection, data: Registry, source: str = "registry",
                    scope: set[str] | None = None, now: datetime | None = None,
                    caller_tenant: str | None = None) -> dict[str, int]:
    """Validate, then upsert everything in the caller's transaction. Raises ConfigError listing every problem."""
    problems = check(conn, data, source, scope, caller_tenant)
    if problems:
        raise ConfigError(source, [p.removeprefix(f"{source}: ") for p in problems])
    now = now or datetime.now(UTC)
    stamp = {"created_at": now, "updated_at": now}
    # Carriers before enterprises, so a parent row exists when its child arrives.
    tenants = sorted(data.tenants, key=lambda x: x.kind != "carrier")
    upsert_rows(conn, t.tenants, ["tenant_id"], [x.model_dump() | stamp for x in tenants], keep=_KEEP)
    upsert_rows(conn, t.sites, ["site_id"], [x.model_dump() | stamp for x in data.sites], keep=_KEEP)
    site_district = {k: r.district for k, r in _existing(conn, t.sites, "site_id",
                                                          [x.site_id for x in data.lines]).items()}
    upsert_rows(conn, t.lines, ["line_id"], keep=_KEEP, rows=[
        x.model_dump() | {"district": x.district or site_district.get(x.site_id)} | stamp for x in data.lines])
    line_state.registered(conn, [x.line_id for x in data.lines])
    topology.store_paths(conn, [(x.line_id, x.access_path) for x in data.lines])
    line_site = {k: r.site_id for k, r in _existing(conn, t.lines, "line_id",
                                                     [x.line_id for x in data.agents]).items()}
    _enrol(conn, [(x, line_site[x.line_id]) for x in data.agents], now)
    return {section: len(getattr(data, section)) for section in SECTIONS}


def _enrol(conn: Connection, agents: list[tuple[Agent, str]], now: datetime) -> None:
    for agent, site_id in agents:
        stmt = insert_for(conn, t.agents).values(
            agent_id=agent.agent_id, line_id=agent.line_id, site_id=site_id, max_seq=0, result_count=0,
            enrolled_at=now, report_interval_s=agent.report_interval_s)
        conn.execute(stmt.on_conflict_do_update(index_elements=[t.agents.c.agent_id], set_={
            "line_id": agent.line_id, "site_id": site_id, "report_interval_s": agent.report_interval_s,
            "enrolled_at": func.coalesce(t.agents.c.enrolled_at, stmt.excluded.enrolled_at)}))


def tenant_scope(conn: Connection, tenant_id: str) -> set[str]:
    """The tenant and every tenant below it (a carrier's enterprise customers)."""
    scope = {tenant_id}
    frontier = [tenant_id]
    while frontier:
        children = conn.execute(select(t.tenants.c.tenant_id).where(t.tenants.c.parent_id.in_(frontier))).scalars()
        frontier = [c for c in children if c not in scope]
        scope.update(frontier)
    return scope


def export_registry(conn: Connection, scope: set[str] | None = None) -> Registry:
    """The registry as stored (enrolled agents only), optionally limited to some tenants."""
    def rows(table: t.Table, key: str, tenant_col: Any) -> list[dict[str, Any]]:
        stmt = select(table).order_by(table.c[key])
        if scope is not None:
            stmt = stmt.where(tenant_col.in_(sorted(scope)))
        return [dict(r._mapping) for r in conn.execute(stmt)]

    def fields(model: type[BaseModel], row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in model.model_fields}

    agents_stmt = (select(t.agents).join(t.lines, t.lines.c.line_id == t.agents.c.line_id)
                   .where(t.agents.c.enrolled_at.is_not(None)).order_by(t.agents.c.agent_id))
    if scope is not None:
        agents_stmt = agents_stmt.where(t.lines.c.tenant_id.in_(sorted(scope)))
    return Registry(
        tenants=[Tenant(**fields(Tenant, r)) for r in rows(t.tenants, "tenant_id", t.tenants.c.tenant_id)],
        sites=[Site(**fields(Site, r)) for r in rows(t.sites, "site_id", t.sites.c.tenant_id)],
        lines=[Line(**fields(Line, r)) for r in rows(t.lines, "line_id", t.lines.c.tenant_id)],
        agents=[Agent(**fields(Agent, dict(r._mapping))) for r in conn.execute(agents_stmt)],
    )


def to_yaml(data: Registry) -> str:
    body = {k: [x.model_dump(exclude_none=True) for x in v] for k, v in data if v}
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def to_csv(data: Registry, section: str) -> str:
    model = SECTIONS[section][0]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(model.model_fields), lineterminator="\n")
    writer.writeheader()
    for item in getattr(data, section):
        writer.writerow({k: "" if v is None else v for k, v in item.model_dump().items()})
    return out.getvalue()


def remove_line(conn: Connection, line_id: str) -> bool:
    """Take a line out of the registry (its agents are un-enrolled; results and tickets stay as history)."""
    conn.execute(t.agents.update().where(t.agents.c.line_id == line_id).values(enrolled_at=None))
    removed = conn.execute(t.lines.delete().where(t.lines.c.line_id == line_id)).rowcount > 0
    topology.store_paths(conn, [(line_id, None)])
    line_state.unregistered(conn, line_id)
    return removed
