"""`linecheck-collector serve` end to end: ingest and HTTP in one process over a real Mosquitto.

A real agent reports; the API shows its line; /metrics counts what ingest stored and how long the
receipt took; "check now" through the API reaches the agent over the broker and its remote-triggered
result comes back through ingest.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import agent_config, collector_config, start, stop, wait_for
from tests.mosquitto import Broker, free_port

pytestmark = pytest.mark.broker


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_serve_api_metrics_and_remote_check(broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    ccfg = collector_config(tmp_path, broker.port)
    ccfg.write_text(ccfg.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    (tmp_path / "pw").write_text("operator-password-1")
    _cli("user", "add", "--config", str(ccfg), "ops", "--role", "carrier_admin",
         "--password-file", str(tmp_path / "pw"))
    token = _cli("user", "token", "--config", str(ccfg), "ops", "--name", "test")
    assert token.startswith("lc_")
    collector = start("collector.cli", "serve", "--config", str(ccfg), log=tmp_path / "collector.log")
    agent = start("agent.cli", "run", "--config", str(agent_config(tmp_path, broker.port)), log=tmp_path / "agent.log")
    base = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def lines() -> list[dict]:
        try:
            return api.get("/api/v1/lines").json()["items"]
        except (httpx.HTTPError, KeyError, ValueError):
            return []

    try:
        line = wait_for(lambda: next((x for x in lines() if x["health"] != "no_data"), None), 40,
                        "the agent's first result in the API")
        assert line["line_id"] == "e2e-gw-line" and line["tenant_id"] is None  # reported, not registered
        metrics = api.get("/metrics").text
        assert _metric(metrics, 'linecheck_ingest_messages_total{outcome="stored"}') >= 1
        assert _metric(metrics, "linecheck_receipt_latency_seconds_count") >= 1
        assert _metric(metrics, "linecheck_results_stored") >= 1

        r = api.post("/api/v1/lines/e2e-gw-line/commands", json={"action": "check_now", "reason": "test"})
        assert r.status_code == 202, r.text
        assert r.json()["commands"][0]["agent_id"] == "e2e-gw"

        def remote_result() -> bool:
            items = api.get("/api/v1/lines/e2e-gw-line/results").json()["items"]
            return any(x["trigger"] == "remote" for x in items)

        wait_for(remote_result, 40, "the remote-triggered result")
        assert _metric(api.get("/metrics").text, 'linecheck_ingest_messages_total{outcome="stored"}') >= 2
        assert httpx.get(f"{base}/healthz").text == "ok\n"
        assert httpx.get(f"{base}/api/v1/lines").status_code == 401
        assert "login-form" in httpx.get(f"{base}/console/login").text
    finally:
        stop(agent)
        stop(collector)
    assert "console at http://127.0.0.1:" in (tmp_path / "collector.log").read_text()
