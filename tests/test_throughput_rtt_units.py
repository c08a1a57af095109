"""The engine at real round-trip times, without a network: streams and buffers from the BDP (sizing.py),
the stop rule at RTT (ramp.py), upload capacity and progress from what the line delivered (engine.py,
tcpinfo.py). The same on an emulated line: tests/test_throughput_rtt_lab.py."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from agent.throughput import sizing, tcpinfo
from agent.throughput.engine import EngineOptions, _sized, capacity_bps
from agent.throughput.ramp import Controller, Phase, RampSettings

MiB = 1024 * 1024


def test_streams_follow_the_bdp_against_the_autotuning_limit() -> None:
    # 1 Gbit/s at 50 ms: 6.25 MB BDP, x2 headroom = 12.5 MB of window; 4 MiB buffers give 2 MiB of window.
    s = sizing.choose(1e9, 0.050, 4 * MiB, start_streams=4, max_streams=16)
    assert s is not None and s.bdp_bytes == 6_250_000
    assert s.streams == 6 and s.buffer_bytes is None  # ceil(12.5e6 / 2 MiB) = 6
    # The same line through a 32 MiB receive limit: 1 stream would do, the ramp's start (4) stays.
    assert sizing.choose(1e9, 0.050, 32 * MiB, 4, 16).streams == 4  # type: ignore[union-attr]
    # 10 ms: fewer streams than at 50 ms for the same limit; 100 Mbit/s at 20 ms: the start count.
    assert sizing.choose(1e9, 0.010, 1 * MiB, 4, 16).streams == 5  # type: ignore[union-attr]
    assert sizing.choose(100e6, 0.020, 4 * MiB, 4, 16).streams == 4  # type: ignore[union-attr]


def test_beyond_max_streams_each_buffer_is_sized_from_the_bdp() -> None:
    # 10 Gbit/s at 50 ms with 1 MiB buffers: 120 streams would be needed; 16 get buffers that hold it.
    s = sizing.choose(10e9, 0.050, 1 * MiB, 4, 16)
    assert s is not None and s.streams == 16
    assert s.buffer_bytes == pytest.approx(62.5e6 * 2 / 16 / 0.5, rel=1e-6)
    assert "16 streams" in s.describe() and "MiB buffers" in s.describe()


def test_no_plan_or_no_rtt_chooses_nothing() -> None:
    assert sizing.choose(None, 0.02, 4 * MiB, 4, 16) is None
    assert sizing.choose(1e9, None, 4 * MiB, 4, 16) is None
    assert sizing.choose(1e9, 0.0, 4 * MiB, 4, 16) is None


def test_the_autotuning_limit_is_read_per_direction(tmp_path: Path) -> None:
    (tmp_path / "tcp_rmem").write_text("4096\t131072\t33554432\n")
    (tmp_path / "tcp_wmem").write_text("4096 16384 4194304\n")
    assert sizing.autotune_limit("down", tmp_path) == 32 * MiB
    assert sizing.autotune_limit("up", tmp_path) == 4 * MiB
    (tmp_path / "tcp_wmem").write_text("garbage")
    assert sizing.autotune_limit("up", tmp_path) == sizing.DEFAULT_LIMIT
    assert sizing.autotune_limit("down", tmp_path / "missing") == sizing.DEFAULT_LIMIT


def test_the_engine_starts_with_the_streams_the_plans_bdp_needs(monkeypatch) -> None:
    monkeypatch.setattr(sizing, "autotune_limit", lambda _d: 1 * MiB)
    opts = EngineOptions(host="h", plan_down_bps=1e9, plan_up_bps=100e6)
    ctl, sized = _sized(opts, "down", 0.050)  # 12.5 MB / 0.5 MiB -> 24, capped at 16
    assert ctl.streams == 16 and sized is not None and sized.buffer_bytes is not None
    assert ctl.settings.max_streams == 16
    assert ctl.rtt_s == 0.050 and ctl.stream_target is not None and ctl.stream_target(1e9) == 24
    ctl, sized = _sized(opts, "up", 0.050)  # 100 Mbit/s: 1.25 MB -> 3, the ramp's 4 start
    assert ctl.streams == 4 and sized is not None and sized.buffer_bytes is None
    assert ctl.settings.max_streams == 8  # at most twice what the BDP needs: more only overflow the queue together
    assert ctl.enough_bps == pytest.approx(100e6 * 1448 / 1514 * 0.95)
    ctl, sized = _sized(EngineOptions(host="h"), "down", 0.050)  # no plan: the ramp's default, RTT kept
    assert ctl.streams == RampSettings().start_streams and sized is None and ctl.rtt_s == 0.050


def feed(ctl: Controller, rate_at, intervals: int) -> list[int]:
    """Drive the controller with rate_at(i, streams) bit/s per interval; returns the stream additions."""
    total, t, added = 0.0, 0.0, []
    ctl.feed(t, 0)
    for i in range(intervals):
        t += ctl.settings.interval_s
        total += rate_at(i, ctl.streams) * ctl.settings.interval_s / 8
        n = ctl.feed(t, int(total))
        if n:
            added.append(n)
        if ctl.phase is Phase.DONE:
            break
    return added


def test_a_step_adds_the_streams_the_estimated_bdp_asks_for() -> None:
    """50 ms, 2 MiB of window per stream: each stream carries at most 2 MiB / 50 ms = 335 Mbit/s.
    The ramp's estimate (4 streams: 1.34 Gbit/s) asks for ceil(1.41e9 / 8 * 0.05 * 2 / 2 MiB) = 9."""
    ctl = Controller(RampSettings(start_streams=4, step_streams=4, max_streams=16), rtt_s=0.050,
                     stream_target=lambda bps: sizing.streams_for(bps, 0.050, 4 * MiB))
    added = feed(ctl, lambda _i, n: min(n * 335e6, 2.5e9), 100)
    assert added[0] == 5  # to 9 at once, not 4 more
    plain = Controller(RampSettings(start_streams=4, step_streams=4, max_streams=16))
    assert feed(plain, lambda _i, n: min(n * 335e6, 2.5e9), 100)[0] == 4


