"""Health tells the truth: /healthz and /metrics of a collector whose broker goes away, whose database
becomes unreachable and whose ingest therefore stalls. Real Mosquitto, real ingest worker, real
PostgreSQL made to refuse connections; before issue 16, /healthz said `ok` through all of it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from collector.api.app import create_app
from collector.config import CollectorConfig
from collector.ingest.worker import Ingestor
from collector.service.metrics import CollectorMetrics
from collector.store.database import Store
from linecheck.wire import results_topic
from tests.conftest import PG_ADMIN_URL
from tests.factory import envelope
from tests.faultkit import Watcher
from tests.helpers import wait_for
from tests.mosquitto import Broker


@contextmanager
def collector(db_url: str, port: int, client_id: str) -> Iterator[tuple[Ingestor, TestClient]]:
    """The ingest worker and the HTTP app of one collector process, wired as `linecheck-collector serve` does."""
    store = Store(db_url)
    cfg = CollectorConfig.model_validate({"database": db_url, "mqtt": {"port": port, "client_id": client_id}})
    ingestor = Ingestor(cfg, store)
    ingestor.stall_after_s = 1.0  # the default (30 s) is for production; the logic is the same
    worker = threading.Thread(target=ingestor.run, daemon=True)
    worker.start()
    try:
        with TestClient(create_app(store.engine, metrics=CollectorMetrics(store.engine, ingest=ingestor))) as http:
            wait_for(ingestor.subscribed.is_set, 10, "the collector's subscription")
            yield ingestor, http
    finally:
        ingestor.stop()
        worker.join(40)
        store.close()


def gauge(http: TestClient, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_stopped_broker_makes_healthz_fail_and_metrics_say_so(broker: Broker, tmp_path: Path) -> None:
    with collector(f"sqlite:///{tmp_path}/c.db", broker.port, "health-broker") as (ingestor, http):
        assert (http.get("/healthz").status_code, http.get("/healthz").text) == (200, "ok\n")
        assert gauge(http, "linecheck_broker_connected") == 1 and gauge(http, "linecheck_broker_subscribed") == 1
        broker.stop()
        wait_for(lambda: http.get("/healthz").status_code == 503, 20, "/healthz to notice the broker is gone")
        assert http.get("/healthz").text.startswith(f"broker disconnected: 127.0.0.1:{broker.port} ")
        assert gauge(http, "linecheck_broker_connected") == 0 and gauge(http, "linecheck_database_up") == 1
        broker.start()  # paho reconnects on its own
        wait_for(lambda: http.get("/healthz").status_code == 200, 40, "/healthz to recover with the broker")


def test_an_unreachable_database_stalls_ingest_and_healthz_says_both(broker: Broker, pg_url: str) -> None:
    name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def reachable(yes: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if yes else "false"}'))
            if not yes:  # and drop the collector's pooled connections
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                             {"n": name})

    watcher = Watcher(broker.port, "linecheck/v1/agents/+/receipts", client_id="health-watcher")
    try:
        with collector(pg_url, broker.port, "health-db") as (ingestor, http):
            reachable(False)
            result = envelope("gw-1", "line-1")
            watcher.publish(results_topic("gw-1"), result.to_json())
            wait_for(lambda: "ingest stalled" in http.get("/healthz").text, 30, "/healthz to report the stall")
            answer = http.get("/healthz")
            assert answer.status_code == 503
            assert answer.text.splitlines()[0] == "database unreachable"
            assert answer.text.splitlines()[1].startswith("ingest stalled: 1 messages waiting, oldest")
            assert gauge(http, "linecheck_database_up") == 0 and gauge(http, "linecheck_ingest_stalled") == 1
            assert gauge(http, "linecheck_ingest_oldest_unacked_seconds") > 1
            assert watcher.payloads("/receipts") == []  # nothing promised while the database is away
            reachable(True)
            wait_for(lambda: ingestor.stored == 1, 60, "ingest to resume with the database")
            wait_for(lambda: http.get("/healthz").status_code == 200, 10, "/healthz to recover")
            assert gauge(http, "linecheck_ingest_pending_messages") == 0
    finally:
        watcher.close()
        reachable(True)
        admin.dispose()
