"""The throughput engine's parts that need no line: control logic, parsers, accounting, the check's gates."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from agent.checks.base import CheckContext, LineInfo
from agent.checks.throughput import ThroughputConfig, judge
from agent.checks.throughput import run as run_check
from agent.reasons import english
from agent.throughput import tcpinfo
from agent.throughput.backends import ServerSpec, parse_server
from agent.throughput.errors import BackendError, MeasurementFailed, ServerBusy
from agent.throughput.iperf import parse as parse_iperf
from agent.throughput.ookla import LocalConfigSpeedtest
from agent.throughput.probes import trimmed_mean
from agent.throughput.ramp import Controller, Phase, RampSettings
from agent.throughput.result import METRICS
from agent.throughput.sampler import WanSample
from linecheck.catalogue import unlisted
from linecheck.wire import Status

DATA = Path(__file__).parent / "data" / "iperf3"


def feed_rates(ctl: Controller, rates_for_streams, intervals: int) -> list[int]:
    """Drive the controller with a rate (bit/s) that depends on the stream count; returns additions."""
    total, t, added = 0.0, 0.0, []
    ctl.feed(t, 0)
    for _ in range(intervals):
        t += ctl.settings.interval_s
        total += rates_for_streams(ctl.streams) * ctl.settings.interval_s / 8
        n = ctl.feed(t, int(total))
        if n:
            added.append(n)
        if ctl.phase is Phase.DONE:
            break
    return added


def test_streams_are_added_while_the_rate_grows_then_measurement_stops_when_stable() -> None:
    ctl = Controller(RampSettings(interval_s=0.1, start_streams=2, step_streams=2, max_streams=16))
    # Each stream gets 100 Mbit/s until 6 streams fill a 600 Mbit/s line.
    added = feed_rates(ctl, lambda n: min(n, 6) * 100e6, 200)
    assert added == [2, 2, 2]  # 2 -> 4 -> 6 -> 8 (the step to 8 gained nothing: ramp over)
    assert ctl.phase is Phase.DONE and ctl.stop_reason == "stable" and ctl.ramp_complete
    assert ctl.rate_bps() == pytest.approx(600e6, rel=1e-6)
    assert ctl.measured_s() >= ctl.settings.min_measure_s


def test_a_drifting_rate_never_counts_as_stable() -> None:
    ctl = Controller(RampSettings(interval_s=0.1, max_streams=4, start_streams=4))
    drift = iter([100e6 * (1.04 ** i) for i in range(200)])  # +4 % per interval, whatever the streams
    feed_rates(ctl, lambda _n: next(drift), 60)
    assert ctl.phase is Phase.MEASURE  # measuring (no more streams to add) but never steady


def test_a_flat_but_noisy_rate_stopped_by_a_cap_settled_a_climbing_one_did_not() -> None:
    """At real round-trip times the 0.1 s rates swing (here +-25 %, a 0.8 s square wave) and the
    stability criterion never holds; a cap then stops a rate that was flat all along: settled. A rate still
    climbing 1 % per interval, stopped the same way, differs between the window's halves: not settled."""
    noisy = Controller(RampSettings(interval_s=0.1, max_streams=4, start_streams=4))
    swing = iter([100e6 * (1.25 if i % 8 < 4 else 0.75) for i in range(200)])
    feed_rates(noisy, lambda _n: next(swing), 100)
    assert noisy.phase is Phase.MEASURE  # the criterion never held
    noisy.finish("time cap")
    assert noisy.settled() and noisy.rate_bps() == pytest.approx(100e6, rel=0.02)
    climbing = Controller(RampSettings(interval_s=0.1, max_streams=4, start_streams=4))
    rising = iter([100e6 * (1.01 ** i) for i in range(200)])
    feed_rates(climbing, lambda _n: next(rising), 100)
    climbing.finish("time cap")
    assert not climbing.settled()
    early = Controller(RampSettings(interval_s=0.1))
    for i in range(4):
        early.feed(i * 0.1, i * 1_000_000)
    early.finish("byte cap")
    assert not early.settled()  # stopped during the ramp


def test_stopped_during_ramp_uses_the_last_intervals() -> None:
    ctl = Controller(RampSettings(interval_s=0.1))
    ctl.feed(0.0, 0)
    for i in range(1, 4):
        ctl.feed(i * 0.1, i * 1_000_000)
    ctl.finish("byte cap")
    assert not ctl.ramp_complete and ctl.stop_reason == "byte cap"
    assert ctl.rate_bps() == pytest.approx(80e6)