def test_streams_sized_from_the_plan_are_not_added_to_once_they_carry_it() -> None:
    """100 Mbit/s at 20 ms: 4 streams carry 95.6 Mbit/s; the 0.1 s rates swing +-10 % at this RTT, which
    read as growth and took the ramp to 12 streams, whose overflows then cost 15-35 % retransmissions."""
    swing = [95.6e6 * (1.1 if i % 6 < 3 else 0.9) for i in range(400)]
    sized = Controller(RampSettings(start_streams=4, max_streams=16), rtt_s=0.02, enough_bps=95.6e6 * 0.95)
    assert feed(sized, lambda i, _n: swing[i], 300) == [] and sized.streams == 4
    unsized = Controller(RampSettings(start_streams=4, max_streams=16), rtt_s=0.02)
    assert feed(unsized, lambda i, _n: swing[i], 300) != []


def test_settling_and_the_shortest_measurement_grow_with_the_round_trip() -> None:
    assert Controller(RampSettings(), rtt_s=0.0).settle_intervals() == 4
    assert Controller(RampSettings(), rtt_s=0.050).settle_intervals() == 4  # 8 x 50 ms = 0.4 s
    assert Controller(RampSettings(), rtt_s=0.100).settle_intervals() == 8
    assert Controller(RampSettings(), rtt_s=0.020).window() == 4
    assert Controller(RampSettings(), rtt_s=0.050).window() == 8
    assert Controller(RampSettings(), rtt_s=0.010).min_measure_s() == 1.0
    assert Controller(RampSettings(), rtt_s=0.050).min_measure_s() == pytest.approx(2.0)


