"""`linecheck-collector serve`: every stage in one process (ingest, rules, promises, background jobs, HTTP);
`init-db`: create or migrate the database and exit."""

from __future__ import annotations

import argparse
import gc
import logging
import signal

from collector.config import CollectorConfig
from linecheck.cliargs import add_config, add_log_level


def add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser(
        "serve", help="run the collector: ingest from the broker, rules, promises, and the web console, HTTP API "
                      "and /metrics on http.host:http.port",
        description="Run every stage in one process: ingest results from the broker into the database, rules "
                    "and tickets, promise verdicts, notifications, and on http.host:http.port (default "
                    "127.0.0.1:8080) the web console (/console/), the HTTP API (/api/v1, reference at "
                    "/api/docs), /healthz and /metrics. Stops on SIGTERM or Ctrl-C.")
    add_config(serve, "collector")
    add_log_level(serve)


def add_init_db(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = sub.add_parser("init-db", help="create or migrate the database and exit")
    add_config(init, "collector")


def run_init_db(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.store.database import Store

    Store(cfg.database).close()
    print(f"database ready: {cfg.database}")
    return 0


def run_serve(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.api.fleet_summary import AGENT_COUNTS_EVERY_S
    from collector.incidents.correlate import Correlator
    from collector.ingest.worker import Ingestor
    from collector.promises.hook import PromiseHook
    from collector.rules.engine import RuleEngine
    from collector.service.background import Background
    from collector.store.database import Store

    # Ingest allocates thousands of short-lived objects per batch (parsed envelopes, rows) while the
    # rules' cache holds tens of thousands of long-lived ones: with CPython's default thresholds
    # (700, 10, 10) the collector spent about a fifth of its ingest CPU in the cyclic collector.
    gc.set_threshold(50_000, 20, 100)
    store = Store(cfg.database)
    rules = RuleEngine(cfg.rules)
    correlator = Correlator(cfg.incidents, rules)
    rules.hold = correlator.hold  # a fault on a line with an access path waits for its neighbours
    store.add_hook(rules.on_ingest)  # rules → tickets in the ingest transaction
    store.add_hook(correlator.on_ingest)  # held faults → area incidents or their own tickets
    store.add_hook(PromiseHook(cfg.promises))  # new speed/WiFi tests → promise verdicts → tickets
    ingestor = Ingestor(cfg, store)
    http = _start_http(cfg, store, ingestor)
    background = Background(store, rules, ingestor.client)
    background.add_job("retention", cfg.retention.interval_s, lambda: _retention(store, cfg))
    background.add_job("agent_counts", AGENT_COUNTS_EVERY_S, lambda: _agent_counts(store))
    background.add_job("incidents", cfg.rules.sweep_interval_s, lambda: _incidents(store, correlator))
    if cfg.notify.targets:
        from collector.notify.outbox import Notifier

        background.add_job("notify", 1.0, Notifier(store.engine, cfg.notify).run_once)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: ingestor.stop())
    background.start()
    try:
        ingestor.run()
    finally:
        background.stop()
        if http is not None:
            http.stop()  # type: ignore[attr-defined]
        store.close()
    return 0


def _incidents(store: object, correlator: object) -> object:
    from datetime import UTC, datetime

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        return correlator.sweep(conn, datetime.now(UTC))  # type: ignore[attr-defined]


def _agent_counts(store: object) -> None:
    from collector.api.fleet_summary import refresh_agent_counts

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        refresh_agent_counts(conn)


def _retention(store: object, cfg: CollectorConfig) -> None:
    from collector.store import retention

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        retention.apply(conn, cfg.retention)


def _start_http(cfg: CollectorConfig, store: object, ingestor: object) -> object | None:
    """The API, console and /metrics in this process (collector/api/server.py), unless disabled."""
    if not cfg.http.enabled:
        return None
    from collector.api.server import start_http
    from collector.commands.desk import broker_sender
    from collector.service.metrics import CollectorMetrics

    metrics = CollectorMetrics(store.engine, ingest=ingestor)  # type: ignore[attr-defined,arg-type]  # /healthz
    ingestor.on_batch = metrics.observe_batch  # type: ignore[attr-defined]
    try:
        return start_http(cfg.http, store,  # type: ignore[arg-type]
                          # commands leave on ingest's own connection: never a second one as ingest
                          commands=broker_sender(cfg, store.engine, ingestor),  # type: ignore[attr-defined,arg-type]
                          metrics=metrics,
                          enrolment=cfg.enrolment, promises=cfg.promises)
    except RuntimeError as exc:
        # Ingest is what agents depend on (their spools wait for receipts): it keeps running.
        logging.getLogger("collector").error("HTTP API and console NOT available on %s:%s: %s",
                                             cfg.http.host, cfg.http.port, exc)
        return None