def test_wan_payload_takes_headers_off_each_counted_packet() -> None:
    a = WanSample(0.0, rx_bytes=1000, tx_bytes=500, rx_packets=10, tx_packets=5)
    # 100 full-size frames down (1514 bytes each, 1448 payload) and 100 pure ACKs up (66 bytes).
    b = WanSample(1.0, rx_bytes=1000 + 100 * 1514, tx_bytes=500 + 100 * 66, rx_packets=110, tx_packets=105)
    assert b.payload_since(a) == (100 * 1448, 0)


def test_parse_server_specs() -> None:
    assert parse_server("198.18.1.1:8080") == ServerSpec("linecheck", "198.18.1.1", 8080)
    # no port: the test server's default, not the collector's 8080 (issue 23)
    assert parse_server("linecheck://srv.example") == ServerSpec("linecheck", "srv.example", 8070)
    assert parse_server("speedtest://10.0.0.1:80/").target == "speedtest://10.0.0.1:80"
    assert parse_server("speedtest://speedtest.net") == ServerSpec("speedtest", None, None)
    assert parse_server("iperf3://[::1]:5201") == ServerSpec("iperf3", "::1", 5201)
    for bad in ("ftp://x:1", "linecheck://:80", "h:99999", "h:port"):
        with pytest.raises(BackendError):
            parse_server(bad)


def test_iperf3_json_parser_on_captured_outputs() -> None:
    bps, used, streams = parse_iperf((DATA / "reverse_p2.json").read_text())
    doc = json.loads((DATA / "reverse_p2.json").read_text())
    assert bps == doc["end"]["sum_received"]["bits_per_second"] and streams == 2 and used > 0
    with pytest.raises(ServerBusy, match="server busy"):
        parse_iperf((DATA / "busy.json").read_text())
    with pytest.raises(BackendError):
        parse_iperf("iperf3: error - unable to connect")


def test_tcp_info_counts_acknowledged_bytes_on_a_real_connection() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    got = bytearray()
    client.sendall(b"x" * 100_000)
    while len(got) < 100_000:
        chunk = peer.recv(1 << 20)
        got.extend(chunk)
    deadline = time.monotonic() + 5
    while tcpinfo.bytes_acked(client) != 100_000 + 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the kernel's ACK state, bounded by the deadline
    assert tcpinfo.bytes_acked(client) == 100_000 + 1  # +1: the SYN counts as acknowledged
    assert tcpinfo.rtt_ms(client) is not None
    for s in (client, peer, server):
        s.close()


