"""One interface over every way to measure throughput: `measure(spec, settings) -> ThroughputResult`.

A server spec names the backend and the server, and the result's `target` repeats it:
  linecheck://HOST:PORT      our engine against a linecheck-testserver (default; HOST:PORT alone)
  speedtest://HOST:PORT      speedtest-cli against a carrier's Ookla "mini" server (local config)
  speedtest://speedtest.net  speedtest-cli against public speedtest.net servers (its own config)
  iperf3://HOST:PORT         iperf3 -J against an iperf3 server
Other backends get the same cross-traffic accounting from the WAN counters, over their whole
run per direction (they do not discard their ramp-up, so it is less exact than ours).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.throughput import engine
from agent.throughput.errors import BackendError
from agent.throughput.ramp import RampSettings
from agent.throughput.result import ThroughputResult, mbps
from agent.throughput.sampler import CpuMeter, wan_sample
from linecheck import stamp
from linecheck.throughput import protocol

BACKENDS = ("linecheck", "speedtest", "iperf3")
# Speedtest Mini servers conventionally listen on 8080; linecheck's own test server does not (protocol.DEFAULT_PORT).
DEFAULT_PORTS = {"linecheck": protocol.DEFAULT_PORT, "speedtest": 8080, "iperf3": 5201}


@dataclass(frozen=True)
class ServerSpec:
    backend: str
    host: str | None  # None: speedtest.net's public servers
    port: int | None

    @property
    def target(self) -> str:
        if self.host is None:
            return f"{self.backend}://speedtest.net"
        return f"{self.backend}://{self.host}:{self.port}"


def parse_server(text: str) -> ServerSpec:
    """'198.18.1.1:8070', 'linecheck://h:p', 'speedtest://h:p', 'speedtest://speedtest.net', 'iperf3://h'."""
    backend, sep, rest = text.partition("://")
    if not sep:
        backend, rest = "linecheck", text
    if backend not in BACKENDS:
        raise BackendError(f"unknown throughput backend {backend!r} in {text!r}; known: {', '.join(BACKENDS)}")
    rest = rest.strip("/")
    if backend == "speedtest" and rest in ("speedtest.net", "www.speedtest.net", ""):
        return ServerSpec(backend, None, None)
    host, colon, port = rest.rpartition(":")
    if not colon:
        host, port = rest, str(DEFAULT_PORTS[backend])
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError(f"bad throughput server {text!r}: expected [backend://]HOST:PORT")
    return ServerSpec(backend, host, int(port))


@dataclass
class Settings:
    directions: tuple[str, ...] = ("down", "up")
    max_bytes: int = 2 * 1024**3
    max_direction_s: float = 15.0
    wan_interface: str | None = None
    token: str | None = None
    max_cross_share: float = 0.5
    iperf_streams: int = 4
    ramp: RampSettings = field(default_factory=RampSettings)
    plan_down_mbps: float | None = None  # the line's plan: our engine sizes streams and buffers from its BDP
    plan_up_mbps: float | None = None
    stamp_port: int | None = stamp.DEFAULT_PORT  # the server's STAMP reflector: loss idle and under load


def measure(server: str, settings: Settings) -> ThroughputResult:
    spec = parse_server(server)
    if spec.backend == "linecheck":
        assert spec.host is not None and spec.port is not None
        return engine.measure(engine.EngineOptions(
            host=spec.host, port=spec.port, token=settings.token, directions=settings.directions,
            max_bytes=settings.max_bytes, max_direction_s=settings.max_direction_s,
            wan_interface=settings.wan_interface, max_cross_share=settings.max_cross_share, ramp=settings.ramp,
            plan_down_bps=settings.plan_down_mbps * 1e6 if settings.plan_down_mbps else None,
            plan_up_bps=settings.plan_up_mbps * 1e6 if settings.plan_up_mbps else None,
            stamp_port=settings.stamp_port))
    return _measure_external(spec, settings)


def _measure_external(spec: ServerSpec, settings: Settings) -> ThroughputResult:
    result = ThroughputResult(spec.backend, spec.target)
    m = result.metrics
    cpu = CpuMeter()
    state: dict[str, object] = {}

    def one(direction: str) -> tuple[float, int, int]:
        if spec.backend == "iperf3":
            from agent.throughput.iperf import run_iperf3

            assert spec.host is not None and spec.port is not None
            return run_iperf3(spec.host, spec.port, direction, settings.max_direction_s, settings.iperf_streams)
        from agent.throughput.ookla import idle_ping_ms, run_speedtest

        st, bps, used = run_speedtest(None, spec.host, spec.port, direction, state.get("st"))  # type: ignore[arg-type]
        state["st"] = st
        m["latency_idle_ms"] = idle_ping_ms(st)
        return bps, used, st.config["threads"]["download" if direction == "down" else "upload"]

    for direction in settings.directions:
        _accounted(direction, one, settings, result)
        cpu.sample()
    m["cpu_max_pct"] = cpu.max_pct
    return result


def _accounted(direction: str, run: Callable[[str], tuple[float, int, int]], settings: Settings,
               result: ThroughputResult) -> None:
    m = result.metrics
    t0 = time.monotonic()
    w0 = wan_sample(settings.wan_interface, t0)
    bps, used, streams = run(direction)
    t1 = time.monotonic()
    w1 = wan_sample(settings.wan_interface, t1)
    m[f"{direction}_mbps"] = mbps(bps)
    m[f"bytes_{direction}_bytes"] = used
    m[f"streams_{direction}_count"] = streams
    m[f"duration_{direction}_s"] = round(t1 - t0, 3)
    if w0 is not None and w1 is not None and t1 > t0:
        down, up = w1.payload_since(w0)
        # Whole-run average (ramp included): both the test's share and the total are averages.
        wan_bps = (down if direction == "down" else up) * 8 / (t1 - t0)
        own_bps = used * 8 / (t1 - t0)
        m[f"cross_traffic_{direction}_mbps"] = mbps(max(0.0, wan_bps - own_bps))
        capacity = bps + max(0.0, wan_bps - own_bps)
        m[f"capacity_{direction}_mbps"] = mbps(capacity)
        share = (capacity - bps) / capacity if capacity else 0
        m["cross_traffic_high_flag"] = max(int(m.get("cross_traffic_high_flag") or 0),
                                           1 if share > settings.max_cross_share else 0)
    result.notes.append(f"{direction}: {result.backend} whole run of {t1 - t0:.1f} s")
