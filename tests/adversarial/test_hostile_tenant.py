"""A hostile tenant: every route of the app (API and console) × role × another tenant's object, and the
registry's tenant tree, which only the operator shapes.

Tenant A (sh-telecom, with its enterprise acme-trading) attacks tenant B (sh-mobile with bravo-foods, the
other carrier) and, for the enterprise and technician roles, a sibling enterprise of its own carrier
(cargo-co, added here). The routes come from `app.routes`: a route with a path parameter this suite does
not know how to aim fails the suite, so a new route cannot skip the matrix.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.api.accounts import Accounts
from collector.fleet import registry
from collector.store import schema as t
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
    from collector.fleet import enrolment
    from collector.fleet.pki import FleetCA
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


# --- every route × role × another tenant's object ---------------------------------------------------------

ROLES = {"carrier_admin": "a-admin", "carrier_viewer": "a-viewer", "technician": "a-tech", "enterprise": "a-ent"}
# A path parameter this suite knows how to aim at a victim's object. A route with any other parameter
# fails `test_every_route_is_in_the_hostile_matrix` until it is taught here.
KNOWN_PARAMS = {"line_id", "agent_id", "result_id", "ticket_id", "promise_id", "token_id", "item_id", "site_id",
                "tenant_id", "user_id"}
# Request bodies for the routes that change something: aimed at the victim with a valid body, so the
# answer is the scope check's and not a validation error. A write route missing here fails the suite.
API_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/tickets/{ticket_id}/transition"): {"to_state": "acknowledged"},
    ("POST", "/api/v1/tickets/{ticket_id}/notes"): {"text": "hostile"},
    ("POST", "/api/v1/tickets/{ticket_id}/evidence"): "evidence",  # the victim's own result, filled in below
    ("PUT", "/api/v1/tickets/{ticket_id}/assignee"): {"assignee": "a-tech"},
    ("POST", "/api/v1/lines/{line_id}/commands"): {"action": "check_now"},
    ("POST", "/api/v1/lines/{line_id}/enrolment-tokens"): {"agent_id": "hostile-gw"},
    ("DELETE", "/api/v1/tokens/{token_id}"): None,
    # Dispatch: sending one's own technician to, arriving at or closing the victim's job.
    ("POST", "/api/v1/dispatch/{ticket_id}/assign"): {"assignee": "a-tech"},
    ("POST", "/api/v1/dispatch/{ticket_id}/arrive"): {"note": "hostile"},
    ("POST", "/api/v1/dispatch/{ticket_id}/close"): {"note": "hostile"},
}
CONSOLE_FORM = {"to_state": "acknowledged", "text": "hostile", "note": "hostile", "agent_id": "hostile-gw",
                "action": "check_now", "assignee": "a-tech"}
# Console forms whose handler acts on the caller's own things by construction (the token must be the
# caller's): they may answer with their usual redirect, and the unchanged victim proves nothing happened.
SELF_SCOPED = {("POST", "/console/account/tokens/{token_id}/revoke")}
# Routes without a path parameter that change something, and the test that aims each at another tenant.
WRITES_WITHOUT_PARAMS = {
    ("POST", "/api/v1/tokens"): "the caller's own token (test_every_api_token_expires_and_none_outlives_its_maker)",
    ("POST", "/api/v1/users"): "tests/test_api_matrix.py: a user in the other carrier's tenant is 403",
    ("POST", "/api/v1/registry"): "test_only_the_operator_shapes_the_tenant_tree_over_the_api and the enrolment test",
    ("POST", "/api/v1/enrol"): "public; the one-time token is the credential (tests/test_security_fleet.py)",
    ("POST", "/console/login"): "public sign-in",
    ("POST", "/console/logout"): "ends the caller's own session",
    ("POST", "/console/account/tokens"): "the caller's own token",
}
PUBLIC_READS = {"/", "/healthz", "/metrics", "/api/openapi.json", "/api/docs", "/api/docs/swagger-init.js",
                "/api/redoc", "/docs", "/redoc",
                "/console/login"}


def _routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, routers included (FastAPI may wrap included routers)."""
    from starlette.routing import Mount

    found: list[tuple[str, str]] = []

    def walk(routes: Any, prefix: str) -> None:
        for r in routes:
            if hasattr(r, "original_router"):
                walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif isinstance(r, Mount):
                continue  # /console/static: files, no tenant data
            else:
                found.extend((m, prefix + r.path) for m in sorted(r.methods or ()) if m != "HEAD")

    walk(app.routes, "")
    return found


