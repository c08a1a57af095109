"""`linecheck-collector serve`: every stage in one process (ingest, rules, promises, background jobs, HTTP), or
with `--workers N` ingest in N supervised processes beside that one (collector/ingest/pool.py);
`init-db`: create or migrate the database and exit."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

from collector.config import CollectorConfig
from linecheck.cliargs import add_config, add_log_level, positive_int

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from collector.ingest.pipeline import Pipeline
    from collector.service.background import Background


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
    serve.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help="ingest in N processes (one per core you give the collector; PostgreSQL only), "
                            "supervised by this one, which keeps the API, console and background jobs "
                            "(default 1: everything in one process)")


def add_init_db(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = sub.add_parser("init-db", help="create or migrate the database and exit")
    add_config(init, "collector")


def run_init_db(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    from collector.store.database import Store

    Store(cfg.database).close()
    print(f"database ready: {cfg.database}")
    return 0


def run_serve(args: argparse.Namespace, cfg: CollectorConfig) -> int:
    workers = getattr(args, "workers", 1)
    if workers > 1:
        return _serve_workers(args, cfg, workers)
    from collector.ingest.pipeline import build_pipeline
    from collector.ingest.worker import Ingestor

    pipeline = build_pipeline(cfg)
    store = pipeline.store
    ingestor = Ingestor(cfg, store)
    http = _start_http(cfg, store, ingestor, ingestor)
    background = _background(cfg, pipeline, ingestor.client)
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


def _serve_workers(args: argparse.Namespace, cfg: CollectorConfig, workers: int) -> int:
    """Ingest in `workers` supervised processes; the API, console, commands and background jobs here."""
    from collector.ingest.command_link import CommandLink
    from collector.ingest.pipeline import build_pipeline
    from collector.ingest.pool import WorkerPool, workers_problem

    problem = workers_problem(cfg, workers)
    if problem:
        print(f"linecheck-collector serve: {problem} (config {args.config})", file=sys.stderr)
        return 2
    pipeline = build_pipeline(cfg)  # migrations run here, once, before any worker starts
    pool = WorkerPool(cfg, workers, getattr(args, "log_level", "INFO"))
    link = CommandLink(cfg, f"{cfg.mqtt.client_id}-ctl")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pool.stop())
    pool.start()
    link.start()
    http = _start_http(cfg, pipeline.store, pool, link)
    background = _background(cfg, pipeline, link.client)
    background.start()
    try:
        pool.run()
    finally:
        pool.shutdown()
        background.stop()
        if http is not None:
            http.stop()  # type: ignore[attr-defined]
        link.stop()
        pipeline.store.close()
    return 0


def _background(cfg: CollectorConfig, pipeline: Pipeline, client: mqtt.Client) -> Background:
    from collector.api.fleet_summary import AGENT_COUNTS_EVERY_S
    from collector.service.background import Background

    store, correlator = pipeline.store, pipeline.correlator
    background = Background(store, pipeline.rules, client)
    background.add_job("retention", cfg.retention.interval_s, lambda: _retention(store, cfg))
    background.add_job("agent_counts", AGENT_COUNTS_EVERY_S, lambda: _agent_counts(store))
    background.add_job("incidents", cfg.rules.sweep_interval_s, lambda: _incidents(store, correlator))
    if cfg.notify.targets:
        from collector.notify.outbox import Notifier

        background.add_job("notify", 1.0, Notifier(store.engine, cfg.notify).run_once)
    return background


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


def _start_http(cfg: CollectorConfig, store: object, ingest: object, connection: object) -> object | None:
    """The API, console and /metrics in this process (collector/api/server.py), unless disabled. `ingest`
    reports health and batch counts (the Ingestor, or the worker pool); commands leave on `connection`."""
    if not cfg.http.enabled:
        return None
    from collector.api.server import start_http
    from collector.commands.desk import broker_sender
    from collector.service.metrics import CollectorMetrics

    metrics = CollectorMetrics(store.engine, ingest=ingest)  # type: ignore[attr-defined,arg-type]  # /healthz
    ingest.on_batch = metrics.observe_batch  # type: ignore[attr-defined]
    try:
        return start_http(cfg.http, store,  # type: ignore[arg-type]
                          # commands leave on ingest's own connection: never a second one as ingest
                          commands=broker_sender(cfg, store.engine, connection),  # type: ignore[attr-defined,arg-type]
                          metrics=metrics,
                          enrolment=cfg.enrolment, promises=cfg.promises,
                          read_url=cfg.database_read)  # reads off the primary (collector/store/replica.py)
    except RuntimeError as exc:
        # Ingest is what agents depend on (their spools wait for receipts): it keeps running.
        logging.getLogger("collector").error("HTTP API and console NOT available on %s:%s: %s",
                                             cfg.http.host, cfg.http.port, exc)
        return None
