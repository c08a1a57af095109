"""Registry import and export over the API, within the caller's tenants."""

from __future__ import annotations

import yaml
from fastapi.testclient import TestClient

from tests.api_support import auth
from tests.fleet_data import Fleet

YAML = {"Content-Type": "application/yaml"}


def test_export_is_scoped(client: TestClient, fleet: Fleet) -> None:
    body = client.get("/api/v1/registry", headers=auth(fleet, "a-admin")).text
    data = yaml.safe_load(body)
    assert {x["tenant_id"] for x in data["tenants"]} == {"sh-telecom", "acme-trading"}
    assert "bravo" not in body
    csv_body = client.get("/api/v1/registry", headers=auth(fleet, "b-admin"),
                          params={"format": "csv", "section": "lines"}).text
    assert csv_body.splitlines()[0].startswith("line_id,") and "bravo-pudong-1" in csv_body and "acme" not in csv_body
    default = client.get("/api/v1/registry", headers=auth(fleet, "a-admin"), params={"format": "csv"}).text
    assert default.startswith("line_id,")


def test_import_yaml_and_csv(client: TestClient, fleet: Fleet) -> None:
    h = auth(fleet, "a-admin")
    doc = ("sites: [{site_id: acme-minhang, tenant_id: acme-trading, district: Minhang}]\n"
           "lines: [{line_id: acme-minhang-1, tenant_id: acme-trading, site_id: acme-minhang, plan_down_mbps: 500}]\n")
    r = client.post("/api/v1/registry", headers={**h, **YAML}, content=doc, params={"dry_run": True})
    assert r.status_code == 200 and r.json()["imported"]["lines"] == 1
    assert client.get("/api/v1/lines/acme-minhang-1", headers=h).status_code == 404  # dry run: nothing kept
    assert client.post("/api/v1/registry", headers={**h, **YAML}, content=doc).status_code == 200
    line = client.get("/api/v1/lines/acme-minhang-1", headers=h).json()
    assert line["district"] == "Minhang" and line["plan_down_mbps"] == 500
    csv_doc = "agent_id,line_id,report_interval_s\nacme-minhang-gw,acme-minhang-1,3600\n"
    r = client.post("/api/v1/registry", headers={**h, "Content-Type": "text/csv"}, content=csv_doc)
    assert r.status_code == 200 and r.json()["imported"]["agents"] == 1


def test_bad_or_foreign_imports_are_refused_whole(client: TestClient, fleet: Fleet) -> None:
    h = {**auth(fleet, "a-admin"), **YAML}
    r = client.post("/api/v1/registry", headers=h, content="lines: [{line_id: x, tenant_id: acme-trading}]\n")
    assert r.status_code == 422 and any("site_id" in p for p in r.json()["detail"])
    r = client.post("/api/v1/registry", headers=h, content="tenants: [{tenant_id: new-co, name: N, kind: carrier}]\n")
    assert r.status_code == 422 and any("outside your tenants" in p for p in r.json()["detail"])
    # An agent of the other carrier cannot be re-enrolled onto one of our lines by its id.
    r = client.post("/api/v1/registry", headers=h, content="agents: [{agent_id: bravo-gw, line_id: acme-xuhui-2}]\n")
    assert r.status_code == 422 and "outside your tenants" in r.json()["detail"][0]
    assert client.get("/api/v1/agents", headers=auth(fleet, "b-admin")).json()["items"][0]["line_id"] == \
        "bravo-pudong-1"
    assert client.post("/api/v1/registry", headers=h, content="- not a mapping\n").status_code == 422
    assert client.post("/api/v1/registry", headers={**auth(fleet, "a-viewer"), **YAML}, content="{}").status_code \
        == 403
