"""On-site enrolment through the running collector: token from the API, certificate from /api/v1/enrol.

`linecheck-collector serve` holds the fleet CA, so it mounts the enrolment endpoint beside the API.
An admin (or the line's technician) asks for a token for a registered line; the real
`linecheck-agent enroll` spends it; the agent is then bound to that line, and its id cannot be
claimed for another line — not even by the same carrier.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from collector.fleet.pki import FleetCA
from tests.helpers import collector_config, start, stop, wait_for
from tests.mosquitto import Broker

pytestmark = pytest.mark.broker

REGISTRY = """\
tenants:
  - {tenant_id: sh-telecom, name: Shanghai Telecom, kind: carrier}
  - {tenant_id: acme, name: Acme, kind: enterprise, parent_id: sh-telecom}
sites:
  - {site_id: acme-hq, tenant_id: acme, name: Acme HQ}
lines:
  - {line_id: acme-l1, tenant_id: acme, site_id: acme-hq, plan_down_mbps: 500, plan_up_mbps: 300}
  - {line_id: acme-l2, tenant_id: acme, site_id: acme-hq, plan_down_mbps: 500, plan_up_mbps: 300}
"""


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _user(ccfg: Path, tmp: Path, user: str, role: str, *extra: str) -> str:
    (tmp / "pw").write_text("a-long-enough-password")
    _cli("user", "add", "--config", str(ccfg), user, "--role", role, "--password-file", str(tmp / "pw"), *extra)
    return _cli("user", "token", "--config", str(ccfg), user, "--name", "test")


def _serve(broker: Broker, tmp: Path, with_ca: bool) -> tuple[Path, str]:
    ccfg = collector_config(tmp, broker.port)
    if with_ca:
        FleetCA.open_or_create(tmp / "ca")
    with ccfg.open("a") as f:
        f.write(f"enrolment: {{ca_dir: {tmp / 'ca'}, broker_host: 127.0.0.1, broker_port: {broker.port}}}\n")
    (tmp / "registry.yaml").write_text(REGISTRY)
    _cli("registry", "import", "--config", str(ccfg), str(tmp / "registry.yaml"))
    return ccfg, str(tmp / "collector.log")


def _base(log: Path) -> str:
    def port() -> str | None:
        match = re.search(r"console at (http://127\.0\.0\.1:\d+)/", log.read_text() if log.exists() else "")
        return match.group(1) if match else None

    return wait_for(port, 30, "the collector's HTTP server")


def test_token_from_api_enrols_a_gateway_bound_to_its_line(broker: Broker, tmp_path: Path) -> None:
    ccfg, log = _serve(broker, tmp_path, with_ca=True)
    admin = _user(ccfg, tmp_path, "ops", "carrier_admin", "--tenant", "sh-telecom")
    tech = _user(ccfg, tmp_path, "li", "technician", "--tenant", "sh-telecom", "--line", "acme-l2")
    viewer = _user(ccfg, tmp_path, "eve", "carrier_viewer", "--tenant", "sh-telecom")
    collector = start("collector.cli", "serve", "--config", str(ccfg), log=Path(log))
    try:
        base = _base(Path(log))
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
        r = api.post("/api/v1/lines/acme-l1/enrolment-tokens", json={"agent_id": "acme-gw-1", "ttl_h": 2})
        assert r.status_code == 201, r.text
        issued = r.json()
        assert issued["site_id"] == "acme-hq" and issued["token"].startswith("acme-gw-1.")
        assert f"--collector {base}" in issued["command"]

        out = subprocess.run([sys.executable, "-m", "agent.cli", "enroll", "--collector", base, "--allow-http",
                              "--token", issued["token"], "--config-out", str(tmp_path / "gw" / "agent.yaml"),
                              "--data-dir", str(tmp_path / "gw" / "data")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        cert = x509.load_pem_x509_certificate((tmp_path / "gw" / "data" / "identity" / "agent.crt").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "acme-gw-1"
        assert "acme-l1" in (tmp_path / "gw" / "agent.yaml").read_text()

        # Enrolled means registered on the line at once, before its first report.
        agents = api.get("/api/v1/agents").json()["items"]
        assert [(a["agent_id"], a["line_id"]) for a in agents] == [("acme-gw-1", "acme-l1")]

        # The id now speaks for acme-l1: no token for it on another line, even the carrier's own.
        r = api.post("/api/v1/lines/acme-l2/enrolment-tokens", json={"agent_id": "acme-gw-1"})
        assert r.status_code == 409 and "taken by another line" in r.json()["detail"]
        # A replacement gateway on the same line may take the id over.
        assert api.post("/api/v1/lines/acme-l1/enrolment-tokens", json={"agent_id": "acme-gw-1"}).status_code == 201

        # The technician issues for the line assigned to them only; a viewer issues nothing.
        as_tech = {"Authorization": f"Bearer {tech}"}
        assert httpx.post(f"{base}/api/v1/lines/acme-l2/enrolment-tokens", json={"agent_id": "acme-gw-2"},
                          headers=as_tech).status_code == 201
        assert httpx.post(f"{base}/api/v1/lines/acme-l1/enrolment-tokens", json={"agent_id": "acme-gw-3"},
                          headers=as_tech).status_code == 404
        assert httpx.post(f"{base}/api/v1/lines/acme-l1/enrolment-tokens", json={"agent_id": "acme-gw-3"},
                          headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
        # Ids that would escape the topic tree never become tokens; unregistered lines get none.
        assert api.post("/api/v1/lines/acme-l1/enrolment-tokens", json={"agent_id": "a/b"}).status_code == 422
        assert api.post("/api/v1/lines/nowhere/enrolment-tokens", json={"agent_id": "x-1"}).status_code == 404
    finally:
        stop(collector)
    assert "enrolment endpoint on at /api/v1/enrol" in Path(log).read_text()


def test_without_a_fleet_ca_the_collector_serves_no_enrolment(broker: Broker, tmp_path: Path) -> None:
    ccfg, log = _serve(broker, tmp_path, with_ca=False)
    collector = start("collector.cli", "serve", "--config", str(ccfg), log=Path(log))
    try:
        base = _base(Path(log))
        assert httpx.post(f"{base}/api/v1/enrol", json={"token": "x" * 30, "csr_pem": "y" * 200}).status_code == 404
    finally:
        stop(collector)
    text = Path(log).read_text()
    assert "enrolment endpoint off: no fleet CA" in text
    assert not (tmp_path / "ca").exists()  # serving never creates a CA by itself
