"""linecheck's own throughput engine: multi-stream HTTP against a linecheck-testserver.

Per direction: start a few streams, add more while the rate grows, discard the ramp-up, stop when
the moving average is stable or at the byte/time cap (ramp.py). Meanwhile a prober measures
latency on its own connection, and the WAN counters and CPU are sampled (sampler.py) so that
cross-traffic and capacity can be told apart from the test's own share.

A test the line interrupts is not a slow line: when the WAN port loses its link, or no byte moves on
any stream for `stall_s`, the direction stops at once and the test says it was interrupted (and
why); the remaining directions are not run. Its figures stay null: an average with the gap in it
would read as a slow line. A direction stopped by a cap before its rate settled keeps its figures
with `stable_*_flag` 0, and the check does not judge it against the plan (linecheck/speed.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from agent.netinfo import carrier_up
from agent.throughput.errors import MeasurementFailed
from agent.throughput.probes import Prober, idle_latency, median, trimmed_mean
from agent.throughput.ramp import Controller, Phase, RampSettings
from agent.throughput.result import ThroughputResult, mbps
from agent.throughput.sampler import CpuMeter, WanSample, wan_sample
from agent.throughput.serverinfo import server_limited
from agent.throughput.streams import (
    DownloadStream,
    Stream,
    UploadStream,
    connect,
    raise_for,
    read_head,
    read_small_body,
)
from linecheck.throughput import protocol as p
from linecheck.throughput.payload import Payload

ADMIT_TIMEOUT_S = 10.0  # the admission answer, start to end


@dataclass
class EngineOptions:
    host: str
    port: int = p.DEFAULT_PORT
    token: str | None = None
    directions: tuple[str, ...] = ("down", "up")
    max_bytes: int = 2 * 1024**3  # per test, both directions together
    max_direction_s: float = 15.0
    wan_interface: str | None = None
    max_cross_share: float = 0.5  # cross-traffic above this share of capacity: result not trusted
    stall_s: float = 2.0  # no byte moved on any stream for this long: the test is interrupted
    ramp: RampSettings = field(default_factory=RampSettings)


@dataclass
class DirectionOutcome:
    rate_bps: float | None
    bytes_used: int
    streams: int
    duration_s: float
    stop_reason: str
    ramp_complete: bool
    loaded_rtts: list[float]
    wan_payload_bps: float | None  # all WAN payload in this direction over the measurement window
    interrupted: str | None = None  # why the line interrupted this direction (link lost, streams stalled)
    settled: bool = False  # the rate settled (Controller.settled): stopped as stable, or flat at the cap


def admit(opts: EngineOptions, test_id: str) -> None:
    """Ask the server for a slot before loading the line (a busy server answers 503 here)."""
    sock = connect(opts.host, opts.port)
    sock.settimeout(ADMIT_TIMEOUT_S)
    deadline = time.monotonic() + ADMIT_TIMEOUT_S  # for the whole exchange, not per recv
    try:
        sock.sendall(p.raw_request("GET", p.download_target(p.ADMISSION_BYTES, test_id), opts.host,
                                   p.auth_header(opts.token)))
        buf = memoryview(bytearray(65536))
        status, headers, early = read_head(sock, buf, deadline)
        raise_for(status, read_small_body(sock, buf, headers, early, deadline))
    except OSError as exc:
        raise MeasurementFailed(f"server {opts.host}:{opts.port} did not answer: {exc}") from exc
    finally:
        sock.close()


def run_direction(opts: EngineOptions, direction: str, test_id: str, byte_cap: int, cpu: CpuMeter,
                  payload: Payload | None) -> DirectionOutcome:
    stop = threading.Event()
    streams: list[Stream] = []
    ctl = Controller(opts.ramp)

    def spawn(n: int) -> None:
        for _ in range(n):
            if direction == "down":
                s: Stream = DownloadStream(opts.host, opts.port, test_id, stop, opts.token)
            else:
                s = UploadStream(opts.host, opts.port, test_id, stop, opts.token, payload=payload)
            s.start()
            streams.append(s)

    prober = Prober(opts.host, opts.port)
    wan: list[WanSample | None] = []
    started = time.monotonic()
    spawn(ctl.streams)
    prober.start()
    ctl.feed(started, 0)
    wan.append(wan_sample(opts.wan_interface, started))
    next_cpu = started + 1.0
    total = 0
    moved_at, moved = started, 0  # when the byte count last grew (a stall detector)
    interrupted: str | None = None
    try:
        while True:
            stop.wait(opts.ramp.interval_s)  # the sampling clock of the controller
            before = time.monotonic()
            total = sum(s.progress() for s in streams)
            w = wan_sample(opts.wan_interface, before)
            now = (before + time.monotonic()) / 2  # the counters were read within this span
            wan.append(w)
            if now >= next_cpu:
                cpu.sample()
                next_cpu = now + 1.0
            if total > moved:
                moved_at, moved = now, total
            interrupted = _interruption(opts, direction, now - started, now - moved_at)
            if interrupted is not None:
                ctl.finish("interrupted")
                break
            failed = next((s.error for s in streams if s.error is not None), None)
            if failed is not None:
                raise failed
            spawn(ctl.feed(now, total))
            if ctl.phase is Phase.DONE:
                break
            if total >= byte_cap:
                ctl.finish("byte cap")
                break
            if now - started >= opts.max_direction_s:
                ctl.finish("time cap")
                break
    finally:
        stop.set()
        for s in streams:
            s.halt()
        prober.stop()
        for s in streams:
            s.join(5)
    idx = ctl.window_indices()
    rtts: list[float] = []
    wan_bps = None
    if interrupted is not None:
        return DirectionOutcome(rate_bps=None, bytes_used=total, streams=len(streams),
                                duration_s=round(time.monotonic() - started, 3), stop_reason="interrupted",
                                ramp_complete=ctl.ramp_complete, loaded_rtts=[], wan_payload_bps=None,
                                interrupted=interrupted)
    if idx is not None:
        a, b = idx
        t0, t1 = ctl.sample_time(a), ctl.sample_time(b)
        rtts = prober.between(t0, t1)
        wa, wb = wan[a], wan[b]
        if wa is not None and wb is not None and t1 > t0:
            down, up = wb.payload_since(wa)
            wan_bps = (down if direction == "down" else up) * 8 / (t1 - t0)
    return DirectionOutcome(rate_bps=ctl.rate_bps(), bytes_used=total, streams=len(streams),
                            duration_s=round(time.monotonic() - started, 3), stop_reason=ctl.stop_reason or "stopped",
                            ramp_complete=ctl.ramp_complete, loaded_rtts=rtts, wan_payload_bps=wan_bps,
                            settled=ctl.settled())


def _interruption(opts: EngineOptions, direction: str, elapsed_s: float, still_s: float) -> str | None:
    """Why the line interrupted the test now, or None: the WAN link lost, or nothing moved for stall_s."""
    what = f"{direction}load"
    if opts.wan_interface and carrier_up(opts.wan_interface) is False:
        return f"the WAN link {opts.wan_interface} went down {elapsed_s:.1f} s into the {what}"
    if still_s >= opts.stall_s:
        return f"no data moved for {still_s:.1f} s, {elapsed_s:.1f} s into the {what} (streams stalled)"
    return None


def measure(opts: EngineOptions) -> ThroughputResult:
    """Run the test; raises MeasurementFailed (ServerBusy when refused) when there is no number."""
    result = ThroughputResult("linecheck", f"linecheck://{opts.host}:{opts.port}")
    m = result.metrics
    test_id = uuid.uuid4().hex[:16]
    cpu = CpuMeter()
    idle = idle_latency(opts.host, opts.port)
    med_idle = median(idle)
    m["latency_idle_ms"] = round(med_idle, 3) if med_idle is not None else None
    admit(opts, test_id)
    payload = Payload() if "up" in opts.directions else None
    loaded: list[float] = []
    try:
        for direction in opts.directions:
            if result.interrupted is not None:
                result.notes.append(f"{direction}: not run (the test was interrupted)")
                continue
            cap = max(1, opts.max_bytes // len(opts.directions))
            out = run_direction(opts, direction, test_id, cap, cpu, payload)
            m[f"interrupted_{direction}_flag"] = 1 if out.interrupted else 0
            if out.interrupted is not None:
                result.interrupted = out.interrupted
                m[f"stable_{direction}_flag"] = 0
                m[f"streams_{direction}_count"] = out.streams
                m[f"bytes_{direction}_bytes"] = out.bytes_used
                m[f"duration_{direction}_s"] = out.duration_s
                result.notes.append(f"{direction}: interrupted after {out.duration_s:g} s: {out.interrupted}")
                continue
            rate = out.rate_bps
            m[f"{direction}_mbps"] = mbps(rate)
            m[f"streams_{direction}_count"] = out.streams
            m[f"bytes_{direction}_bytes"] = out.bytes_used
            m[f"duration_{direction}_s"] = out.duration_s
            m[f"stable_{direction}_flag"] = 1 if out.settled else 0
            med = median(out.loaded_rtts)
            m[f"latency_loaded_{direction}_ms"] = round(med, 3) if med is not None else None
            loaded += out.loaded_rtts
            if out.wan_payload_bps is not None and rate is not None:
                # The test's own bytes are part of the WAN bytes; never report capacity below them.
                capacity = max(out.wan_payload_bps, rate)
                m[f"capacity_{direction}_mbps"] = mbps(capacity)
                m[f"cross_traffic_{direction}_mbps"] = mbps(capacity - rate)
            note = f"{direction}: {out.stop_reason} after {out.duration_s:g} s with {out.streams} streams"
            if not out.ramp_complete:
                note += " (stopped before the rate settled: a lower bound)"
            elif out.settled and out.stop_reason != "stable":
                note += " (the rate was flat over the measurement window: settled)"
            result.notes.append(note)
    finally:
        if payload is not None:
            payload.close()
    shares = [(m[f"cross_traffic_{d}_mbps"] or 0) / m[f"capacity_{d}_mbps"]  # type: ignore[operator]
              for d in opts.directions if m.get(f"capacity_{d}_mbps")]
    if shares:
        m["cross_traffic_high_flag"] = 1 if max(shares) > opts.max_cross_share else 0
    tm = trimmed_mean(loaded)
    m["responsiveness_rpm"] = round(60000.0 / tm) if tm else None
    cpu.sample()
    m["cpu_max_pct"] = cpu.max_pct
    # Was the server itself full while it served us? Then this measured the server, not the line.
    limited, why = server_limited(opts.host, opts.port, opts.token, test_id)
    m["server_limited_flag"] = limited
    if limited:
        result.notes.append(f"the server was saturated during the test ({'; '.join(why) or 'it says so'}): "
                            "its figures are not judged against the plan")
    return result
