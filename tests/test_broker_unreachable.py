"""A collector whose broker is not there says so (issue 23 item 1): the real `linecheck-collector serve`
against a port with nothing listening logs the address and the error once (not once per retry),
/healthz answers 503 with the reason, /metrics counts the failed attempts; then a broker appears on
that port and all three say connected."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import stop, wait_for
from tests.mosquitto import Broker, free_port

pytestmark = pytest.mark.broker
COLLECTOR = str(Path(sys.executable).with_name("linecheck-collector"))


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


def test_serve_against_a_closed_port_says_so_then_connects(tmp_path: Path) -> None:
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it when run as root)")
    broker_port, http_port = free_port(), free_port()
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/c.db\nmqtt: {{host: 127.0.0.1, port: {broker_port}}}\n"
                   f"http: {{port: {http_port}}}\n")
    log = tmp_path / "collector.log"
    proc = subprocess.Popen([COLLECTOR, "serve", "--config", str(cfg)], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})
    base = f"http://127.0.0.1:{http_port}"

    def get(path: str) -> httpx.Response | None:
        try:
            return httpx.get(base + path, timeout=5)
        except httpx.HTTPError:
            return None

    broker = Broker(tmp_path / "broker-dir")
    broker.port = broker_port
    (tmp_path / "broker-dir").mkdir()
    try:
        # paho retries after 1, 2, 4 ... s: three failed attempts means it kept trying, silently.
        metrics = wait_for(lambda: (r := get("/metrics")) is not None
                           and (_metric(r.text, "linecheck_broker_connect_failures_total") or 0) >= 3 and r.text,
                           40, "three failed connection attempts")
        assert _metric(metrics, "linecheck_broker_connected") == 0
        assert _metric(metrics, 'linecheck_broker_state{state="unreachable"}') == 1
        assert (_metric(metrics, "linecheck_broker_down_seconds") or 0) > 1
        health = get("/healthz")
        assert health is not None and health.status_code == 503
        assert health.text == f"broker disconnected: 127.0.0.1:{broker_port} unreachable: Connection refused\n"
        text = log.read_text()
        said = [line for line in text.splitlines() if "cannot reach the broker" in line]
        assert len(said) == 1, text  # once, not once per retry
        assert f"127.0.0.1:{broker_port}: Connection refused" in said[0] and " ERROR " in said[0]

        broker.start()
        wait_for(lambda: (r := get("/healthz")) is not None and r.status_code == 200, 60,
                 "/healthz to turn ok once a broker listens")
        metrics = get("/metrics").text  # type: ignore[union-attr]
        assert _metric(metrics, "linecheck_broker_connected") == 1
        assert _metric(metrics, 'linecheck_broker_state{state="connected"}') == 1
        assert _metric(metrics, "linecheck_broker_down_seconds") == 0
        assert re.search(rf"connected to the broker at 127.0.0.1:{broker_port} after \d+ s without it "
                         r"\(\d+ failed attempts\)", log.read_text())
    finally:
        stop(proc)  # type: ignore[arg-type]
        broker.stop()