def test_speedtest_cli_is_built_without_contacting_speedtest_net(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    st = LocalConfigSpeedtest(timeout=10)
    assert st.config["threads"] == {"upload": 2, "download": 8}
    assert st.config["upload_max"] == 51 and st.config["sizes"]["download"][-1] == 4000


def test_trimmed_mean_drops_the_slowest_share() -> None:
    assert trimmed_mean([10.0] * 19 + [1000.0]) == 10.0
    assert trimmed_mean([]) is None


def ctx(test_server: str | None = "198.18.1.1:8080", plan: float | None = None) -> CheckContext:
    return CheckContext(line=LineInfo("wan0", [], plan, plan, test_server), state={},
                        deadline=time.monotonic() + 60)


def test_check_without_server_is_skipped_and_bad_spec_is_an_error() -> None:
    m = run_check(ThroughputConfig(), ctx(None))
    assert m.status is Status.SKIPPED and "no throughput server" in english(m.reason)
    m = run_check(ThroughputConfig(server="gopher://x:1"), ctx())
    assert m.status is Status.ERROR and "unknown throughput backend" in english(m.reason)


def test_daily_budget_skips_with_a_reason() -> None:
    c = ctx()
    cfg = ThroughputConfig(daily_budget_bytes=50_000_000)
    from datetime import UTC, datetime

    c.state.update(budget_day=datetime.now(UTC).date().isoformat(), budget_used_bytes=49_000_000)
    m = run_check(cfg, c)
    assert m.status is Status.SKIPPED and "daily data budget" in english(m.reason)
    # A new day resets the budget (the server then does not answer: a failed record, null metrics).
    c.state["budget_day"] = "2000-01-01"
    c2 = CheckContext(line=LineInfo("wan0", [], None, None, "127.0.0.1:1"), state=c.state,
                      deadline=time.monotonic() + 30)
    m = run_check(cfg, c2)
    assert m.status is Status.FAILED and "cannot connect" in english(m.reason)
    assert all(v is None for v in m.metrics.values()) and set(m.metrics) == set(METRICS)
    assert c.state["budget_used_bytes"] == 0


def test_judge_flags_a_line_far_below_plan_unless_cross_traffic_is_high() -> None:
    metrics = dict.fromkeys(METRICS)
    metrics.update(down_mbps=150.0, capacity_down_mbps=180.0, up_mbps=280.0, capacity_up_mbps=281.0,
                   cross_traffic_high_flag=0, cpu_max_pct=20.0)
    m = judge(ThroughputConfig(), ctx(plan=500.0), dict(metrics), "linecheck://x:1", [])
    assert m.status is Status.DEGRADED and [f.code for f in m.findings] == ["throughput_below_plan"]
    assert m.findings[0].detail["direction"] == "down"
    metrics["cross_traffic_high_flag"] = 1
    m = judge(ThroughputConfig(), ctx(plan=500.0), dict(metrics), "linecheck://x:1", [])
    assert m.status is Status.OK and not m.findings


def test_judge_never_calls_an_interrupted_or_unsettled_test_slow() -> None:
    metrics = dict.fromkeys(METRICS)
    metrics.update(down_mbps=150.0, capacity_down_mbps=150.0, up_mbps=280.0, capacity_up_mbps=281.0,
                   cross_traffic_high_flag=0, stable_down_flag=0, stable_up_flag=1)
    m = judge(ThroughputConfig(), ctx(plan=500.0), dict(metrics), "linecheck://x:1", [])
    assert m.status is Status.OK and not m.findings  # the settled upload is fine; the download is not judged
    metrics["stable_up_flag"] = 0
    m = judge(ThroughputConfig(), ctx(plan=500.0), dict(metrics), "linecheck://x:1", [])
    assert m.status is Status.ERROR and not m.findings and "lower bound" in english(m.reason)
    metrics.update(stable_down_flag=1, stable_up_flag=0)
    m = judge(ThroughputConfig(), ctx(plan=500.0), dict(metrics), "linecheck://x:1", [])
    assert m.status is Status.DEGRADED and [f.detail["direction"] for f in m.findings] == ["down"]
    m = judge(ThroughputConfig(), ctx(plan=500.0), dict(metrics), "linecheck://x:1", [],
              interrupted="the WAN link wan0 went down 2.0 s into the download")
    assert m.status is Status.FAILED and not m.findings and english(m.reason).startswith("interrupted: ")


def test_the_engine_calls_a_lost_link_or_a_stall_an_interruption(tmp_path: Path, monkeypatch) -> None:
    from agent.throughput import engine

    opts = engine.EngineOptions(host="x", wan_interface="wan0", stall_s=2.0)
    monkeypatch.setattr(engine, "carrier_up", lambda iface: True)
    assert engine._interruption(opts, "down", 3.0, 1.9) is None
    assert "no data moved for 2.0 s" in (engine._interruption(opts, "down", 3.0, 2.0) or "")
    monkeypatch.setattr(engine, "carrier_up", lambda iface: False)
    assert engine._interruption(opts, "up", 1.25, 0.0) == "the WAN link wan0 went down 1.2 s into the upload"
    monkeypatch.setattr(engine, "carrier_up", lambda iface: None)  # unknown is not lost
    assert engine._interruption(opts, "up", 1.0, 0.0) is None


def test_every_throughput_metric_is_catalogued() -> None:
    assert unlisted("throughput", set(METRICS)) == []


def test_failure_types_carry_their_status() -> None:
    assert MeasurementFailed("x").status == "failed" and BackendError("x").status == "error"
    assert isinstance(ServerBusy("server busy: x"), MeasurementFailed)


def test_latency_under_load_needs_the_added_round_trip_not_a_slow_line() -> None:
    metrics = dict.fromkeys(METRICS)
    metrics.update(down_mbps=95.0, capacity_down_mbps=95.0, up_mbps=95.0, capacity_up_mbps=95.0, stable_down_flag=1,
                   stable_up_flag=1, cross_traffic_high_flag=0, latency_idle_ms=0.4, latency_loaded_down_ms=60.0,
                   latency_loaded_up_ms=52.0, responsiveness_rpm=1000)
    m = judge(ThroughputConfig(), ctx(plan=100.0), dict(metrics), "linecheck://x:1", [])
    assert m.status is Status.OK and not m.findings  # a 50 ms queue under load is no bufferbloat at 100 ms
    metrics.update(latency_loaded_up_ms=380.0, responsiveness_rpm=210)
    m = judge(ThroughputConfig(), ctx(plan=100.0), dict(metrics), "linecheck://x:1", [])
    [f] = m.findings
    assert m.status is Status.DEGRADED and (f.code, f.where) == ("latency_under_load", "wan")
    assert f.detail == {"direction": "up", "latency_idle_ms": 0.4, "latency_loaded_ms": 380.0, "added_ms": 379.6,
                        "responsiveness_rpm": 210}
    assert "+380 ms" in english(m.reason) and "380 ms instead of 0 ms" in f.message
    m = judge(ThroughputConfig(bufferbloat_added_ms=500), ctx(plan=100.0), dict(metrics), "linecheck://x:1", [])
    assert not m.findings
