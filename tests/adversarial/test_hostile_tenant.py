"""A hostile tenant: every route of the app (API and console) × role × another tenant's object, and the
registry's tenant tree, which only the operator shapes.

Tenant A (sh-telecom, with its enterprise acme-trading) attacks tenant B (sh-mobile with bravo-foods, the
other carrier) and, for the enterprise and technician roles, a sibling enterprise of its own carrier
(cargo-co, added here). The routes come from `app.routes`: a route with a path parameter this suite does
not know how to aim fails the suite, so a new route cannot skip the matrix.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector import registry
from collector import schema as t
from collector.api.accounts import Accounts
from linecheck.configfile import ConfigError
from tests.api_support import auth
from tests.fleet_data import Fleet

YAML = {"Content-Type": "application/yaml"}


def _tenants(fleet: Fleet) -> dict[str, tuple[str, str | None, str]]:
    with fleet.engine.connect() as conn:
        return {r.tenant_id: (r.kind, r.parent_id, r.name) for r in conn.execute(select(t.tenants))}


def _admin_of(fleet: Fleet, user_id: str, tenant_id: str) -> dict[str, str]:
    """A carrier admin whose account is scoped to `tenant_id` (e.g. an enterprise sub-tenant)."""
    accounts = Accounts(fleet.engine)
    accounts.create_user(user_id, "carrier_admin", tenant_id)
    return {"Authorization": f"Bearer {accounts.issue_token(user_id, name='t', ttl=None)[1]}"}


# --- the registry's tenant tree ------------------------------------------------------------------

REPARENTS = [
    # (who, document): each one would move a tenant into another carrier's sight or make a carrier.
    ("sub", "tenants: [{tenant_id: acme-trading, name: Acme Trading, kind: enterprise, parent_id: sh-mobile}]\n"),
    ("sub", "tenants: [{tenant_id: acme-trading, name: Acme Trading, kind: carrier}]\n"),
    ("sub", "tenants: [{tenant_id: acme-spinoff, name: Spin, kind: enterprise, parent_id: acme-trading}]\n"),
    ("a-admin", "tenants: [{tenant_id: acme-trading, name: Acme Trading, kind: enterprise, parent_id: sh-mobile}]\n"),
    ("a-admin", "tenants: [{tenant_id: acme-trading, name: Acme Trading, kind: carrier}]\n"),
    ("a-admin", "tenants: [{tenant_id: sh-telecom, name: Shanghai Telecom, kind: enterprise, parent_id: sh-mobile}]\n"),
    ("a-admin", "tenants: [{tenant_id: new-carrier, name: New, kind: carrier}]\n"),
    ("a-admin", "tenants: [{tenant_id: bravo-foods, name: Bravo Foods, kind: enterprise, parent_id: sh-telecom}]\n"),
    ("a-admin", "tenants: [{tenant_id: sh-mobile, name: Owned, kind: carrier}]\n"),
]


@pytest.mark.parametrize(("who", "doc"), REPARENTS)
def test_only_the_operator_shapes_the_tenant_tree_over_the_api(client: TestClient, fleet: Fleet, who: str,
                                                               doc: str) -> None:
    before = _tenants(fleet)
    headers = _admin_of(fleet, "acme-sub-admin", "acme-trading") if who == "sub" else auth(fleet, who)
    r = client.post("/api/v1/registry", headers={**headers, **YAML}, content=doc)
    assert r.status_code == 422, r.text
    assert _tenants(fleet) == before
    b_lines = client.get("/api/v1/lines", headers=auth(fleet, "b-admin")).text
    assert "acme" not in b_lines


def test_a_carrier_admin_still_edits_enterprises_of_its_own_carrier(client: TestClient, fleet: Fleet) -> None:
    h = {**auth(fleet, "a-admin"), **YAML}
    doc = ("tenants: [{tenant_id: acme-trading, name: Acme Trading Ltd, kind: enterprise, parent_id: sh-telecom},"
           " {tenant_id: cargo-co, name: Cargo, kind: enterprise, parent_id: sh-telecom}]\n")
    assert client.post("/api/v1/registry", headers=h, content=doc).status_code == 200, doc
    tenants = _tenants(fleet)
    assert tenants["acme-trading"] == ("enterprise", "sh-telecom", "Acme Trading Ltd")
    assert tenants["cargo-co"] == ("enterprise", "sh-telecom", "Cargo")
    # Its own export round-trips (the carrier's own row unchanged is no change).
    exported = client.get("/api/v1/registry", headers=auth(fleet, "a-admin")).text
    assert client.post("/api/v1/registry", headers=h, content=exported).status_code == 200
    # The operator may re-parent and create carriers.
    op = {**auth(fleet, "operator"), **YAML}
    doc = "tenants: [{tenant_id: cargo-co, name: Cargo, kind: enterprise, parent_id: sh-mobile}]\n"
    assert client.post("/api/v1/registry", headers=op, content=doc).status_code == 200
    assert _tenants(fleet)["cargo-co"][1] == "sh-mobile"


def test_registry_import_refuses_tree_changes_from_a_scoped_caller(fleet: Fleet) -> None:
    data = registry.Registry.model_validate(yaml.safe_load(REPARENTS[0][1]))
    with fleet.engine.begin() as conn:
        with pytest.raises(ConfigError) as refused:
            registry.import_registry(conn, data, source="t.yaml", scope={"acme-trading"}, caller_tenant="acme-trading")
        assert any("parent_id" in p and "operator" in p for p in refused.value.problems)
        scope = registry.tenant_scope(conn, "sh-telecom")
        as_carrier = registry.Registry.model_validate(yaml.safe_load(REPARENTS[4][1]))
        assert any("kind" in p for p in registry.check(conn, as_carrier, "t.yaml", scope, "sh-telecom"))
        assert registry.check(conn, data, "t.yaml") == []  # the operator (no scope) may re-parent


# --- enrolment answers: one bit, the same bit whoever holds the id ---------------------------------------

NAMES_OF_A = ("acme-xuhui", "sh-telecom", "acme-trading", "tel-jingan")  # A's lines, sites and tenants


def test_enrolment_answers_tell_one_bit_and_the_same_bit_whoever_holds_the_id(client: TestClient,
                                                                              fleet: Fleet) -> None:
    a, b = auth(fleet, "a-admin"), auth(fleet, "b-admin")
    assert client.post("/api/v1/lines/acme-xuhui-2/enrolment-tokens", headers=a,
                       json={"agent_id": "acme-pending-gw"}).status_code == 201
    answers = {}
    for agent_id in ("acme-gw", "acme-pending-gw"):  # bound to A's line; promised to A's line by a token
        r = client.post("/api/v1/lines/bravo-pudong-1/enrolment-tokens", headers=b, json={"agent_id": agent_id})
        assert r.status_code == 409
        answers[agent_id] = r.json()["detail"].replace(agent_id, "<id>")
        assert not any(name in r.text for name in NAMES_OF_A), r.text
    assert len(set(answers.values())) == 1, answers
    assert client.post("/api/v1/lines/bravo-pudong-1/enrolment-tokens", headers=b,
                       json={"agent_id": "free-gw"}).status_code == 201
    # The registry gives the same one bit, for a bound id and for a pending one alike.
    imports = {}
    for agent_id in ("acme-gw", "acme-pending-gw"):
        r = client.post("/api/v1/registry", headers={**b, **YAML},
                        content=f"agents: [{{agent_id: {agent_id}, line_id: bravo-pudong-1}}]\n")
        assert r.status_code == 422, (agent_id, r.text)
        imports[agent_id] = str(r.json()["detail"]).replace(agent_id, "<id>")
        assert not any(name in r.text for name in NAMES_OF_A), r.text
    assert len(set(imports.values())) == 1, imports
    with fleet.engine.connect() as conn:
        bound = dict(conn.execute(select(t.agents.c.agent_id, t.agents.c.line_id)).all())
    assert bound["acme-gw"] == "acme-xuhui-1" and "acme-pending-gw" not in bound


def test_redeeming_never_moves_a_gateway_bound_elsewhere_since_the_token(fleet: Fleet, tmp_path: Path) -> None:
    from collector import enrolment
    from collector.pki import FleetCA
    from linecheck.identity import make_csr, new_key

    ca = FleetCA.open_or_create(tmp_path / "ca")
    issued = enrolment.issue_token(fleet.engine, "late-gw", "acme-xuhui-2", "acme-xuhui")
    # Meanwhile the operator puts that id on carrier B's line.
    with fleet.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate(
            {"agents": [{"agent_id": "late-gw", "line_id": "bravo-pudong-1"}]}), source="op.yaml")
    with pytest.raises(enrolment.EnrolmentError, match="taken by another line"):
        enrolment.redeem(fleet.engine, ca, issued.token, make_csr("late-gw", new_key()))
    with fleet.engine.connect() as conn:
        assert conn.execute(select(t.agents.c.line_id).where(t.agents.c.agent_id == "late-gw")).scalar() == \
            "bravo-pudong-1"
        assert conn.execute(select(t.agent_certificates.c.serial).where(
            t.agent_certificates.c.agent_id == "late-gw")).first() is None
