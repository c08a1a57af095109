"""Run the HTTP app (API, console, /metrics) with uvicorn in a thread of the collector process.

One process per collector keeps deployment simple: ingest and HTTP share the database engine,
the metrics registry and the MQTT connection (remote commands go out through it).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import uvicorn
from fastapi import APIRouter, FastAPI

from collector.api.app import create_app
from collector.commands.desk import CommandSender
from collector.config import EnrolmentConfig, HTTPConfig
from collector.fleet.pki import FleetCA
from collector.promises.criterion import PromisePolicy
from collector.service.metrics import CollectorMetrics
from collector.store.database import Store

log = logging.getLogger(__name__)


class HTTPServer:
    def __init__(self, app: FastAPI, host: str, port: int):
        self.app = app
        # lifespan off: the app holds no resources of its own; the store is the caller's.
        # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 (any local process) or
        # from FORWARDED_ALLOW_IPS; the app reads it itself, from `http.trusted_proxies` only.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", server_header=False, proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the HTTP server did not start (is the port in use?)")
            if time.monotonic() > end:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _enrolment_routers(store: Store, cfg: EnrolmentConfig | None) -> list[APIRouter]:
    """POST /api/v1/enrol, when this collector holds the fleet CA. It never creates one by itself:
    a CA made by accident in a working directory would sign certificates no broker trusts."""
    if cfg is None:
        return []
    if not FleetCA.exists(cfg.ca_dir):
        log.info("enrolment endpoint off: no fleet CA in %s (`linecheck-collector ca init` creates it)",
                 cfg.ca_dir)
        return []
    from collector.fleet.enrolment_api import make_router

    log.info("enrolment endpoint on at /api/v1/enrol (fleet CA in %s)", cfg.ca_dir)
    return [make_router(store.engine, FleetCA.open(cfg.ca_dir), cfg.broker_host, cfg.broker_port)]


def start_http(cfg: HTTPConfig, store: Store, commands: CommandSender | None = None,
               metrics: CollectorMetrics | None = None, enrolment: EnrolmentConfig | None = None,
               promises: PromisePolicy | None = None, read_url: str | None = None) -> HTTPServer:
    token = cfg.metrics_token_file.read_text().strip() if cfg.metrics_token_file else None
    app = create_app(store.engine, commands=commands, metrics=metrics, secure_cookies=cfg.secure_cookies,
                     metrics_token=token, extra_routers=_enrolment_routers(store, enrolment),
                     trusted_proxies=cfg.trusted_proxies, api_token_max_days=cfg.api_token_max_days,
                     read_url=read_url)
    app.state.timezone = ZoneInfo(cfg.timezone)
    app.state.promises = promises  # the console signs acceptance reports with its key
    if enrolment is not None:
        app.state.enrolment_token_ttl = timedelta(hours=enrolment.token_ttl_h)
    server = HTTPServer(app, cfg.host, cfg.port)
    server.start()
    log.info("console at http://%s:%s/console/  API docs at /api/docs  metrics at /metrics", cfg.host, server.port)
    return server
