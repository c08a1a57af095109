"""The heartbeat: a light probe between scheduled checks, so faults that come and go are seen.

A technician on site sees a line that works; the office saw it drop seven times in the morning. It runs
in `linecheck-agent run` when `line.test_server` is set (it probes only the carrier's equipment). Every
`interval_s` the daemon sends one ICMP echo to the default gateway's next hop and one to the carrier's
test server, and reads the WAN port's link. `down_after` missed rounds in a row open an outage (dated
back to the first miss); the first round that is answered again closes it. Where it broke is the
part of the path that failed, nearest the office first:
  - link:    the WAN port lost its link (cable, ONT, the port);
  - gateway: the next hop did not answer (the access line to the carrier's first router);
  - beyond:  the next hop answered but the test server did not (the carrier's network beyond it).
Closed outages go to the outage log (agent/outagelog.py) and leave with the next result.

The data is bounded: `daily_bytes_max` caps what the probes may send and receive per UTC day (two
84-byte echoes and their replies every 10 s is ~2.9 MB a day); past it the heartbeat rests until the
next day and says so in the next result. Pure state (`OutageTracker`) is table-tested; the thread
around it only probes and records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import Field

from linecheck.configfile import Strict

log = logging.getLogger(__name__)

WHERE_ORDER = ("link", "gateway", "beyond")  # nearest the office first: an outage keeps the nearest seen
PROBE_WIRE_BYTES = 2 * 84  # one echo of 56 bytes out and its reply, IPv4 and ICMP headers included


class HeartbeatConfig(Strict):
    enabled: bool = Field(default=True, description="Probe between checks and record outage intervals")
    interval_s: float = Field(default=10.0, ge=1, le=300, description="One round of probes every this many seconds")
    down_after: int = Field(default=3, ge=1, le=60,
                            description="Missed rounds in a row that make an outage (dated from the first miss)")
    reply_timeout_s: float = Field(default=1.0, gt=0, le=10, description="Wait for each echo reply")
    test_server: bool = Field(default=True, description="Also probe line.test_server (tells 'gateway' from 'beyond')")
    daily_bytes_max: int = Field(default=5_000_000, ge=10_000,
                                 description="Probe bytes (sent and received) per UTC day; then rest until tomorrow")


@dataclass(frozen=True)
class Outage:
    start: float  # unix seconds, the first missed round
    end: float  # unix seconds, the first answered round after it
    where: str  # link | gateway | beyond

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class Round:
    """One round of probes: None for a probe not sent (no such target, or not permitted)."""

    at: float  # unix seconds
    link_up: bool | None
    gateway: bool | None
    beyond: bool | None

    def broken(self) -> str | None:
        """Where this round failed, nearest the office first; None when everything probed answered."""
        if self.link_up is False:
            return "link"
        if self.gateway is False:
            return "gateway"
        if self.beyond is False:
            return "beyond"
        return None


@dataclass
class OutageTracker:
    """Rounds in, outages out: `down_after` failed rounds in a row open one, an answered round closes it."""

    down_after: int = 3
    misses: list[Round] = field(default_factory=list)  # the current run of failed rounds
    open_since: float | None = None
    open_where: str | None = None

    def observe(self, r: Round) -> Outage | None:
        """Feed one round; returns the outage this round closed, if any."""
        where = r.broken()
        if where is not None:
            self.misses.append(r)
            if self.open_since is None and len(self.misses) >= self.down_after:
                self.open_since = self.misses[0].at
            if self.open_since is not None:
                seen = [m.broken() for m in self.misses]
                self.open_where = min((w for w in seen if w), key=WHERE_ORDER.index)
            return None
        closed = None
        if self.open_since is not None and self.open_where is not None:
            closed = Outage(self.open_since, r.at, self.open_where)
        self.misses, self.open_since, self.open_where = [], None, None
        return closed

    @property
    def down(self) -> bool:
        return self.open_since is not None


class DailyBudget:
    """Bytes per UTC day: `spend` says whether `n` more fit today; the first refusal of a day is reported."""

    def __init__(self, limit: int, on_exhausted: Callable[[str], None] = lambda _day: None) -> None:
        self.limit, self.on_exhausted = limit, on_exhausted
        self.day, self.used, self.refused = "", 0, False

    def spend(self, n: int, now: float | None = None) -> bool:
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))
        if day != self.day:
            self.day, self.used, self.refused = day, 0, False
        if self.used + n > self.limit:
            if not self.refused:
                self.refused = True
                log.warning("heartbeat: daily data cap of %d bytes reached; resting until tomorrow (UTC)", self.limit)
                self.on_exhausted(day)
            return False
        self.used += n
        return True


class Heartbeat:
    """The daemon's heartbeat thread: probe every interval, feed the tracker, log closed outages."""

    def __init__(self, cfg: HeartbeatConfig, probe: Callable[[], Round], record: Callable[[Outage], None],
                 spend: Callable[[int], bool], stop: threading.Event) -> None:
        self.cfg, self.probe, self.record, self.spend, self.stop_event = cfg, probe, record, spend, stop
        self.tracker = OutageTracker(cfg.down_after)
        self.thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self.thread.start()
        return self

    def _loop(self) -> None:
        next_round = time.monotonic()
        while not self.stop_event.is_set():
            try:
                if self.spend(PROBE_WIRE_BYTES * (2 if self.cfg.test_server else 1)):
                    self.round()
            except Exception:  # a probe that broke must not end the heartbeat
                log.exception("heartbeat round failed")
            next_round += self.cfg.interval_s
            self.stop_event.wait(max(0.0, next_round - time.monotonic()))

    def round(self) -> Outage | None:
        closed = self.tracker.observe(self.probe())
        if closed is not None:
            log.warning("line outage %s - %s (%.0f s) at the %s", _iso(closed.start), _iso(closed.end),
                        closed.duration_s, closed.where)
            self.record(closed)
        return closed


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def line_probe(wan_interface: str | None, test_server: str | None, cfg: HeartbeatConfig) -> Callable[[], Round]:
    """One round against this line: the WAN port's link, an echo to the default route's next hop and, when
    configured, one to the test server (its name resolved each round, as the checks do)."""
    from agent.checks.ping import echo
    from agent.netinfo import carrier_up, default_route

    def answered(address: str | None) -> bool | None:
        if not address:
            return None
        try:
            stats = echo(address, 1, 0.0, cfg.reply_timeout_s, 56, time.monotonic() + cfg.reply_timeout_s + 1)
        except PermissionError:
            return None  # ICMP not permitted for the agent: the round says nothing about this target
        except OSError:
            return False  # no route, network unreachable: the probe could not leave
        return bool(stats.rtts_ms)

    def server() -> str | None:
        if not (cfg.test_server and test_server):
            return None
        import ipaddress
        import socket

        host = test_server.rsplit(":", 1)[0] if test_server.count(":") == 1 else test_server
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            try:
                return str(socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0])
            except OSError:
                return None  # a name that does not resolve is the dns check's business, not an outage

    def probe() -> Round:
        route = default_route()
        iface = wan_interface if wan_interface and wan_interface != "auto" else (route.interface if route else None)
        link = carrier_up(iface) if iface else None
        hop = answered(route.gateway) if route and route.gateway else (False if route is None else None)
        beyond = answered(server()) if hop is not False and link is not False else None
        return Round(time.time(), link, hop, beyond)

    return probe
