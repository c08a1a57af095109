"""throughput: download and upload rate, line capacity, cross-traffic and latency under load.

Runs one backend (agent/throughput/backends.py; our engine against the carrier's
linecheck-testserver by default) within a per-test byte cap and a daily data budget kept in the
check's state, so a fleet of gateways cannot run up the office's data bill. A test the server
refused or that broke is a record with a reason and null metrics, never zeros.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.findings import finding
from agent.reasons import because, step
from linecheck import speed, stamp
from linecheck.i18n.phrases import Phrase
from linecheck.wire import Finding, MetricValue, Status

if TYPE_CHECKING:
    from agent.throughput.backends import Settings
    from agent.throughput.result import ThroughputResult

MIN_TEST_BYTES = 20 * 1000**2  # below this a test cannot say anything; skip instead
MAX_SERVERS = 8
SATURATED_NOTE = "the server was saturated"  # how the engine's note on a server-limited test begins


class ThroughputConfig(CheckConfig):
    server: str | None = Field(
        default=None,
        description="Server spec: HOST:PORT or linecheck://, speedtest://HOST:PORT, speedtest://speedtest.net, "
                    "iperf3://HOST:PORT; default: linecheck://line.test_server")
    servers: list[str] = Field(
        default_factory=list, max_length=MAX_SERVERS,
        description="Several server specs: the test runs against the one with the lowest idle round trip that "
                    "has room for a test (a busy one is tried only after the others); overrides `server`")
    busy_retries: int = Field(default=2, ge=0, le=5,
                              description="When every server is busy: tries again this many times, waiting "
                                          "busy_backoff_s, then twice that, ... within the check's time")
    busy_backoff_s: float = Field(default=5.0, gt=0, le=300, description="First wait after 'server busy'")
    directions: list[Literal["down", "up"]] = Field(default_factory=lambda: ["down", "up"], min_length=1)
    max_test_bytes: int = Field(default=1_000_000_000, ge=MIN_TEST_BYTES, description="Byte cap of one test")
    daily_budget_bytes: int = Field(default=5_000_000_000, ge=MIN_TEST_BYTES,
                                    description="Bytes all tests of one UTC day may use together")
    max_direction_s: float = Field(default=15.0, gt=0, le=120, description="Time cap per direction")
    min_measure_s: float = Field(default=1.0, gt=0, le=60, description="Shortest measurement after the ramp-up")
    max_streams: int = Field(default=16, ge=1, le=64)
    max_cross_traffic_pct: float = Field(default=50.0, gt=0, le=100,
                                         description="Cross-traffic above this share of capacity: not trusted")
    cpu_limited_pct: float = Field(default=95.0, gt=0, le=100,
                                   description="Gateway CPU at or above this during the test: CPU-limited")
    slow_pct_of_plan: float = Field(default=speed.SLOW_PCT_OF_PLAN, ge=0, le=100,
                                    description="Capacity below this share of the plan: degraded")
    bufferbloat_added_ms: float = Field(default=100.0, gt=0,
                                        description="Round trips under load longer than idle by this much: "
                                                    "latency_under_load (bufferbloat)")
    loss_under_load_pct: float = Field(default=5.0, gt=0, le=100,
                                       description="Probes lost under load at or above this share, with the idle "
                                                   "line losing under a tenth of it: loss_under_load")
    stamp_port: int | None = Field(default=stamp.DEFAULT_PORT, ge=1, le=65535,
                                   description="The test server's STAMP reflector, probed for loss idle and under "
                                               "load (our engine only); null: loss is not measured")
    token_file: Path | None = Field(default=None, description="File holding the test server's token")
    timeout_s: float = 90.0


def _budget_left(cfg: ThroughputConfig, state: dict) -> int:
    today = datetime.now(UTC).date().isoformat()
    if state.get("budget_day") != today:
        state["budget_day"] = today
        state["budget_used_bytes"] = 0
    return cfg.daily_budget_bytes - int(state.get("budget_used_bytes", 0))


def run(cfg: ThroughputConfig, ctx: CheckContext) -> Measurement:
    # The engine only when measuring: the daemon imports this module for its config (agent/checkproc.py).
    from agent.throughput.backends import Settings, parse_server
    from agent.throughput.errors import BackendError
    from agent.throughput.ramp import RampSettings

    spec_text = cfg.server or (f"linecheck://{ctx.line.test_server}" if ctx.line.test_server else None)
    specs = cfg.servers or ([spec_text] if spec_text else [])
    if not specs:
        return Measurement(Status.SKIPPED, because("no_throughput_server"))
    spec_text = specs[0]
    try:
        target = parse_server(spec_text).target
        for other in specs[1:]:
            parse_server(other)
        token = cfg.token_file.read_text().strip() if cfg.token_file else None
    except BackendError as exc:
        return Measurement(Status.ERROR, because("throughput_failed", diagnostic=exc.reason), target=spec_text)
    except OSError as exc:
        return Measurement(Status.ERROR, [because("cannot_read", path=str(cfg.token_file)),
                                          because("raw", diagnostic=exc.strerror or str(exc))], target=spec_text)
    left = _budget_left(cfg, ctx.state)
    if left < MIN_TEST_BYTES:
        return Measurement(Status.SKIPPED, because("check_budget_used_up", budget_bytes=cfg.daily_budget_bytes),
                           target=target)
    per_dir_s = min(cfg.max_direction_s, max(1.0, (ctx.remaining() - 5) / (len(cfg.directions) + 0.5)))
    settings = Settings(directions=tuple(cfg.directions), max_bytes=min(cfg.max_test_bytes, left),
                        max_direction_s=per_dir_s, wan_interface=ctx.line.wan_interface, token=token,
                        max_cross_share=cfg.max_cross_traffic_pct / 100,
                        ramp=RampSettings(min_measure_s=cfg.min_measure_s, max_streams=cfg.max_streams),
                        plan_down_mbps=ctx.line.plan_down_mbps, plan_up_mbps=ctx.line.plan_up_mbps,
                        stamp_port=cfg.stamp_port)
    outcome = _measure_nearest(cfg, ctx, specs, settings, token)
    if isinstance(outcome, Measurement):
        return outcome
    result = outcome
    ctx.state["budget_used_bytes"] = int(ctx.state.get("budget_used_bytes", 0)) + result.bytes_used
    return judge(cfg, ctx, result.metrics, result.target, result.notes, result.interrupted)


def _measure_nearest(cfg: ThroughputConfig, ctx: CheckContext, specs: list[str], settings: Settings,
                     token: str | None) -> ThroughputResult | Measurement:
    """The test against the nearest server with room (agent/throughput/select.py); on "server busy" the next
    one; when all are busy, again after a backoff while the check has time. A busy server is `error` with
    the reason (unavailable is not slow: it says nothing about the line); the target is the nearest."""
    import random
    import time

    from agent.throughput.backends import measure
    from agent.throughput.errors import MeasurementFailed, ServerBusy
    from agent.throughput.result import METRICS
    from agent.throughput.select import choose

    order = choose(specs, token)
    if not order:
        return Measurement(Status.FAILED, because("throughput_failed", diagnostic=(
            f"none of the {len(specs)} test servers answered")), dict.fromkeys(METRICS), specs[0][:200])
    wait = cfg.busy_backoff_s
    for attempt in range(cfg.busy_retries + 1):
        busy: ServerBusy | None = None
        for cand in order:
            ctx.progress(step("throughput", target=cand.target))
            try:
                return measure(cand.spec, settings)
            except ServerBusy as exc:
                busy = busy or exc  # the nearest server's refusal is the one reported
            except MeasurementFailed as exc:
                status = Status.ERROR if exc.status == "error" else Status.FAILED
                return Measurement(status, because("throughput_failed", diagnostic=exc.reason),
                                   dict.fromkeys(METRICS), cand.target)
        # Jittered, so agents refused together do not come back together.
        pause = wait * random.uniform(0.75, 1.25)
        if attempt == cfg.busy_retries or ctx.remaining() - pause < 20 + 2 * settings.max_direction_s:
            break
        time.sleep(pause)  # the backoff itself: nothing to wait for but time
        wait *= 2
    assert busy is not None
    return Measurement(Status.ERROR, because("throughput_busy", diagnostic=busy.reason), dict.fromkeys(METRICS),
                       order[0].target)


def judge(cfg: ThroughputConfig, ctx: CheckContext, m: dict, target: str, notes: list[str],
          interrupted: str | None = None) -> Measurement:
    """Status, reason and findings of a measured test. A test the line interrupted is `failed` with the
    reason and nothing judged; a direction that did not settle is reported, not judged. The engine's own
    notes (how each direction ended) are technical: they go along as diagnostics."""
    if interrupted is not None:
        return Measurement(Status.FAILED, because("throughput_interrupted", diagnostic=interrupted), m, target)
    findings: list[Finding] = []
    problems: list[Phrase] = []
    said = [because("throughput_note", diagnostic=n) for n in notes]
    unsettled = [d for d in ("down", "up") if speed.untrusted_reason(m, d) == "unsettled"]
    server_limited = m.get(speed.SERVER_LIMITED_FLAG) == 1
    if server_limited:  # first: it is why nothing below is judged (issue 22: overload is never a slow line)
        why = next((n[n.find("(") + 1:n.find(")")] for n in notes if n.startswith(SATURATED_NOTE)), "")
        said.insert(0, because("server_limited", diagnostic=why or "it says so"))
    if (m.get("cpu_max_pct") or 0) >= cfg.cpu_limited_pct:
        said.append(because("cpu_limited", cpu_pct=m["cpu_max_pct"]))
    if not speed.trusted(m):
        said.append(because("cross_traffic_untrusted"))
    for d in unsettled:
        said.append(because("unsettled", direction=d))
    implausible: list[Phrase] = []
    shares: dict[str, float | None] = {}
    for direction, plan in (("down", ctx.line.plan_down_mbps), ("up", ctx.line.plan_up_mbps)):
        j = speed.judge_speed(m, direction, plan, cfg.slow_pct_of_plan)  # the collector's rule judges the same way
        # Beside the Mbit/s, always the share of the plan: "healthy" next to 24,840 Mbit/s on a 500M plan
        # read as a fine line, while the test had never crossed it (issue 23).
        shares[f"{direction}_plan_pct"] = None if j.pct_of_plan is None else round(j.pct_of_plan, 1)
        if j.implausible and j.measured_mbps is not None and plan:
            got = j.measured_mbps
            times = got / plan
            implausible.append(because("implausible_speed", direction=direction, measured_mbps=got,
                                       plan_mbps=plan, times=round(times, 1)))
            findings.append(finding(
                "throughput_implausible", "warning", "throughput",
                f"The speed test measured {got:g} Mbit/s {direction}, {times:.0f} times the {plan:g} Mbit/s plan: "
                "it cannot have crossed the line (is the test server on this gateway or in the office?).",
                {"direction": direction, "measured_mbps": got, "plan_mbps": plan}))
        if j.slow and j.measured_mbps is not None and plan:
            got = j.measured_mbps
            problems.append(because("below_plan", direction=direction, measured_mbps=got,
                                    slow_pct=cfg.slow_pct_of_plan, plan_mbps=plan))
            findings.append(finding(
                "throughput_below_plan", "warning", "throughput",
                f"The line carried {got:g} Mbit/s {direction}, far below the {plan:g} Mbit/s plan.",
                {"direction": direction, "measured_mbps": got, "plan_mbps": plan}))
    # The line is slow to answer when busy, whatever its speed; a saturated server queues too, so not then.
    bloat = None if server_limited else latency_under_load(cfg, m)
    lossy = None if server_limited else loss_under_load(cfg, m)  # drops only when busy: not seen by idle probes
    if lossy is not None:
        problems.append(lossy[0])
        findings.append(lossy[1])
    if bloat is not None:
        problems.append(bloat[0])
        findings.append(bloat[1])
    m = {**shares, **m}  # first: the report shows a check's first figures
    if implausible:
        # Not ok (it would vouch for a line it never measured), not degraded (the line is not at fault):
        # the test could not measure the line. The finding makes it a problem the report counts.
        return Measurement(Status.ERROR, implausible + said, m, target, findings)
    reason = problems + said  # the first REASON_PARTS_MAX go on the wire (agent/reasons.py)
    measured = [d for d in ("down", "up") if m.get(f"{d}_mbps") is not None]
    if not problems and measured and (server_limited or set(measured) <= set(unsettled)):
        # Nothing settled (the figures are lower bounds), or the server was the bottleneck. Not ok (that
        # would vouch for them), not degraded (that would blame the line): the test could not measure it.
        return Measurement(Status.ERROR, reason, m, target)
    return Measurement(Status.DEGRADED if problems else Status.OK, reason or None, m, target, findings)


def latency_under_load(cfg: ThroughputConfig, m: dict) -> tuple[Phrase, Finding] | None:
    """Bufferbloat: round trips under load longer than idle by `bufferbloat_added_ms` or more, in the worse
    direction. The prober's RTTs ride a connection of their own beside the test's streams, so they wait
    in the same queue the office's calls would (the loaded RTTs and RPM of the IETF responsiveness draft)."""
    idle = m.get("latency_idle_ms")
    loaded = [(d, v) for d in ("down", "up") if isinstance(v := m.get(f"latency_loaded_{d}_ms"), int | float)]
    if not isinstance(idle, int | float) or not loaded:
        return None
    direction, worst = max(loaded, key=lambda x: x[1])
    added = worst - idle
    if added < cfg.bufferbloat_added_ms:
        return None
    rpm = m.get("responsiveness_rpm")
    detail: dict[str, MetricValue | str] = {
        "direction": direction, "latency_idle_ms": round(idle, 1), "latency_loaded_ms": round(worst, 1),
        "added_ms": round(added, 1), "responsiveness_rpm": rpm}
    message = (f"While the line is busy ({direction}load) round trips take {worst:.0f} ms instead of {idle:.0f} ms "
               f"(+{added:.0f} ms{f'; {rpm} round trips a minute' if rpm is not None else ''}): a deep buffer at "
               "the line's rate limit (bufferbloat). Calls and games stutter whenever someone downloads.")
    return (because("latency_under_load", direction=direction, loaded_ms=round(worst), idle_ms=round(idle),
                    added_ms=round(added)),
            finding("latency_under_load", "warning", "throughput", message, detail))