def _params(path: str) -> list[str]:
    import re

    return re.findall(r"{([a-z_]+)}", path)


def _add_sibling_enterprise(fleet: Fleet) -> dict[str, Any]:
    """cargo-co: an enterprise of carrier A beside acme-trading, with a line, gateway, result, ticket,
    promise, quarantined message and user of its own."""
    from collector.promises import ledger
    from collector.promises.criterion import PromisePolicy
    from collector.promises.model import SpeedPromise
    from collector.store.database import Quarantined
    from collector.tickets import lifecycle as tickets
    from tests.factory import envelope, ping_check, throughput_check

    with fleet.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "cargo-co", "name": "Cargo Shipping", "kind": "enterprise",
                         "parent_id": "sh-telecom"}],
            "sites": [{"site_id": "cargo-yard", "tenant_id": "cargo-co", "name": "Cargo yard", "district": "Baoshan"}],
            "lines": [{"line_id": "cargo-1", "tenant_id": "cargo-co", "site_id": "cargo-yard", "name": "Cargo line",
                       "plan_down_mbps": 300}],
            "agents": [{"agent_id": "cargo-gw", "line_id": "cargo-1"}]}), source="sibling")
    e = envelope("cargo-gw", "cargo-1", checks=[ping_check(), throughput_check(280.0, 100.0)], site_id="cargo-yard",
                 started_at=datetime.now(UTC) - timedelta(hours=2))
    fleet.store.ingest([e], [Quarantined("linecheck/v1/agents/cargo-gw/results", "cargo-gw", "schema: seq: missing",
                                         b'{"cargo":1}')])
    with fleet.engine.begin() as conn:
        ticket = tickets.open_ticket(conn, line_id="cargo-1", fault_class="line_down", summary="cargo outage",
                                     evidence=[("cargo-gw", e.result_id)], agent_id="cargo-gw").ticket_id
        ledger.import_promises(conn, [SpeedPromise(id="cargo-1-speed", line_id="cargo-1", down_mbps=300,
                                                   effective=(datetime.now(UTC) - timedelta(days=5)).date())],
                               source="sibling")
        ledger.save_verdicts(conn, ledger.judge(conn, PromisePolicy()))
        item = conn.execute(select(t.quarantine.c.id).where(t.quarantine.c.agent_id == "cargo-gw")).scalar()
    accounts = Accounts(fleet.engine)
    accounts.create_user("c-ent", "enterprise", "cargo-co", password="correct-horse-battery")
    token_id, _ = accounts.issue_token("c-ent", name="cargo", ttl=timedelta(days=1))
    return {"line_id": "cargo-1", "agent_id": "cargo-gw", "result_id": e.result_id, "ticket_id": ticket,
            "promise_id": "cargo-1-speed", "token_id": token_id, "item_id": item, "site_id": "cargo-yard",
            "tenant_id": "cargo-co", "user_id": "c-ent",
            "markers": ("cargo", "Cargo", "Baoshan", e.result_id)}


def _other_carrier(fleet: Fleet) -> dict[str, Any]:
    agent_id, result_id = fleet.results["bravo-pudong-1"][0]
    token_id, _ = Accounts(fleet.engine).issue_token("b-admin", name="victim", ttl=timedelta(days=1))
    return {"line_id": "bravo-pudong-1", "agent_id": agent_id, "result_id": result_id,
            "ticket_id": fleet.tickets["bravo-pudong-1"], "promise_id": "bravo-pudong-1-speed", "token_id": token_id,
            "item_id": fleet.quarantine_ids["bravo-gw"], "site_id": "bravo-pudong", "tenant_id": "bravo-foods",
            "user_id": "b-ent",
            "markers": ("bravo", "Bravo", "sh-mobile", "Shanghai Mobile", "Pudong", "b-admin", "b-tech", result_id)}


def _victim_state(fleet: Fleet, lines: list[str]) -> Any:
    """Everything a hostile call could have changed about the victims' lines and accounts."""
    with fleet.engine.connect() as conn:
        tk = t.tickets.c
        state = {
            "tickets": sorted(map(tuple, conn.execute(select(tk.ticket_id, tk.state, tk.assignee)
                                                      .where(tk.line_id.in_(lines))).all())),
            "agents": sorted(map(tuple, conn.execute(select(t.agents.c.agent_id, t.agents.c.line_id)).all())),
            "tenants": sorted(map(tuple, conn.execute(select(t.tenants.c.tenant_id, t.tenants.c.parent_id,
                                                             t.tenants.c.kind)).all())),
            "tokens": sorted(map(tuple, conn.execute(select(t.api_tokens.c.token_id, t.api_tokens.c.revoked_at)
                                                     .where(t.api_tokens.c.user_id.in_(["b-admin", "c-ent"]))).all())),
            "enrolment_tokens": conn.execute(select(t.enrolment_tokens.c.agent_id)
                                             .where(t.enrolment_tokens.c.line_id.in_(lines))).all(),
        }
        events = getattr(t, "ticket_events", None)
        if events is not None:
            state["events"] = conn.execute(select(events.c.ticket_id).where(events.c.ticket_id.in_(
                select(tk.ticket_id).where(tk.line_id.in_(lines))))).all()
    return state


