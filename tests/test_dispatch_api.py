"""Dispatch over HTTP (issue 24 item 3): the queue and work order answer, a crew is only a technician of
the caller's own tenants (hostile: the other carrier's technician is refused), and the steps are audited."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api_support import auth
from tests.fleet_data import Fleet


def test_queue_work_order_and_crew_steps(client: TestClient, fleet: Fleet) -> None:
    h = auth(fleet, "a-admin")
    ticket_id = fleet.tickets["acme-xuhui-1"]
    jobs = client.get("/api/v1/dispatch", headers=h).json()
    assert ticket_id in [j["ticket_id"] for j in jobs["items"]]
    assert all(j["kind"] == "line" and j["score"] > 0 and j["why"] for j in jobs["items"])
    order = client.get(f"/api/v1/dispatch/{ticket_id}", headers=h).json()
    assert order["lines"][0]["line_id"] == "acme-xuhui-1"

    # Hostile: a technician of the other carrier, an admin, a name that is no user: 422, nothing recorded.
    for who in ("b-tech", "a-viewer", "nobody"):
        r = client.post(f"/api/v1/dispatch/{ticket_id}/assign", headers=h, json={"assignee": who})
        assert r.status_code == 422, (who, r.text)
    r = client.post(f"/api/v1/dispatch/{ticket_id}/assign", headers=h, json={"assignee": "a-tech; drop table"})
    assert r.status_code == 422
    assert "assigned" not in [e["kind"] for e in client.get(f"/api/v1/dispatch/{ticket_id}", headers=h)
                               .json()["trail"]]

    assert client.post(f"/api/v1/dispatch/{ticket_id}/arrive", headers=h, json={}).status_code == 409
    r = client.post(f"/api/v1/dispatch/{ticket_id}/assign", headers=h, json={"assignee": "a-tech"})
    assert r.status_code == 200 and r.json()["assignee"] == "a-tech" and r.json()["state"] == "dispatched"
    t = auth(fleet, "a-tech")
    r = client.post(f"/api/v1/dispatch/{ticket_id}/arrive", headers=t, json={"note": "at the office"})
    assert r.status_code == 200
    r = client.post(f"/api/v1/dispatch/{ticket_id}/close", headers=t, json={"note": "cable replaced"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    trail = [(e["kind"], e["actor"]) for e in r.json()["trail"]]
    assert trail[-5:] == [("assigned", "a-admin"), ("dispatched", "a-admin"), ("arrived", "a-tech"),
                          ("closed", "a-tech"), ("resolved", "a-tech")]
    assert ticket_id not in [j["ticket_id"] for j in client.get("/api/v1/dispatch", headers=h).json()["items"]]
