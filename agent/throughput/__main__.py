"""`python -m agent.throughput --server SPEC`: one measurement, printed as JSON (tests, bench, ops).

SPEC is a server spec of agent.throughput.backends (e.g. 198.18.1.1:8070, speedtest://h:p,
iperf3://h:5201). Exit 0 with {"status": "ok", ...}; exit 1 with {"status", "reason"} when the
measurement failed; exit 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.throughput.backends import Settings, measure, parse_server
from agent.throughput.errors import BackendError, MeasurementFailed, ServerBusy
from agent.throughput.ramp import RampSettings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.throughput", description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="server spec, e.g. 198.18.1.1:8070 or speedtest://h:p")
    p.add_argument("--wan-interface", help="interface whose counters give cross-traffic and capacity")
    p.add_argument("--directions", default="down,up")
    p.add_argument("--max-bytes", type=int, default=2 * 1024**3, help="byte cap for the whole test")
    p.add_argument("--max-s", type=float, default=15.0, help="time cap per direction")
    p.add_argument("--min-measure-s", type=float, default=1.0, help="shortest measurement after the ramp")
    p.add_argument("--max-streams", type=int, default=16)
    p.add_argument("--token")
    p.add_argument("--stamp-port", type=int, default=862, help="the server's STAMP reflector (loss probes; 0: none)")
    p.add_argument("--plan-mbps", help="the line's plan, DOWN[/UP] Mbit/s: streams and buffers from its BDP")
    a = p.parse_args(argv)
    directions = tuple(a.directions.split(","))
    try:
        parse_server(a.server)
        plan = _plan(a.plan_mbps)
        if not directions or any(d not in ("down", "up") for d in directions):
            raise BackendError(f"--directions: expected down, up or down,up, got {a.directions!r}")
    except BackendError as exc:
        print(f"python -m agent.throughput: {exc.reason}", file=sys.stderr)
        return 2
    settings = Settings(directions=directions, max_bytes=a.max_bytes, max_direction_s=a.max_s,
                        wan_interface=a.wan_interface, token=a.token,
                        ramp=RampSettings(min_measure_s=a.min_measure_s, max_streams=a.max_streams),
                        plan_down_mbps=plan[0], plan_up_mbps=plan[1], stamp_port=a.stamp_port or None)
    try:
        r = measure(a.server, settings)
    except MeasurementFailed as exc:
        print(json.dumps({"status": exc.status, "reason": exc.reason, "busy": isinstance(exc, ServerBusy)}))
        return 1
    print(json.dumps({"status": "ok", "backend": r.backend, "target": r.target, "metrics": r.metrics,
                      "notes": r.notes}))
    return 0


def _plan(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    down, _, up = text.partition("/")
    try:
        pair = float(down), float(up or down)
    except ValueError:
        pair = (0.0, 0.0)
    if not all(0 < x < 1e7 for x in pair):
        raise BackendError(f"--plan-mbps: expected DOWN or DOWN/UP in Mbit/s, got {text!r}")
    return pair


if __name__ == "__main__":
    sys.exit(main())
