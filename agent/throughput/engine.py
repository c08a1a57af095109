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
from agent.throughput import sizing
from agent.throughput.errors import MeasurementFailed
from agent.throughput.lossprobe import LossProber, idle_loss
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
from linecheck import stamp
from linecheck.throughput import protocol as p
from linecheck.throughput.payload import Payload

ADMIT_TIMEOUT_S = 10.0  # the admission answer, start to end
PLAN_GOODPUT = 1448 / 1514  # TCP payload of a full Ethernet frame: what a plan's rate carries at most


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
    plan_down_bps: float | None = None  # the line's plan: with the idle RTT, the BDP (sizing.py)
    plan_up_bps: float | None = None
    stamp_port: int | None = stamp.DEFAULT_PORT  # the server's STAMP reflector: loss under load (None: not measured)


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
    sizing: str | None = None  # the BDP and what it chose (sizing.Sizing.describe)
    retrans_pct: float | None = None  # upload: retransmitted share of the bytes sent in the window
    own_sent_bps: float | None = None  # upload: what the streams put on the wire, resent bytes included
    loss_pct: float | None = None  # STAMP probes lost while this direction loaded the line (lossprobe.py)
    loss_why: str | None = None  # why loss_pct is None


def _sized(opts: EngineOptions, direction: str, rtt_s: float | None) -> tuple[Controller, sizing.Sizing | None]:
    """The controller for one direction, its streams and buffers from the BDP (plan x idle RTT), and
    later steps from the ramp's estimate of the rate x idle RTT (ramp.Controller.stream_target)."""
    s = opts.ramp
    limit = sizing.autotune_limit(direction)
    plan = opts.plan_down_bps if direction == "down" else opts.plan_up_bps
    sized = sizing.choose(plan, rtt_s, limit, s.start_streams, s.max_streams)
    # With the plan's BDP known, the ramp may at most double the streams it needs: more streams than the
    # line needs overflow its queue together (BBR's start-up, and loss-based senders' probing), and the
    # loss bursts that follow each step made the window's edges read high (100 Mbit/s at 20 ms RTT with 12
    # streams: 96.9 Mbit/s of goodput where 95.6 is the most the rate carries; 4 streams: 95.55, no drops).
    settings = s if sized is None else RampSettings(**{**s.__dict__, "start_streams": sized.streams,
                                                       "max_streams": min(s.max_streams, 2 * sized.streams)})
    target = None if not rtt_s else (lambda bps: sizing.streams_for(bps, rtt_s, limit))
    # Within 5 % of the plan's goodput (1448 of each 1514-byte frame) the streams carry the plan: stop adding.
    enough = plan * PLAN_GOODPUT * 0.95 if sized is not None and plan else None
    return Controller(settings, rtt_s=rtt_s or 0.0, stream_target=target, enough_bps=enough), sized


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
                  payload: Payload | None, rtt_s: float | None = None) -> DirectionOutcome:
    stop = threading.Event()
    streams: list[Stream] = []
    ctl, sized = _sized(opts, direction, rtt_s)
    buffer = sized.buffer_bytes if sized else None

    def spawn(n: int) -> None:
        nonlocal buffer
        if n and streams and rtt_s:  # more streams from the ramp's estimate: do they need larger buffers?
            est = sizing.choose(ctl.moving_average(), rtt_s, sizing.autotune_limit(direction),
                                opts.ramp.start_streams, opts.ramp.max_streams)
            if est is not None and est.buffer_bytes and (buffer or 0) < est.buffer_bytes:
                buffer = est.buffer_bytes
        for _ in range(n):
            if direction == "down":
                s: Stream = DownloadStream(opts.host, opts.port, test_id, stop, opts.token, buffer)
            else:
                s = UploadStream(opts.host, opts.port, test_id, stop, opts.token, buffer, payload=payload)
            s.start()
            streams.append(s)

    def sent() -> tuple[int, int]:  # upload: (bytes sent, bytes resent) by every stream so far
        ups = [s for s in streams if isinstance(s, UploadStream)]
        return sum(s.sent for s in ups), sum(s.retrans for s in ups)

    prober = Prober(opts.host, opts.port)
    lossprober = LossProber(opts.host, opts.stamp_port) if opts.stamp_port else None
    wan: list[WanSample | None] = []
    sends: list[tuple[int, int]] = []  # per sample, as wan
    started = time.monotonic()
    spawn(ctl.streams)
    prober.start()
    if lossprober is not None:
        lossprober.start()
    ctl.feed(started, 0)
    wan.append(wan_sample(opts.wan_interface, started))
    sends.append((0, 0))
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
            sends.append(sent())
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
        if lossprober is not None:
            lossprober.stop()  # waits for the replies still queued behind the test's last bytes
        for s in streams:
            s.join(5)
    idx = ctl.window_indices()
    rtts: list[float] = []
    wan_bps = retrans_pct = own_sent_bps = loss = None
    loss_why: str | None = "not measured (no STAMP port)" if lossprober is None else None
    if interrupted is not None:
        return DirectionOutcome(rate_bps=None, bytes_used=total, streams=len(streams),
                                duration_s=round(time.monotonic() - started, 3), stop_reason="interrupted",
                                ramp_complete=ctl.ramp_complete, loaded_rtts=[], wan_payload_bps=None,
                                interrupted=interrupted)
    if idx is not None:
        a, b = idx
        t0, t1 = ctl.sample_time(a), ctl.sample_time(b)
        rtts = prober.between(t0, t1)
        if lossprober is not None:
            loss, _, loss_why = lossprober.loss_pct(t0, t1)
        wa, wb = wan[a], wan[b]
        if wa is not None and wb is not None and t1 > t0:
            down, up = wb.payload_since(wa)
            wan_bps = (down if direction == "down" else up) * 8 / (t1 - t0)
        (sa, ra), (sb, rb) = sends[a], sends[b]
        if direction == "up" and sb > sa and t1 > t0:
            retrans_pct = 100.0 * (rb - ra) / (sb - sa)
            own_sent_bps = (sb - sa) * 8 / (t1 - t0)
    return DirectionOutcome(rate_bps=ctl.rate_bps(), bytes_used=total, streams=len(streams),
                            duration_s=round(time.monotonic() - started, 3), stop_reason=ctl.stop_reason or "stopped",
                            ramp_complete=ctl.ramp_complete, loaded_rtts=rtts, wan_payload_bps=wan_bps,
                            settled=ctl.settled(), sizing=sized.describe() if sized else None,
                            retrans_pct=retrans_pct, own_sent_bps=own_sent_bps, loss_pct=loss, loss_why=loss_why)