def test_every_route_is_in_the_hostile_matrix(client: TestClient) -> None:
    unknown = []
    for method, path in _routes(client.app):
        params = _params(path)
        if any(p not in KNOWN_PARAMS for p in params):
            unknown.append(f"{method} {path}: parameters {params} (teach KNOWN_PARAMS and the victims)")
        elif params and method != "GET" and path.startswith("/api/") and (method, path) not in API_BODIES:
            unknown.append(f"{method} {path}: add its body to API_BODIES")
        elif not params and method != "GET" and (method, path) not in WRITES_WITHOUT_PARAMS:
            unknown.append(f"{method} {path}: say in WRITES_WITHOUT_PARAMS which test aims it at another tenant")
    assert not unknown, "routes the hostile tenant suite does not cover:\n" + "\n".join(unknown)


def test_hostile_tenant_matrix(client: TestClient, fleet: Fleet, sender: Any) -> None:
    """Each role of tenant A, against carrier B's objects and (for the roles scoped below the carrier) against a
    sibling enterprise's: 403 or 404, none of the victim's data in the answer, and nothing of the victim changed."""
    sibling = _add_sibling_enterprise(fleet)
    other = _other_carrier(fleet)
    victims_lines = ["bravo-pudong-1", "cargo-1"]
    before = _victim_state(fleet, victims_lines)
    tokens = {role: {"Authorization": f"Bearer {fleet.tokens[user]}"} for role, user in ROLES.items()}
    failures: list[str] = []
    calls = 0

    def leaked(body: str, victim: dict[str, Any], sent: str) -> list[str]:
        return [m for m in victim["markers"] if m in body and m not in sent]

    routes = _routes(client.app)
    for role, user in ROLES.items():
        r = client.post("/console/login", data={"user": user, "password": "correct-horse-battery"},
                        follow_redirects=False)
        assert r.status_code == 303
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/console/account").text).group(1)
        victims = [("other carrier", other)]
        if role in ("technician", "enterprise"):
            victims.append(("sibling enterprise", sibling))
        for method, path in routes:
            params = _params(path)
            for label, victim in victims:
                if not params:
                    if method != "GET" or path in PUBLIC_READS:
                        continue
                    # Lists, exports and console pages: answered (or refused), never with the victim in them.
                    resp = client.get(path, headers=tokens[role] if path.startswith("/api/") else {})
                    calls += 1
                    if leaked(resp.text, victim, path):
                        failures.append(f"{role} GET {path}: shows {label}'s {leaked(resp.text, victim, path)}")
                    continue
                url = path.format(**{p: victim[p] for p in params})
                calls += 1
                if path.startswith("/api/"):
                    body = API_BODIES.get((method, path))
                    if body == "evidence":
                        body = {"agent_id": victim["agent_id"], "result_id": victim["result_id"]}
                    resp = client.request(method, url, headers=tokens[role], json=body)
                    ok = resp.status_code in (403, 404)
                elif method == "GET":
                    resp = client.get(url, follow_redirects=False)
                    ok = resp.status_code in (403, 404)
                else:
                    resp = client.post(url, data={"csrf": csrf, **CONSOLE_FORM}, follow_redirects=False)
                    ok = resp.status_code in (403, 404) or ((method, path) in SELF_SCOPED and resp.status_code == 303)
                if not ok:
                    failures.append(f"{role} {method} {url} ({label}): {resp.status_code} {resp.text[:100]}")
                if leaked(resp.text, victim, url):
                    failures.append(f"{role} {method} {url} ({label}): shows {leaked(resp.text, victim, url)}")
    assert not failures, "\n".join(failures)
    assert _victim_state(fleet, victims_lines) == before, "a hostile call changed the victim's data"
    assert not [s for s in sender.sent if s[0] in ("bravo-gw", "cargo-gw")], "a command reached a victim's gateway"
    assert calls > 200
