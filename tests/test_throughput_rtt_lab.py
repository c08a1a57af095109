"""The engine at a real round-trip time, on the emulated line (tests/lineemu.py): a 20 ms RTT line is measured
within tolerance both ways, its rate settles, and the upload's capacity is not read above the cap.
The full table (500 Mbit/s and 1 Gbit/s, 10/20/50 ms, with loss, against iperf3 and speedtest-cli) is
bench/throughput_rtt.py."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from tests.lab import SERVER_ADDR, LineLab, start_testserver

pytestmark = pytest.mark.lab
GOODPUT = 1448 / 1514  # TCP payload per full Ethernet frame: what a rate cap carries at most


@pytest.fixture
def served(line_lab: LineLab) -> LineLab:
    return start_testserver(line_lab)


def test_a_20ms_rtt_line_is_measured_within_tolerance_and_settles(served: LineLab, line: Callable[..., None]) -> None:
    """300/300 Mbit/s, 10 ms each way, the emulator's 50 ms buffers. The engine, given the plan, starts the
    streams the BDP needs. Both directions at least 0.97 x 0.956 x 300 and settled (some 300 Mbit/s @ 20 ms
    tests ran to the time cap unsettled before the measurement restarted past the streams' climb); the
    upload's capacity within 3 % too (the WAN port counts the frames the queue drops and their resends:
    before, a 1 Gbit/s cap read 1040-1160 Mbit/s of capacity)."""
    line(down=dict(rate_mbit=300, delay_ms=10), up=dict(rate_mbit=300, delay_ms=10))
    out = served.run(served.gw, [sys.executable, "-m", "agent.throughput", "--server", f"{SERVER_ADDR}:8080",
                                 "--wan-interface", served.gw_if, "--plan-mbps", "300"], timeout=120)
    r = json.loads(out.stdout)
    assert r["status"] == "ok", r
    m = r["metrics"]
    expected = GOODPUT * 300
    for d in ("down", "up"):
        assert m[f"{d}_mbps"] >= 0.97 * expected, (d, m, r["notes"])  # the target: >= 0.97 x what the cap carries
        assert m[f"stable_{d}_flag"] == 1, (d, r["notes"])
    # Never above what crossed the line. Upload: not above the cap (the capacity formula's fix). Download: not
    # above what the gateway's WAN port received in the window; under a load average of 15-30 the emulator's
    # threads fall behind and then send what was due at once, so a few-second window of the line itself may
    # carry 5-15 % more than the cap (bench/throughput_rtt.py, docs/throughput.md "At real round-trip times").
    assert m["up_mbps"] <= expected * 1.03 and m["capacity_up_mbps"] <= expected * 1.03, m
    assert m["down_mbps"] <= m["capacity_down_mbps"] * 1.01, m
    assert m["latency_idle_ms"] >= 20
    assert all("BDP" in n for n in r["notes"]), r["notes"]  # sized from plan x idle RTT, and says so
    assert m["retrans_up_pct"] is not None and m["loss_idle_pct"] == 0
