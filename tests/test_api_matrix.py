"""Authorisation matrix: every API operation × every role × own/other tenant (and no token at all).

The operations come from the published OpenAPI document, so a new endpoint without a row in
CASES fails here. Each row states independently of the code which roles may call it and how
to aim it at a resource of the caller's own tenant and at one of the other carrier's tenants.
A resource outside the caller's scope must answer 404 (not revealing that it exists); a list
aimed at the other tenant must come back without any of its identifiers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from collector.api.accounts import Accounts
from tests.api_support import auth
from tests.fleet_data import Fleet

ROLES = ("carrier_admin", "carrier_viewer", "technician", "enterprise")
USER = {("a", "carrier_admin"): "a-admin", ("a", "carrier_viewer"): "a-viewer", ("a", "technician"): "a-tech",
        ("a", "enterprise"): "a-ent", ("b", "carrier_admin"): "b-admin"}
ALL = set(ROLES)
ADMIN = {"carrier_admin"}
ACTORS = {"carrier_admin", "technician", "enterprise"}
OTHER_MARKERS = ("bravo", "sh-mobile", "b-admin", "b-viewer", "b-tech", "b-ent")
# Routes deliberately open to anyone (the one-time token or nothing is the credential).
PUBLIC = {("POST", "/api/v1/enrol")}


@dataclass
class Case:
    roles: set[str]
    # kind: "resource" (other -> 404), "list" (other -> 200 without the other tenant), "self" (no tenant
    # dimension: the caller's own things), "forbidden_other" (other -> 403: naming a tenant not yours)
    kind: str
    request: Callable[[Fleet, str, str], dict[str, Any]]  # (fleet, "own"|"other", user) -> path/params/json
    other_status: int = 403  # for "forbidden_other": what aiming at the other tenant must answer


def line(side: str) -> str:
    return "acme-xuhui-1" if side == "own" else "bravo-pudong-1"


def result_of(fleet: Fleet, side: str) -> str:
    agent, rid = fleet.results[line(side)][0]
    return f"{agent}/{rid}"


def _token_of(fleet: Fleet, side: str, user: str) -> dict[str, Any]:
    owner = user if side == "own" else "b-admin"
    token_id, _ = Accounts(fleet.engine).issue_token(owner, name="matrix")
    return {"path": {"token_id": token_id}}


_ids = itertools.count()
WORKERS = {"carrier_admin", "technician"}


def _fresh_ticket(fleet: Fleet, side: str) -> int:
    """A new open ticket on the side's line, so each call of a state-changing route has one to change."""
    from collector.tickets import lifecycle as tickets

    with fleet.engine.begin() as conn:
        return tickets.open_ticket(conn, line_id=line(side), fault_class=f"matrix_{next(_ids)}",
                                   summary="matrix").ticket_id


def _dispatched_ticket(fleet: Fleet, side: str) -> int:
    """A fresh ticket a crew was sent to (a crew can only arrive at a dispatched job)."""
    from collector.tickets import lifecycle as tickets

    ticket_id = _fresh_ticket(fleet, side)
    with fleet.engine.begin() as conn:
        tickets.transition(conn, ticket_id, "dispatched", "matrix")
    return ticket_id


def ticket(fleet: Fleet, side: str, **body: Any) -> dict[str, Any]:
    return {"path": {"ticket_id": _fresh_ticket(fleet, side)}, "json": body or None}

