"""The LAN-side speed test server: the shared measurement server (linecheck/throughput/server.py, the
one the carrier's test server runs: /download, /upload, /latency and LibreSpeed's garbage/empty/getIP,
as linecheck/throughput/protocol.py defines them), plus

    GET  /             the agent's own test page (static/index.html + static/lantest.js)
    GET  /api/station  what the gateway sees of the caller (MAC, signal, PHY rate) and the rooms
    POST /api/result   the caller's figures for a room: looked up, judged, localised, recorded

Served on the LAN address only (never the WAN side). Recording is rate limited, and a token can
be required, because anyone on the office network can reach it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pydantic import ValidationError

from agent.checks.wifi import WifiConfig
from agent.lan.client import RESULT_PATH, STATION_PATH
from agent.lan.record import KIND, ClientResult, envelope
from agent.lan.settings import LanTestConfig
from agent.lan.station import StationView, look_up
from linecheck.throughput.server import Limits, MeasurementHandler, ThroughputServer
from linecheck.wire import ResultEnvelope

log = logging.getLogger(__name__)
MAX_RESULT_BYTES = 64 * 1024
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/lantest.js": ("lantest.js", "text/javascript; charset=utf-8")}


@dataclass
class Identity:
    agent_id: str
    line_id: str
    site_id: str
    plan_down_mbps: float | None


class _LanHandler(MeasurementHandler):
    """The test server's handler with the agent's page and API in front of it."""

    server: Any  # the test server's server; its `context` is the LanServer

    def do_GET(self) -> None:  # noqa: N802
        path, query = self._query()
        lan: LanServer = self.server.context
        if path in STATIC:
            name, ctype = STATIC[path]
            self._small(200, lan.static(name), ctype)
        elif path == STATION_PATH:
            if not self._authorised(query):
                self._json(401, {"error": "unauthorised", "detail": "this gateway needs a token"})
                return
            view = lan.station(self.client_address[0])
            self._json(200, {"station": view.public(), "rooms": lan.cfg.rooms,
                             "target_mbps": lan.target_for(None), "max_test_s": lan.cfg.max_test_s})
        else:
            super().do_GET()

    def do_POST(self) -> None:  # noqa: N802
        path, query = self._query()
        if path != RESULT_PATH:
            super().do_POST()
            return
        lan: LanServer = self.server.context
        if not self._authorised(query):
            self.close_connection = True
            self._json(401, {"error": "unauthorised", "detail": "this gateway needs a token"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_RESULT_BYTES:
            self.close_connection = True
            self._json(400, {"error": "bad request", "detail": f"send a JSON body of 1-{MAX_RESULT_BYTES} bytes"})
            return
        body = self.rfile.read(length)
        try:
            result = ClientResult.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            self._json(400, {"error": "bad result", "detail": problems})
            return
        status, answer = lan.record(result, self.client_address[0])
        self._json(status, answer)


class LanServer:
    def __init__(self, cfg: LanTestConfig, identity: Identity, record: Callable[[ResultEnvelope], ResultEnvelope],
                 host: str, wifi: WifiConfig | None = None, lookup: Callable[[str], StationView] | None = None):
        self.cfg = cfg
        self.identity = identity
        self._record = record
        self.wifi = wifi
        self._lookup = lookup or (lambda ip: look_up(ip, wifi))
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        limits = Limits(max_tests=cfg.max_tests, max_test_s=cfg.max_test_s, token=cfg.token)
        # The shared measurement server with our page and API in front (a subclass of its handler),
        # so the transfers, admission and caps stay exactly the carrier server's.
        self.http = ThroughputServer(host, cfg.port, limits, handler=_LanHandler, context=self)
        self._static: dict[str, bytes] = {}

    @property
    def url(self) -> str:
        return self.http.url

    def static(self, name: str) -> bytes:
        if name not in self._static:
            self._static[name] = resources.files("agent.lan").joinpath("static", name).read_bytes()
        return self._static[name]

    def target_for(self, room: str | None) -> float | None:
        if room is not None and room in self.cfg.rooms:
            return self.cfg.rooms[room]
        return self.cfg.target_mbps or self.identity.plan_down_mbps

    def station(self, ip: str) -> StationView:
        try:
            return self._lookup(ip)
        except Exception as exc:  # noqa: BLE001 - a lookup problem must not lose the result
            log.warning("station lookup for %s failed: %s", ip, exc)
            return StationView(ip=ip, note=f"lookup failed: {exc}")

    def _admit_record(self) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] > 3600:
                self._recent.popleft()
            if len(self._recent) >= self.cfg.max_results_per_hour:
                return False
            self._recent.append(now)
            return True

    def record(self, result: ClientResult, client_ip: str) -> tuple[int, dict[str, Any]]:
        if not self._admit_record():
            return 429, {"error": "too many results",
                         "detail": f"this gateway records at most {self.cfg.max_results_per_hour} tests per hour"}
        view = self.station(client_ip)
        env = envelope(self.identity.agent_id, self.identity.line_id, self.identity.site_id, result, view,
                       self.target_for(result.room), self.wifi)
        try:
            stored = self._record(env)
        except Exception as exc:  # noqa: BLE001 - tell the client, keep serving
            log.exception("cannot record the room test")
            return 503, {"error": "not recorded", "detail": str(exc)}
        check = next(c for c in stored.checks if c.kind == KIND)  # the spool may add its own pseudo-check
        log.info("room test %r from %s: %s down=%s up=%s", result.room, view.ip, check.status.value,
                 check.metrics.get("down_mbps"), check.metrics.get("up_mbps"))
        return 200, {"result_id": stored.result_id, "seq": stored.seq, "status": check.status.value,
                     "reason": check.reason, "metrics": check.metrics, "station": view.public(),
                     "findings": [json.loads(f.model_dump_json()) for f in stored.findings]}

    def start(self) -> LanServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def __enter__(self) -> LanServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
