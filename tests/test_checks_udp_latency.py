"""udp_latency and the STAMP reflector: packet format, and measured loss/delay against known impairments."""

from __future__ import annotations

import select
import subprocess
import sys

import pytest

from agent.checks import udp_latency
from agent.checks.udp_latency import UdpLatencyConfig
from agent.reasons import english
from linecheck import stamp
from linecheck.wire import Status
from tests.checkctx import make_ctx
from tests.helpers import wait_for
from tests.lab import SERVER_ADDR, LineLab
from testserver.reflector import Reflector


def test_stamp_packets_round_trip_and_keep_length() -> None:
    raw = stamp.pack_sender(7, stamp.to_ntp(1_700_000_000.5), 100)
    assert len(raw) == 100
    sent = stamp.unpack_sender(raw)
    assert sent.seq == 7 and sent.timestamp == stamp.to_ntp(1_700_000_000.5)
    reflected = stamp.unpack_reflected(stamp.pack_reflected(3, 2 << 32, 1 << 32, sent, 63, len(raw)))
    assert (reflected.seq, reflected.sender_seq, reflected.sender_ttl) == (3, 7, 63)
    assert stamp.ntp_diff_s(reflected.timestamp, reflected.receive_timestamp) == 1.0
    with pytest.raises(ValueError, match="too short"):
        stamp.unpack_sender(b"\0" * 43)


def test_reflector_on_loopback_answers_every_probe_with_its_own_sequence() -> None:
    with Reflector("127.0.0.1", 0) as refl:
        cfg = UdpLatencyConfig(server="127.0.0.1", port=refl.port, count=50, interval_s=0.001)
        m = udp_latency.run(cfg, make_ctx())
        assert m.status is Status.OK, m.reason
        assert m.metrics["received_count"] == 50 and m.metrics["loss_pct"] == 0
        assert m.metrics["duplicates_count"] == 0 and m.metrics["reordered_count"] == 0
        assert 0 <= m.metrics["rtt_min_ms"] <= m.metrics["rtt_avg_ms"] <= m.metrics["rtt_max_ms"] < 50
        wait_for(lambda: refl.reflected == 50, 5, "the reflector's counter")  # counted after sendto


def test_no_reflector_is_an_error_not_a_line_fault() -> None:
    with Reflector("127.0.0.1", 0) as refl:
        port = refl.port  # a port that was free a moment ago and now has nobody listening
    m = udp_latency.run(UdpLatencyConfig(server="127.0.0.1", port=port, count=5, interval_s=0.01,
                                         reply_timeout_s=0.3), make_ctx())
    assert m.status is Status.ERROR and "no STAMP reflector listening" in english(m.reason)
    assert m.metrics["loss_pct"] is None and m.metrics["rtt_avg_ms"] is None and not m.findings


def test_unset_test_server_skips_with_reason() -> None:
    m = udp_latency.run(UdpLatencyConfig(), make_ctx(test_server=None))
    assert m.status is Status.SKIPPED and "line.test_server is not configured" in english(m.reason)


def _measure(lab: LineLab, count: int, interval_s: float, **impair: float) -> udp_latency.Measurement:
    with lab.inside(lab.carrier):
        refl = Reflector(SERVER_ADDR, 0, seed=3, **impair).start()
    try:
        cfg = UdpLatencyConfig(server=SERVER_ADDR, port=refl.port, count=count, interval_s=interval_s,
                               reply_timeout_s=0.5)
        with lab.inside(lab.gw):
            return udp_latency.run(cfg, make_ctx(60))
    finally:
        refl.stop()


@pytest.mark.lab
def test_reflector_dropping_10pct_measures_10pct_loss(lab: LineLab) -> None:
    m = _measure(lab, 1000, 0.001, drop_pct=10)
    assert m.metrics["sent_count"] == 1000
    assert 7.0 <= m.metrics["loss_pct"] <= 13.0, m.metrics
    assert m.status is Status.DEGRADED
    assert {f.code for f in m.findings} == {"packet_loss"}


@pytest.mark.lab
def test_reflector_adding_50ms_measures_50ms_rtt(lab: LineLab) -> None:
    m = _measure(lab, 100, 0.005, delay_ms=50)
    assert m.metrics["loss_pct"] == 0
    assert 45.0 <= m.metrics["rtt_avg_ms"] <= 55.0, m.metrics
    assert m.metrics["rtt_min_ms"] >= 49.0, m.metrics  # the delay is a floor, not an average artefact
    assert m.status is Status.OK


@pytest.mark.lab
def test_reflector_module_main_serves_in_the_carrier_namespace(lab: LineLab) -> None:
    proc = lab.popen(lab.carrier, [sys.executable, "-m", "testserver.reflector", "--host", SERVER_ADDR,
                                   "--port", "0", "--delay-ms", "20"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline() if ready else ""
    assert line.startswith("reflector listening on"), line
    port = int(line.split()[3].rsplit(":", 1)[1])
    with lab.inside(lab.gw):
        m = udp_latency.run(UdpLatencyConfig(server=SERVER_ADDR, port=port, count=20, interval_s=0.005),
                            make_ctx())
    assert m.status is Status.OK and 18 <= m.metrics["rtt_avg_ms"] <= 30, m.metrics
    proc.terminate()
    assert proc.wait(10) == 0
    assert "reflected=20" in proc.stdout.read()


def test_every_udp_latency_metric_is_catalogued() -> None:
    from linecheck.catalogue import unlisted

    with Reflector("127.0.0.1", 0) as refl:
        m = udp_latency.run(UdpLatencyConfig(server="127.0.0.1", port=refl.port, count=3, interval_s=0.001),
                            make_ctx())
    assert m.metrics and unlisted("udp_latency", set(m.metrics)) == []
