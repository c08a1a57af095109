"""Nearest server: of several configured test servers, try the one with the lowest idle round trip
that has room for a test; a busy one is tried only after every server with room.

For each linecheck server: a few `GET /latency` round trips on an idle line (the minimum: the
path's delay, not its momentary queue) and `GET /status` (is a slot free? linecheck/throughput
/sessions.py). Other backends get the TCP connect time and no room check. A server that does not
answer is left out. The order is a preference: the check still meets "server busy" at admission
when another agent took the last slot in between, and then moves to the next server.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.throughput.backends import parse_server
from agent.throughput.errors import MeasurementFailed
from agent.throughput.probes import idle_latency
from agent.throughput.serverinfo import has_room, status

PROBES = 3


@dataclass(frozen=True)
class Candidate:
    spec: str  # as configured
    target: str  # backend://host:port
    rtt_ms: float | None  # None: did not answer
    room: bool | None  # None: the server does not say


def probe(spec: str, token: str | None) -> Candidate:
    s = parse_server(spec)
    if s.host is None or s.port is None:  # speedtest.net picks its own server
        return Candidate(spec, s.target, None, None)
    try:
        if s.backend == "linecheck":
            rtt: float | None = min(idle_latency(s.host, s.port, count=PROBES, interval_s=0.02))
            room = has_room(status(s.host, s.port, token))
        else:
            t0 = time.perf_counter()
            socket.create_connection((s.host, s.port), timeout=3).close()
            rtt, room = (time.perf_counter() - t0) * 1000, None
    except (OSError, MeasurementFailed):
        return Candidate(spec, s.target, None, None)
    return Candidate(spec, s.target, None if rtt is None else round(rtt, 3), room)


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Servers with room (or not saying) by idle RTT, then busy ones by RTT; silent ones left out."""
    answered = [c for c in candidates if c.rtt_ms is not None or c.target.endswith("speedtest.net")]
    return sorted(answered, key=lambda c: (c.room is False, c.rtt_ms if c.rtt_ms is not None else float("inf")))


def choose(specs: list[str], token: str | None) -> list[Candidate]:
    """The servers in the order to try them (probed in parallel: one slow server does not delay the rest)."""
    if len(specs) == 1:
        return [Candidate(specs[0], parse_server(specs[0]).target, None, None)]
    with ThreadPoolExecutor(max_workers=min(8, len(specs))) as pool:
        return rank(list(pool.map(lambda sp: probe(sp, token), specs)))
