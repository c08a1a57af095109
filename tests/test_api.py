"""The HTTP API on a seeded two-carrier fleet: authentication, tenant scoping, paging, filters, exports."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.api.accounts import Accounts, verify_password
from collector.store import schema as t
from tests.api_support import RecordingSender, auth
from tests.factory import envelope, link_check, throughput_check
from tests.fleet_data import PASSWORD, Fleet


def _lines(client: TestClient, fleet: Fleet, user: str, **params: object) -> list[str]:
    r = client.get("/api/v1/lines", headers=auth(fleet, user), params=params)
    assert r.status_code == 200, r.text
    return [x["line_id"] for x in r.json()["items"]]


def test_unauthenticated_and_bad_tokens_are_refused(client: TestClient, fleet: Fleet) -> None:
    assert client.get("/api/v1/lines").status_code == 401
    good = fleet.tokens["a-admin"]
    for bad in ("", "lc_x", good[:-1] + ("A" if good[-1] != "A" else "B"), "Bearer", good.replace("lc_", "xx_")):
        r = client.get("/api/v1/lines", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad


def test_tokens_and_passwords_are_stored_hashed(fleet: Fleet) -> None:
    token = fleet.tokens["a-admin"]
    token_id, secret = token.split("_", 2)[1:]
    with fleet.engine.connect() as conn:
        row = conn.execute(select(t.api_tokens).where(t.api_tokens.c.token_id == token_id)).mappings().one()
        user = conn.execute(select(t.users).where(t.users.c.user_id == "a-admin")).mappings().one()
        dump = "\n".join(str(v) for table in (t.api_tokens, t.users) for r in conn.execute(select(table))
                         for v in r)
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in dump and PASSWORD not in dump
    assert user["password_hash"].startswith("scrypt$") and verify_password(PASSWORD, user["password_hash"])
    assert not verify_password(PASSWORD + "x", user["password_hash"])


def test_revoked_and_expired_tokens_stop_working(client: TestClient, fleet: Fleet) -> None:
    accounts = Accounts(fleet.engine)
    token_id, token = accounts.issue_token("a-viewer", name="short", ttl=timedelta(seconds=-1))
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    r = client.post("/api/v1/tokens", headers=auth(fleet, "a-viewer"), json={"name": "laptop"})
    assert r.status_code == 201
    fresh = r.json()["token"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh}"}).json()["user_id"] == "a-viewer"
    listed = client.get("/api/v1/tokens", headers=auth(fleet, "a-viewer")).json()
    assert all("secret" not in k and fresh not in str(v) for row in listed for k, v in row.items())
    # Someone else cannot revoke it; its owner can.
    assert client.delete(f"/api/v1/tokens/{r.json()['token_id']}", headers=auth(fleet, "b-admin")).status_code == 404
    assert client.delete(f"/api/v1/tokens/{r.json()['token_id']}", headers=auth(fleet, "a-viewer")).status_code == 204
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 401


def test_each_role_sees_exactly_its_lines(client: TestClient, fleet: Fleet) -> None:
    everything = ["acme-xuhui-1", "acme-xuhui-2", "bravo-pudong-1", "tel-jingan-1"]
    assert _lines(client, fleet, "operator") == everything
    assert _lines(client, fleet, "a-admin") == ["acme-xuhui-1", "acme-xuhui-2", "tel-jingan-1"]
    assert _lines(client, fleet, "a-viewer") == ["acme-xuhui-1", "acme-xuhui-2", "tel-jingan-1"]
    assert _lines(client, fleet, "a-tech") == ["acme-xuhui-1"]
    assert _lines(client, fleet, "a-ent") == ["acme-xuhui-1", "acme-xuhui-2"]
    assert _lines(client, fleet, "b-admin") == ["bravo-pudong-1"]
    assert _lines(client, fleet, "b-ent") == ["bravo-pudong-1"]
    # Filters cannot widen the scope: asking for the other tenant gives nothing.
    assert _lines(client, fleet, "a-admin", tenant="bravo-foods") == []
    assert client.get("/api/v1/lines/bravo-pudong-1", headers=auth(fleet, "a-admin")).status_code == 404
    assert client.get("/api/v1/lines/acme-xuhui-2", headers=auth(fleet, "a-tech")).status_code == 404


def test_pagination_filters_and_health(client: TestClient, fleet: Fleet) -> None:
    h = auth(fleet, "operator")
    first = client.get("/api/v1/lines", headers=h, params={"per_page": 3}).json()
    second = client.get("/api/v1/lines", headers=h, params={"per_page": 3, "page": 2}).json()
    assert (first["total"], first["pages"], len(first["items"]), len(second["items"])) == (4, 2, 3, 1)
    assert not {x["line_id"] for x in first["items"]} & {x["line_id"] for x in second["items"]}
    assert client.get("/api/v1/lines", headers=h, params={"per_page": 201}).status_code == 422
    assert _lines(client, fleet, "operator", status="problems") == ["acme-xuhui-1"]
    assert _lines(client, fleet, "operator", district="Pudong") == ["bravo-pudong-1"]
    assert _lines(client, fleet, "operator", q="JINGAN") == ["tel-jingan-1"]
    assert _lines(client, fleet, "operator", q="%") == []  # LIKE wildcards are literal
    overview = client.get("/api/v1/overview", headers=h).json()
    assert overview["lines"] == 4 and overview["health"]["problems"] == 1 and overview["agents_online"] == 3
    assert client.get("/api/v1/overview", headers=auth(fleet, "b-ent")).json()["lines"] == 1


def test_line_detail_history_findings_and_result(client: TestClient, fleet: Fleet) -> None:
    h = auth(fleet, "a-ent")
    detail = client.get("/api/v1/lines/acme-xuhui-1", headers=h).json()
    assert detail["health"] == "problems" and detail["plan_down_mbps"] == 500
    assert detail["latest"]["findings"][0]["code"] == "packet_loss"
    assert {c["kind"] for c in detail["latest"]["checks"]} == {"link", "ping", "throughput"}
    results = client.get("/api/v1/lines/acme-xuhui-1/results", headers=h, params={"per_page": 5}).json()
    assert results["total"] == 12 and len(results["items"]) == 5
    assert results["items"][0]["started_at"] > results["items"][1]["started_at"]  # newest first
    findings = client.get("/api/v1/lines/acme-xuhui-1/findings", headers=h).json()
    assert findings["total"] == 2
    agent_id, result_id = fleet.results["acme-xuhui-1"][0]
    assert client.get(f"/api/v1/results/{agent_id}/{result_id}", headers=h).json()["seq"] >= 1
    agent_id, result_id = fleet.results["bravo-pudong-1"][0]
    assert client.get(f"/api/v1/results/{agent_id}/{result_id}", headers=h).status_code == 404


def test_series_keeps_failed_measurements_null(client: TestClient, fleet: Fleet) -> None:
    now = datetime.now(UTC)
    failed = envelope("tel-gw", "tel-jingan-1", checks=[link_check(), throughput_check(None)], started_at=now,
                      site_id="tel-jingan")
    fleet.store.ingest([failed])
    r = client.get("/api/v1/lines/tel-jingan-1/series", headers=auth(fleet, "a-viewer"),
                   params={"metric": ["down_mbps"], "days": 7})
    points = r.json()["series"]["down_mbps"]
    assert len(points) == 13 and points[-1]["value"] is None and all(p["value"] for p in points[:-1])


def test_agents_and_quarantine_are_scoped(client: TestClient, fleet: Fleet) -> None:
    agents = client.get("/api/v1/agents", headers=auth(fleet, "a-viewer")).json()["items"]
    assert [a["agent_id"] for a in agents] == ["acme-gw", "acme-gw2", "tel-gw"]
    offline = client.get("/api/v1/agents", headers=auth(fleet, "operator"), params={"status": "offline"}).json()
    # acme-gw2 never sent a status message but reported recently: online by its last report.
    assert {a["agent_id"] for a in offline["items"]} == {"bravo-gw"}
    assert client.get("/api/v1/quarantine", headers=auth(fleet, "operator")).json()["total"] == 3
    mine = client.get("/api/v1/quarantine", headers=auth(fleet, "a-admin")).json()["items"]
    assert [q["agent_id"] for q in mine] == ["acme-gw"]
    assert client.get("/api/v1/quarantine", headers=auth(fleet, "a-viewer")).status_code == 403
    other = fleet.quarantine_ids["bravo-gw"]
    assert client.get(f"/api/v1/quarantine/{other}", headers=auth(fleet, "a-admin")).status_code == 404
    item = client.get(f"/api/v1/quarantine/{other}", headers=auth(fleet, "b-admin")).json()
    assert item["payload_text"] == '{"x":1}' and item["reason"].startswith("schema:")


def test_remote_check_goes_to_the_lines_agents_only(client: TestClient, fleet: Fleet,
                                                    sender: RecordingSender) -> None:
    r = client.post("/api/v1/lines/acme-xuhui-1/commands", headers=auth(fleet, "a-ent"), json={"action": "check_now"})
    assert r.status_code == 202 and r.json()["commands"][0]["agent_id"] == "acme-gw"
    assert client.post("/api/v1/lines/bravo-pudong-1/commands", headers=auth(fleet, "a-ent"),
                       json={}).status_code == 404
    assert client.post("/api/v1/lines/acme-xuhui-1/commands", headers=auth(fleet, "a-viewer"),
                       json={}).status_code == 403
    assert sender.sent == [("acme-gw", "check_now")]


def test_session_cookie_cannot_change_state(client: TestClient, fleet: Fleet, sender: RecordingSender) -> None:
    r = client.post("/console/login", data={"user": "a-admin", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303 and "lc_session" in r.cookies
    assert client.get("/api/v1/me").json()["user_id"] == "a-admin"  # reads work with the cookie
    assert client.post("/api/v1/lines/acme-xuhui-1/commands", json={}).status_code == 401
    assert sender.sent == []


def test_csv_exports_are_scoped(client: TestClient, fleet: Fleet) -> None:
    body = client.get("/api/v1/exports/lines.csv", headers=auth(fleet, "b-admin")).text
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["line_id"] for r in rows] == ["bravo-pudong-1"] and rows[0]["plan_down_mbps"] == "500.0"
    body = client.get("/api/v1/exports/results.csv", headers=auth(fleet, "a-tech")).text
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows and {r["line_id"] for r in rows} == {"acme-xuhui-1"}
    assert {"down_mbps", "loss_pct"} <= {r["metric"] for r in rows}


def test_admins_create_users_only_in_their_scope(client: TestClient, fleet: Fleet) -> None:
    h = auth(fleet, "a-admin")
    new = {"user_id": "a-tech2", "role": "technician", "tenant_id": "sh-telecom", "password": "long-enough-pw",
           "lines": ["tel-jingan-1"]}
    assert client.post("/api/v1/users", headers=h, json=new).status_code == 201
    assert client.post("/api/v1/users", headers=h, json=new).status_code == 409
    assert client.post("/api/v1/users", headers=h, json=new | {"user_id": "x", "tenant_id": "sh-mobile"}
                       ).status_code == 403
    assert client.post("/api/v1/users", headers=h, json=new | {"user_id": "y", "tenant_id": None}).status_code == 403
    assert client.post("/api/v1/users", headers=h, json=new | {"user_id": "z", "lines": ["bravo-pudong-1"]}
                       ).status_code == 422
    assert client.get("/api/v1/users", headers=h).json()["total"] == 5  # a-admin, a-viewer, a-tech, a-tech2, a-ent
    tech = {"Authorization": "Bearer " + Accounts(fleet.engine).issue_token("a-tech2")[1]}
    assert [x["line_id"] for x in client.get("/api/v1/lines", headers=tech).json()["items"]] == ["tel-jingan-1"]


def test_openapi_names_the_roles_of_every_route(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    ops = [op for path, item in spec["paths"].items() if path.startswith("/api/v1") for op in item.values()]
    assert ops and all(op.get("x-roles") for op in ops)
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