def capacity_bps(wan_bps: float, rate_bps: float, own_sent_bps: float | None) -> float:
    """The line's capacity: the test's rate plus the office's traffic during the window.

    Download: the WAN interface counts what arrived, so every WAN byte crossed the line (the test's
    own bytes are among them; capacity is never below the test's rate). Upload: the interface counts
    what the gateway handed to the line, before its queue: frames the queue then dropped and their
    retransmissions count twice or more, and a queue filling during the window counts bytes not yet
    carried (a 1 Gbit/s cap at 20 ms RTT read 1040-1160 Mbit/s). So the office's share is the WAN bytes
    minus what the test's own streams sent (tcpi_bytes_sent, resent bytes included), and capacity is
    the test's delivered rate plus that share."""
    if own_sent_bps is None:
        return max(wan_bps, rate_bps)
    return rate_bps + max(0.0, wan_bps - own_sent_bps)


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
    loss_note = None
    if opts.stamp_port:
        lost, _, why = idle_loss(opts.host, opts.stamp_port)
        m["loss_idle_pct"] = round(lost, 2) if lost is not None else None
        if why:  # said after the directions' notes: those say first how each direction ended
            loss_note = f"loss probes: {why}"
    admit(opts, test_id)
    payload = Payload() if "up" in opts.directions else None
    loaded: list[float] = []
    try:
        for direction in opts.directions:
            if result.interrupted is not None:
                result.notes.append(f"{direction}: not run (the test was interrupted)")
                continue
            cap = max(1, opts.max_bytes // len(opts.directions))
            out = run_direction(opts, direction, test_id, cap, cpu, payload,
                                med_idle / 1000 if med_idle else None)
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
            m[f"loss_loaded_{direction}_pct"] = round(out.loss_pct, 2) if out.loss_pct is not None else None
            if direction == "up":
                m["retrans_up_pct"] = round(out.retrans_pct, 3) if out.retrans_pct is not None else None
            if out.wan_payload_bps is not None and rate is not None:
                capacity = capacity_bps(out.wan_payload_bps, rate, out.own_sent_bps)
                m[f"capacity_{direction}_mbps"] = mbps(capacity)
                m[f"cross_traffic_{direction}_mbps"] = mbps(capacity - rate)
            note = f"{direction}: {out.stop_reason} after {out.duration_s:g} s with {out.streams} streams"
            if out.sizing:
                note += f" ({out.sizing})"
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
    if loss_note:
        result.notes.append(loss_note)
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