def test_a_rate_still_climbing_when_measurement_began_stops_once_flat() -> None:
    """The 300 Mbit/s at 20 ms case: streams keep growing for a second after the ramp ended (slow start
    at 20 ms per doubling), then the rate is flat. Before the restart, every later average was compared
    with the first low one (trend > 5 %): never stable, the time cap stopped it. Now: stable, and the
    reported rate is the flat rate, not the climb's average."""
    climb = [150e6 + 150e6 * min(1.0, i / 20) for i in range(400)]  # 150 -> 300 Mbit/s over 2 s, then flat
    ctl = Controller(RampSettings(start_streams=4, max_streams=4), rtt_s=0.020)
    feed(ctl, lambda i, _n: climb[i], 300)
    assert ctl.phase is Phase.DONE and ctl.stop_reason == "stable" and ctl.restarts >= 1
    assert ctl.rate_bps() == pytest.approx(300e6, rel=0.01)
    assert ctl._times[-1] < 5.0  # stopped within seconds, not at a 15 s cap


def test_a_rate_that_keeps_creeping_restarts_but_never_stops_as_stable() -> None:
    ctl = Controller(RampSettings(start_streams=4, max_streams=4), rtt_s=0.020)
    feed(ctl, lambda i, _n: 100e6 * 1.01 ** i, 150)  # +1 % per interval: steady spread, steady trend
    assert ctl.phase is Phase.MEASURE


def test_upload_capacity_is_the_delivered_rate_plus_the_offices_share() -> None:
    # The gateway handed 1100 Mbit/s to the line: our streams sent 1050 of it (drops and resends included),
    # 950 reached the server; the office sent 50. Capacity: 950 + 50, not the 1100 the port counted.
    assert capacity_bps(1100e6, 950e6, 1050e6) == pytest.approx(1000e6)
    # Nothing but the test: the test's delivered rate, even though the port counted its resent bytes.
    assert capacity_bps(1040e6, 950e6, 1045e6) == pytest.approx(950e6)
    # Download (no sender counters): every WAN byte arrived, never below the test's own rate.
    assert capacity_bps(990e6, 950e6, None) == pytest.approx(990e6)
    assert capacity_bps(900e6, 950e6, None) == pytest.approx(950e6)


def test_send_counters_on_a_real_connection() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    client.sendall(b"x" * 200_000)
    got = 0
    while got < 200_000:
        got += len(peer.recv(1 << 20))
    deadline = time.monotonic() + 5
    while (c := tcpinfo.send_counters(client)) is not None and c.delivered < 200_001 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the kernel's ACK state, bounded by the deadline
    c = tcpinfo.send_counters(client)
    assert c is not None and c.delivered == 200_001  # the SYN counts as acknowledged; nothing SACKed now
    assert c.sent == 200_000 and c.retrans == 0  # data bytes only (Linux >= 4.19)
    assert tcpinfo.delivered_bytes(client) == 200_001
    for s in (client, peer, server):
        s.close()
    assert tcpinfo.send_counters(client) is None  # closed: no counters, not zeros


def test_buffer_sizes_are_forced_only_with_the_privilege() -> None:
    sock = socket.socket()
    try:
        assert sizing.apply_buffer(sock, "up", None) is False
        took = sizing.apply_buffer(sock, "up", 8 * MiB)
        got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        if took:  # root (CAP_NET_ADMIN): the kernel doubles the request for its bookkeeping
            assert got == 16 * MiB
        else:
            assert got < 8 * MiB  # left alone: autotuning keeps it
    finally:
        sock.close()


def test_a_stall_at_the_windows_start_does_not_inflate_the_rate() -> None:
    """95.6 Mbit/s through the window, but the first sample caught 1.1 MB held behind a hole (the receiver
    had them out of order; they count once the hole is repaired). From the endpoints: +3 % over 3 s.
    The slope over every sample: +0.6 %."""
    ctl = Controller(RampSettings(start_streams=4, max_streams=4))
    rate = 95.6e6 / 8
    ctl.feed(0.0, 0)
    for i in range(1, 41):
        t = i * 0.1
        held = 1_100_000 if i == 10 else 0  # the sample where measurement begins sits in a stall
        ctl.feed(t, int(rate * t) - held)
    ctl.measure_start, ctl.phase = 10, Phase.MEASURE
    endpoints = (ctl._bytes[-1] - ctl._bytes[10]) * 8 / (ctl._times[-1] - ctl._times[10])
    assert endpoints > 95.6e6 * 1.025
    assert ctl.rate_bps() == pytest.approx(95.6e6, rel=0.01)