CASES: dict[tuple[str, str], Case] = {
    ("GET", "/api/v1/me"): Case(ALL, "self", lambda f, s, u: {}),
    ("GET", "/api/v1/overview"): Case(ALL, "self", lambda f, s, u: {}),
    ("GET", "/api/v1/lines"): Case(ALL, "list", lambda f, s, u: {"params": {"tenant": "bravo-foods"} if s == "other"
                                                                 else {}}),
    ("GET", "/api/v1/lines/{line_id}"): Case(ALL, "resource", lambda f, s, u: {"path": {"line_id": line(s)}}),
    ("GET", "/api/v1/lines/{line_id}/results"): Case(ALL, "resource", lambda f, s, u: {"path": {"line_id": line(s)}}),
    ("GET", "/api/v1/lines/{line_id}/findings"): Case(ALL, "resource",
                                                      lambda f, s, u: {"path": {"line_id": line(s)}}),
    ("GET", "/api/v1/lines/{line_id}/series"): Case(ALL, "resource", lambda f, s, u: {"path": {"line_id": line(s)}}),
    ("GET", "/api/v1/results/{agent_id}/{result_id}"): Case(
        ALL, "resource", lambda f, s, u: {"raw_path": "/api/v1/results/" + result_of(f, s)}),
    ("GET", "/api/v1/agents"): Case(ALL, "list", lambda f, s, u: {"params": {"q": "bravo"} if s == "other" else {}}),
    ("GET", "/api/v1/test-servers"): Case(ALL, "list", lambda f, s, u: {}),
    ("GET", "/api/v1/quarantine"): Case(ADMIN, "list", lambda f, s, u: {"params": {"agent_id": "bravo-gw"}
                                                                         if s == "other" else {}}),
    ("GET", "/api/v1/quarantine/{item_id}"): Case(
        ADMIN, "resource", lambda f, s, u: {"path": {"item_id": f.quarantine_ids["acme-gw" if s == "own"
                                                                                  else "bravo-gw"]}}),
    ("POST", "/api/v1/lines/{line_id}/commands"): Case(
        ACTORS, "resource", lambda f, s, u: {"path": {"line_id": line(s)}, "json": {"action": "check_now"}}),
    ("GET", "/api/v1/tokens"): Case(ALL, "self", lambda f, s, u: {}),
    ("POST", "/api/v1/tokens"): Case(ALL, "self", lambda f, s, u: {"json": {"name": "matrix"}}),
    ("DELETE", "/api/v1/tokens/{token_id}"): Case(ALL, "resource", _token_of),
    ("GET", "/api/v1/users"): Case(ADMIN, "list", lambda f, s, u: {}),
    ("POST", "/api/v1/users"): Case(ADMIN, "forbidden_other", lambda f, s, u: {"json": {
        "user_id": f"m{next(_ids)}", "role": "carrier_viewer",
        "tenant_id": "sh-telecom" if s == "own" else "sh-mobile"}}),
    ("GET", "/api/v1/tickets"): Case(ALL, "list", lambda f, s, u: {"params": {"line_id": "bravo-pudong-1"}
                                                                   if s == "other" else {}}),
    ("GET", "/api/v1/tickets/{ticket_id}"): Case(ALL, "resource", lambda f, s, u: {"path": {"ticket_id": f.tickets[
        line(s)]}}),
    ("POST", "/api/v1/tickets/{ticket_id}/transition"): Case(WORKERS, "resource",
                                                             lambda f, s, u: ticket(f, s, to_state="acknowledged")),
    ("POST", "/api/v1/tickets/{ticket_id}/notes"): Case(WORKERS, "resource", lambda f, s, u: ticket(f, s, text="hi")),
    ("POST", "/api/v1/tickets/{ticket_id}/evidence"): Case(WORKERS, "resource", lambda f, s, u: ticket(
        f, s, agent_id=f.results[line(s)][0][0], result_id=f.results[line(s)][0][1])),
    ("PUT", "/api/v1/tickets/{ticket_id}/assignee"): Case(ADMIN, "resource",
                                                          lambda f, s, u: ticket(f, s, assignee="a-tech")),
    ("GET", "/api/v1/exports/tickets.csv"): Case(ALL, "list", lambda f, s, u: {}),
    ("GET", "/api/v1/dispatch"): Case(ALL, "list", lambda f, s, u: {"params": {"district": "pudong"}
                                                                    if s == "other" else {}}),
    ("GET", "/api/v1/dispatch/{ticket_id}"): Case(ALL, "resource", lambda f, s, u: {"path": {"ticket_id": f.tickets[
        line(s)]}}),
    ("POST", "/api/v1/dispatch/{ticket_id}/assign"): Case(ADMIN, "resource",
                                                         lambda f, s, u: ticket(f, s, assignee="a-tech")),
    ("POST", "/api/v1/dispatch/{ticket_id}/arrive"): Case(WORKERS, "resource", lambda f, s, u: {
        "path": {"ticket_id": _dispatched_ticket(f, s)}, "json": {"note": "on site"}}),
    ("POST", "/api/v1/dispatch/{ticket_id}/close"): Case(WORKERS, "resource",
                                                        lambda f, s, u: ticket(f, s, note="done")),
    ("GET", "/api/v1/promises/verdicts"): Case(ALL, "list", lambda f, s, u: {"params": {"line_id": "bravo-pudong-1"}
                                                                              if s == "other" else {}}),
    ("GET", "/api/v1/promises/compliance"): Case(ALL, "list", lambda f, s, u: {"params": {
        "by": "tenant", **({"tenant": "bravo-foods"} if s == "other" else {})}}),
    ("GET", "/api/v1/lines/{line_id}/promises"): Case(ALL, "resource", lambda f, s, u: {"path": {"line_id": line(s)}}),
    ("GET", "/api/v1/exports/promises.csv"): Case(ALL, "list", lambda f, s, u: {}),
    ("GET", "/api/v1/registry"): Case(ADMIN, "list", lambda f, s, u: {}),
    # Importing into your tenants works; taking over the other carrier's line by its id does not.
    ("POST", "/api/v1/registry"): Case(ADMIN, "forbidden_other", lambda f, s, u: {"content": (
        f"sites: [{{site_id: m-site-{next(_ids)}, tenant_id: acme-trading}}]\n" if s == "own" else
        "lines: [{line_id: bravo-pudong-1, tenant_id: acme-trading, site_id: acme-xuhui}]\n")}, other_status=422),
    ("GET", "/api/v1/exports/lines.csv"): Case(ALL, "list", lambda f, s, u: {}),
    ("POST", "/api/v1/lines/{line_id}/enrolment-tokens"): Case(WORKERS, "resource", lambda f, s, u: {
        "path": {"line_id": line(s)}, "json": {"agent_id": f"m-gw-{next(_ids)}"}}),
    ("GET", "/api/v1/exports/results.csv"): Case(ALL, "list", lambda f, s, u: {
        "params": {"line_id": "bravo-pudong-1"} if s == "other" else {}}),
}