def loss_under_load(cfg: ThroughputConfig, m: dict) -> tuple[Phrase, Finding] | None:
    """Loss only under load: the STAMP probes beside the test (agent/throughput/lossprobe.py) lost at least
    `loss_under_load_pct` (5 %) in the worse direction, while the same probes on the idle line just before
    lost under a tenth of that (200 probes: none or one), and round trips under load in that direction stayed
    within a tenth of `bufferbloat_added_ms` (10 ms) of idle. Any test at a drop-tail queue loses some packets
    (the line emulator's 50 ms buffer at 100 Mbit/s: 0.6-0.9 % of probes beside our BBR streams), hence
    5 %; a line that also loses idle is `packet_loss` (ping, udp_latency), and under load its random loss
    adds to the queue's, so it is judged at idle, not here."""
    idle = m.get("loss_idle_pct")
    loaded = [(d, v) for d in ("down", "up") if isinstance(v := m.get(f"loss_loaded_{d}_pct"), int | float)]
    if not isinstance(idle, int | float) or not loaded:
        return None
    direction, worst = max(loaded, key=lambda x: x[1])
    if worst < cfg.loss_under_load_pct or idle >= cfg.loss_under_load_pct / 10:
        return None
    # Drops with a queue in front of them are a full buffer: TCP's own signal, and a deep one is
    # latency_under_load's to judge (the emulator's 50 ms buffer on a 60 ms line lost 11 % of the probes beside
    # 8 upload streams, a 400 ms buffer some too). Drops without queueing delay are what this finding names: a
    # shallow buffer or a policer. So the round trips under load in that direction must stay near idle.
    idle_ms, loaded_ms = m.get("latency_idle_ms"), m.get(f"latency_loaded_{direction}_ms")
    if not isinstance(idle_ms, int | float) or not isinstance(loaded_ms, int | float):
        return None
    if loaded_ms - idle_ms >= cfg.bufferbloat_added_ms / 10:
        return None
    detail: dict[str, MetricValue | str] = {"direction": direction, "loss_idle_pct": idle, "loss_loaded_pct": worst,
                                            "latency_added_ms": round(loaded_ms - idle_ms, 1),
                                            "retrans_up_pct": m.get("retrans_up_pct")}
    message = (f"While the line is busy ({direction}load) {worst:g}% of probe packets are lost, {idle:g}% when it "
               "is idle: the line drops traffic when loaded (a shallow buffer or a policer at its rate limit, or "
               "equipment that fails under load). Calls break up whenever someone downloads or uploads.")
    return (because("loss_under_load", direction=direction, loaded_pct=worst, idle_pct=idle),
            finding("loss_under_load", "warning", "throughput", message, detail))


SPEC = CheckSpec(kind="throughput", config=ThroughputConfig, run=run)
