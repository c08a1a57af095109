"""The Prometheus dashboard queries only what a running collector exports.

`linecheck-collector serve` runs on a private Mosquitto with the demo's simulated offices seeded
(so tickets, agents and quarantine have figures); every `linecheck_*` series named in
dashboards/collector-metrics.json (panels and variables) must be a sample of its /metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from linecheck.demo import seed
from tests.helpers import collector_config, start, stop, wait_for
from tests.mosquitto import Broker, free_port

pytestmark = pytest.mark.broker
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "collector-metrics.json"
SERIES = re.compile(r"\blinecheck_[a-z0-9_]+")


def _queried() -> set[str]:
    d = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in d["templating"]["list"] if v["type"] == "query"]
    return {name for expr in exprs for name in SERIES.findall(expr)}


def test_every_metric_the_prometheus_dashboard_queries_is_exported(broker: Broker, tmp_path: Path) -> None:
    queried = _queried()
    assert len(queried) >= 15  # the dashboard really is about the collector's metrics
    port = free_port()
    ccfg = collector_config(tmp_path, broker.port)
    ccfg.write_text(ccfg.read_text().replace("http: {port: 0}", f"http: {{port: {port}}}"))
    collector = start("collector.cli", "serve", "--config", str(ccfg), log=tmp_path / "collector.log")
    sim = None

    def scrape() -> str | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except httpx.HTTPError:
            return None
        return r.text if r.status_code == 200 else None

    try:
        wait_for(scrape, 30, "the collector's /metrics")
        sim = seed.start(tmp_path / "demo-fleet", ccfg, "127.0.0.1", broker.port, interval_s=3600, timeout_s=90)
        def with_tickets() -> str | None:
            body = scrape()
            return body if body and "linecheck_tickets_open{" in body else None

        text = wait_for(with_tickets, 30, "open tickets in /metrics")
    finally:
        if sim is not None:
            sim.stop()
        stop(collector)
    exported = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    missing = sorted(queried - exported)
    assert not missing, f"dashboards/collector-metrics.json queries series /metrics does not export: {missing}"