def _operations(client: TestClient) -> list[tuple[str, str, list[str] | None]]:
    spec = client.get("/api/openapi.json").json()
    return [(method.upper(), path, op.get("x-roles")) for path, item in spec["paths"].items()
            if path.startswith("/api/") for method, op in item.items()]


def _call(client: TestClient, method: str, path: str, req: dict[str, Any], headers: dict[str, str]) -> Any:
    url = req.get("raw_path") or path.format(**req.get("path", {}))
    if "content" in req:
        return client.request(method, url, params=req.get("params"), content=req["content"],
                              headers={**headers, "Content-Type": "application/yaml"})
    return client.request(method, url, params=req.get("params"), json=req.get("json"), headers=headers)


def test_every_operation_has_a_row_and_publishes_its_roles(client: TestClient) -> None:
    ops = _operations(client)
    missing = [(m, p) for m, p, _ in ops if (m, p) not in CASES and (m, p) not in PUBLIC]
    assert not missing, f"add these operations to the authorisation matrix: {missing}"
    stale = set(CASES) - {(m, p) for m, p, _ in ops}
    assert not stale, f"rows for operations that no longer exist: {stale}"
    for method, path, roles in ops:
        if (method, path) in CASES:
            assert set(roles or ()) == CASES[(method, path)].roles, (method, path, roles)


def test_matrix(client: TestClient, fleet: Fleet) -> None:
    failures: list[str] = []
    checked = 0
    for method, path, _ in _operations(client):
        if (method, path) in PUBLIC:
            continue
        case = CASES[(method, path)]
        r = _call(client, method, path, case.request(fleet, "own", "a-admin"), {})
        if r.status_code != 401:
            failures.append(f"{method} {path} without a token: {r.status_code}")
        for role, side in itertools.product(ROLES, ("own", "other")):
            user = USER[("a", role)]
            r = _call(client, method, path, case.request(fleet, side, user), auth(fleet, user))
            checked += 1
            body = r.text
            if role not in case.roles:
                ok = r.status_code == 403
            elif side == "own" or case.kind == "self":
                ok = 200 <= r.status_code < 300
            elif case.kind == "resource":
                ok = r.status_code == 404
            elif case.kind == "forbidden_other":
                ok = r.status_code == case.other_status
            else:  # a list aimed at the other tenant: answered, but empty of it
                ok = r.status_code == 200 and not any(m in body for m in OTHER_MARKERS)
            if 200 <= r.status_code < 300 and any(m in body for m in OTHER_MARKERS):
                ok = False  # nothing of the other carrier ever leaks, whatever the case
            if not ok:
                failures.append(f"{method} {path} as {role} ({side}): {r.status_code} {body[:120]}")
    assert not failures, "\n".join(failures)
    assert checked == 8 * (len(CASES))


@pytest.mark.parametrize("path", ["/api/v1/lines", "/api/v1/agents", "/api/v1/exports/lines.csv"])
def test_operator_sees_both_carriers(client: TestClient, fleet: Fleet, path: str) -> None:
    body = client.get(path, headers=auth(fleet, "operator")).text
    assert "bravo" in body and "acme" in body
