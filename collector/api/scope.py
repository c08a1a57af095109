"""Tenant isolation, enforced in the SQL of every query (never by filtering rows afterwards).

A `Scope` turns the caller into conditions on line ids and tenant ids:
- the collector's operator (a carrier user without a tenant) sees everything, including lines
  that report but are not registered yet;
- a carrier user sees its tenant and the enterprises below it (`registry.tenant_scope`);
- an enterprise user sees its own tenant only;
- a technician sees, inside its tenant scope, only the lines assigned to it (and the lines of
  tickets assigned to it, once tickets carry an assignee).
Lines outside the scope answer 404, not 403, so ids of other tenants cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException
from sqlalchemy import ColumnElement, Connection, Engine, and_, false, select, true

from collector.api.accounts import Principal, Role
from collector.fleet import registry
from collector.store import schema as t


@dataclass(frozen=True)
class Scope:
    principal: Principal
    tenants: frozenset[str] | None  # None: every tenant

    @classmethod
    def of(cls, conn: Connection, principal: Principal) -> Scope:
        if principal.tenant_id is None:
            return cls(principal, None)
        if principal.role == Role.ENTERPRISE:
            return cls(principal, frozenset({principal.tenant_id}))
        return cls(principal, frozenset(registry.tenant_scope(conn, principal.tenant_id)))

    @property
    def everything(self) -> bool:
        return self.tenants is None and self.principal.role != Role.TECHNICIAN

    def tenant_clause(self, tenant_col: ColumnElement) -> ColumnElement[bool]:  # type: ignore[type-arg]
        return true() if self.tenants is None else tenant_col.in_(sorted(self.tenants))

    def lines_clause(self, line_col: ColumnElement) -> ColumnElement[bool]:  # type: ignore[type-arg]
        """A condition on any line_id column: true for the lines this caller may see."""
        conds: list[ColumnElement[bool]] = []
        if self.tenants is not None:
            conds.append(line_col.in_(select(t.lines.c.line_id).where(t.lines.c.tenant_id.in_(sorted(self.tenants)))))
        if self.principal.role == Role.TECHNICIAN:
            conds.append(line_col.in_(self._technician_lines()))
        if not conds:
            return true()
        return and_(*conds)

    def fleet_clause(self) -> ColumnElement[bool]:  # type: ignore[type-arg]
        """`lines_clause` for rows of line_state, on its own tenant column (null: a line only the operator sees)."""
        if self.everything:
            return true()
        ls = t.line_state.c
        conds: list[ColumnElement[bool]] = [ls.tenant_id.is_not(None)]
        if self.tenants is not None:
            conds.append(ls.tenant_id.in_(sorted(self.tenants)))
        if self.principal.role == Role.TECHNICIAN:
            conds.append(ls.line_id.in_(self._technician_lines()))
        return and_(*conds)

    def _technician_lines(self):  # type: ignore[no-untyped-def]
        assigned = select(t.user_lines.c.line_id).where(t.user_lines.c.user_id == self.principal.user_id)
        tickets = getattr(t, "tickets", None)
        if tickets is not None and "assignee" in tickets.c:
            assigned = assigned.union(select(tickets.c.line_id).where(tickets.c.assignee == self.principal.user_id))
        return assigned

    def can_see_line(self, conn: Connection, line_id: str) -> bool:
        if self.everything:
            return True
        # One primary-key probe of line_state (which carries the registry's tenant), not a scan of the tenant's lines.
        ls = t.line_state.c
        return conn.execute(select(true()).select_from(t.line_state).where(
            ls.line_id == line_id, self.fleet_clause())).first() is not None

    def require_line(self, conn: Connection, line_id: str) -> None:
        if not self.can_see_line(conn, line_id):
            raise HTTPException(status_code=404, detail=f"no line {line_id!r}")

    def agents_clause(self) -> ColumnElement[bool]:
        return self.lines_clause(t.agents.c.line_id)

    def quarantine_clause(self) -> ColumnElement[bool]:
        # Messages that name no valid agent cannot be attributed to a tenant: only the operator sees them.
        if self.everything:
            return true()
        if self.principal.role != Role.CARRIER_ADMIN:
            return false()
        return t.quarantine.c.agent_id.in_(select(t.agents.c.agent_id).where(self.agents_clause()))


def scope_for(engine: Engine, principal: Principal) -> Scope:
    with engine.connect() as conn:
        return Scope.of(conn, principal)
