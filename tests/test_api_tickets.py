"""Tickets through the API: lifecycle with events, verification by evidence, assignment, notes, scope."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.api_support import auth
from tests.factory import envelope, link_check, ping_check
from tests.fleet_data import Fleet


def test_lifecycle_to_verified_with_a_post_repair_check(client: TestClient, fleet: Fleet) -> None:
    tid = fleet.tickets["acme-xuhui-1"]
    h = auth(fleet, "a-tech")  # the technician assigned to this line does the work
    url = f"/api/v1/tickets/{tid}/transition"
    for state in ("acknowledged", "dispatched", "resolved"):
        r = client.post(url, headers=h, json={"to_state": state, "note": f"{state} by tech"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == state
    assert r.json()["next_states"] == ["verified"]
    # Verifying needs evidence: none, a check from before the ticket, then a healthy one after it.
    assert client.post(url, headers=h, json={"to_state": "verified"}).status_code == 409
    old_agent, old_result = fleet.results["acme-xuhui-1"][0]
    r = client.post(url, headers=h, json={"to_state": "verified", "agent_id": old_agent, "result_id": old_result})
    assert r.status_code == 409 and "before the ticket opened" in r.json()["detail"]
    onsite = envelope("acme-gw", "acme-xuhui-1", checks=[link_check(), ping_check()], site_id="acme-xuhui",
                      started_at=datetime.now(UTC))
    fleet.store.ingest([onsite])
    r = client.post(url, headers=h, json={"to_state": "verified", "agent_id": "acme-gw",
                                          "result_id": onsite.result_id, "note": "fixed the splitter"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "verified" and body["verified_at"] and body["next_states"] == []
    assert [e["to_state"] for e in body["events"]] == ["open", "acknowledged", "dispatched", "resolved", "verified"]
    assert {e["actor"] for e in body["events"][1:]} == {"a-tech"}
    assert {(e["result_id"], e["role"]) for e in body["evidence"]} >= {(onsite.result_id, "verify")}


def test_moves_the_lifecycle_does_not_allow_are_refused(client: TestClient, fleet: Fleet) -> None:
    tid = fleet.tickets["tel-jingan-1"]  # acknowledged
    r = client.post(f"/api/v1/tickets/{tid}/transition", headers=auth(fleet, "a-admin"), json={"to_state": "open"})
    assert r.status_code == 409 and "can move to dispatched, resolved" in r.json()["detail"]
    r = client.post(f"/api/v1/tickets/{tid}/transition", headers=auth(fleet, "a-admin"), json={"to_state": "closed"})
    assert r.status_code == 422


def test_who_sees_and_works_which_tickets(client: TestClient, fleet: Fleet) -> None:
    def ids(user: str) -> set[str]:
        return {x["line_id"] for x in client.get("/api/v1/tickets", headers=auth(fleet, user)).json()["items"]}

    assert ids("operator") == {"acme-xuhui-1", "tel-jingan-1", "bravo-pudong-1"}
    assert ids("a-admin") == ids("a-viewer") == {"acme-xuhui-1", "tel-jingan-1"}
    assert ids("a-tech") == {"acme-xuhui-1"} and ids("a-ent") == {"acme-xuhui-1"}
    assert ids("b-tech") == {"bravo-pudong-1"}
    tel = fleet.tickets["tel-jingan-1"]
    assert client.post(f"/api/v1/tickets/{tel}/notes", headers=auth(fleet, "a-tech"), json={"text": "x"}
                       ).status_code == 404
    # The admin gives the tel-jingan ticket to a-tech: now a-tech sees and works it.
    r = client.put(f"/api/v1/tickets/{tel}/assignee", headers=auth(fleet, "a-admin"), json={"assignee": "a-tech"})
    assert r.status_code == 200 and r.json()["assignee"] == "a-tech"
    assert ids("a-tech") == {"acme-xuhui-1", "tel-jingan-1"}
    r = client.post(f"/api/v1/tickets/{tel}/notes", headers=auth(fleet, "a-tech"), json={"text": "on my way"})
    assert r.status_code == 201 and r.json()["events"][-1]["note"] == "on my way"
    # Not to someone outside the tenant, nor to a non-technician.
    for who in ("b-tech", "a-viewer", "nobody"):
        assert client.put(f"/api/v1/tickets/{tel}/assignee", headers=auth(fleet, "a-admin"),
                          json={"assignee": who}).status_code == 422
    # The enterprise reads its ticket but cannot move it.
    acme = fleet.tickets["acme-xuhui-1"]
    assert client.get(f"/api/v1/tickets/{acme}", headers=auth(fleet, "a-ent")).json()["line_id"] == "acme-xuhui-1"
    assert client.post(f"/api/v1/tickets/{acme}/transition", headers=auth(fleet, "a-ent"),
                       json={"to_state": "acknowledged"}).status_code == 403


def test_evidence_must_be_a_result_of_the_tickets_line(client: TestClient, fleet: Fleet) -> None:
    tid = fleet.tickets["acme-xuhui-1"]
    other_agent, other_result = fleet.results["tel-jingan-1"][0]
    r = client.post(f"/api/v1/tickets/{tid}/evidence", headers=auth(fleet, "a-admin"),
                    json={"agent_id": other_agent, "result_id": other_result})
    assert r.status_code == 404
    agent, result = fleet.results["acme-xuhui-1"][3]
    r = client.post(f"/api/v1/tickets/{tid}/evidence", headers=auth(fleet, "a-admin"),
                    json={"agent_id": agent, "result_id": result})
    assert r.status_code == 201 and (result, "attached") in {(e["result_id"], e["role"]) for e in r.json()["evidence"]}


def test_fleet_rows_and_line_detail_show_open_tickets(client: TestClient, fleet: Fleet) -> None:
    rows = client.get("/api/v1/lines", headers=auth(fleet, "a-admin")).json()["items"]
    assert {r["line_id"]: r["open_tickets"] for r in rows} == {"acme-xuhui-1": 1, "acme-xuhui-2": 0,
                                                               "tel-jingan-1": 1}
    detail = client.get("/api/v1/lines/acme-xuhui-1", headers=auth(fleet, "a-ent")).json()
    assert [x["fault_class"] for x in detail["open_tickets"]] == ["packet_loss"]
    csv_body = client.get("/api/v1/exports/tickets.csv", headers=auth(fleet, "b-admin")).text
    assert "bravo-pudong-1" in csv_body and "acme" not in csv_body
