"""Localisation table: findings and check results in -> finding codes and where out."""

from __future__ import annotations

import pytest

from agent.localise import localise
from linecheck.wire import CheckResult, Finding, Status


def F(code: str, where: str | None, severity: str = "warning", check: str | None = None, **detail) -> Finding:  # noqa: N802
    return Finding(code=code, severity=severity, check=check, where=where, message=f"{code} happened", detail=detail)


def C(kind: str, status: str = "ok", target: str | None = None, **metrics) -> CheckResult:  # noqa: N802
    return CheckResult(kind=kind, status=Status(status), duration_s=1.0, target=target, metrics=metrics)


LINE_FINE = C("throughput", down_mbps=478.0, up_mbps=287.0, capacity_down_mbps=478.0)
PING_OK = C("ping", loss_pct=0.0, rtt_avg_ms=3.1)
ROOM2 = "Meeting room 2"


def room(signal=None, tx=None, rx=None, busy=None, retry=None, down=40.0, found=1, name=ROOM2) -> CheckResult:
    return C("wifi_throughput", "degraded", name, down_mbps=down, up_mbps=down, signal_dbm=signal,
             tx_bitrate_mbps=tx, rx_bitrate_mbps=rx, channel_busy_pct=busy, tx_retry_pct=retry,
             station_found_flag=found)


def slow_room(name: str = ROOM2, code: str = "throughput_below_plan", **detail) -> Finding:
    return F(code, "wan", check="wifi_throughput", room=name, measured_mbps=40.0, **detail)


CASES = [
    # (name, checks, findings, expected [(code, where, room)], explained codes on the first)
    ("the issue's example: line fine, station at -78 dBm / 40 Mbit/s -> wifi_weak in that room",
     [LINE_FINE, room(signal=-78, tx=40.0, rx=39.0)], [slow_room()],
     [("wifi_weak", "wifi", ROOM2)], {"throughput_below_plan"}),
    ("good signal but a 2.4 GHz single-stream link -> wifi_low_rate",
     [LINE_FINE, room(signal=-52, tx=65.0, rx=72.2)], [slow_room(code="wifi_throughput_low")],
     [("wifi_low_rate", "wifi", ROOM2)], {"wifi_throughput_low"}),
    ("good radio, busy channel -> wifi_channel_busy",
     [room(signal=-55, tx=866.7, rx=780.0, busy=78.0)], [slow_room(code="wifi_throughput_low")],
     [("wifi_channel_busy", "wifi", ROOM2)], {"wifi_throughput_low"}),
    ("good radio, many retries -> wifi_interference",
     [room(signal=-55, tx=866.7, rx=780.0, retry=38.0)], [slow_room(code="wifi_throughput_low")],
     [("wifi_interference", "wifi", ROOM2)], {"wifi_throughput_low"}),
    ("radio fine, still slow -> wifi_throughput_low (the device may be the limit)",
     [room(signal=-48, tx=1201.0, rx=1080.6, busy=20.0, retry=4.0)], [slow_room(code="wifi_throughput_low")],
     [("wifi_throughput_low", "wifi", ROOM2)], set()),
    ("no WiFi station behind the client -> the LAN",
     [room(found=0)], [slow_room(code="lan_throughput_low")],
     [("lan_throughput_low", "lan", ROOM2)], set()),
    ("a slow room and a slow line are two faults",
     [C("throughput", "degraded", down_mbps=95.0), C("link", wan_speed_mbps=1000), room(signal=-79, tx=39.0)],
     [F("throughput_below_plan", "wan", check="throughput", measured_mbps=95.0, plan_mbps=500.0), slow_room()],
     [("throughput_below_plan", "wan", None), ("wifi_weak", "wifi", ROOM2)], set()),
    ("WAN port at 100 Mbit/s caps a 95 Mbit/s test -> cpe",
     [C("throughput", "degraded", down_mbps=95.0), C("link", "degraded", wan_speed_mbps=100)],
     [F("wan_link_degraded", "cpe", check="link", wan_speed_mbps=100, plan_down_mbps=500.0),
      F("throughput_below_plan", "wan", check="throughput", measured_mbps=95.0, plan_mbps=500.0)],
     [("wan_link_degraded", "cpe", None)], {"throughput_below_plan"}),
    ("port at 1000 but the test reads 95 -> the line itself",
     [C("link", "degraded", wan_speed_mbps=1000)],
     [F("wan_link_degraded", "cpe", check="link", errors_count=40),
      F("throughput_below_plan", "wan", check="throughput", measured_mbps=95.0, plan_mbps=500.0)],
     [("throughput_below_plan", "wan", None), ("wan_link_degraded", "cpe", None)], set()),
    ("line down explains every symptom beyond the gateway",
     [C("link", "failed"), C("ping", "failed"), C("dns", "failed")],
     [F("line_down", "wan", "critical", check="link", interface="wan0"),
      F("target_unreachable", "wan", "critical", check="ping", target="198.18.0.1"),
      F("dns_failure", "dns", "critical", check="dns", resolver="198.18.1.53", error="timeout"),
      F("throughput_below_plan", "wan", check="throughput", measured_mbps=0.1)],
     [("line_down", "wan", None)], {"target_unreachable", "dns_failure", "throughput_below_plan"}),
    ("a suspended account explains the portal's DNS and HTTP symptoms",
     [PING_OK, C("service_state", "failed")],
     [F("service_suspended", "service", "critical", check="service_state", mode="dns_hijack"),
      F("dns_failure", "dns", check="dns", error="nxdomain"), F("http_failure", "wan", check="http", status_code=302)],
     [("service_suspended", "service", None)], {"dns_failure", "http_failure"}),
    ("a portal redirect does not explain a resolver that times out: two faults, both kept (issue 21)",
     [PING_OK, C("service_state", "failed")],
     [F("service_suspended", "service", "critical", check="service_state", mode="http_redirect"),
      F("dns_failure", "dns", "critical", check="dns", resolver="198.18.1.53", error="timeout")],
     [("service_suspended", "service", None), ("dns_failure", "dns", None)], set()),
    ("only the portal answers, and the resolver fails: the DNS fault is not folded away",
     [PING_OK, C("service_state", "failed")],
     [F("service_suspended", "service", "critical", check="service_state", mode="blocked"),
      F("dns_failure", "dns", check="dns", error="servfail")],
     [("service_suspended", "service", None), ("dns_failure", "dns", None)], set()),
    ("the test server's name resolves to a wrong address: its probes' failures are DNS, not the line",
     [PING_OK, C("ping", "failed", "test_server (198.18.9.9)"), C("udp_latency", "failed"), C("pmtu", "failed")],
     [F("dns_failure", "dns", check="dns", error="wrong_answer", name="ts.lab.test", addresses="198.18.9.9"),
      F("target_unreachable", "wan", "critical", check="ping", target="test_server (198.18.9.9)",
        name="ts.lab.test", address="198.18.9.9"),
      F("target_unreachable", "wan", "critical", check="udp_latency", target="ts.lab.test (198.18.9.9)",
        name="ts.lab.test", address="198.18.9.9"),
      F("target_unreachable", "wan", "critical", check="pmtu", target="198.18.9.9", name="ts.lab.test",
        address="198.18.9.9")],
     [("dns_failure", "dns", None)], {"target_unreachable"}),
    ("a wrong answer for one name does not explain a dead target reached by another name",
     [C("ping", "failed")],
     [F("dns_failure", "dns", check="dns", error="wrong_answer", name="ts.lab.test", addresses="198.18.9.9"),
      F("target_unreachable", "wan", "critical", check="ping", target="anchor (198.18.1.7)", name="anchor.lab.test",
        address="198.18.1.7")],
     [("target_unreachable", "wan", None), ("dns_failure", "dns", None)], set()),
    ("DNS broken, probes by address fine -> dns (it explains the HTTP failure)",
     [PING_OK], [F("dns_failure", "dns", "critical", check="dns", error="servfail"),
                 F("http_failure", "wan", check="http", error="name resolution failed")],
     [("dns_failure", "dns", None)], {"http_failure"}),
    ("DNS broken and probes lossy: both stay",
     [C("ping", "degraded", loss_pct=30.0)], [F("dns_failure", "dns", check="dns", error="timeout"),
                                               F("packet_loss", "wan", check="ping", target="198.18.1.1")],
     [("packet_loss", "wan", None), ("dns_failure", "dns", None)], set()),
    ("the wifi check and a room test both saw the weak station: reported once, the most severe",
     [room(signal=-82, tx=13.0)],
     [F("wifi_weak", "wifi", "warning", check="wifi", station="3c:22:fb:8e:41:07", room=ROOM2, signal_dbm=-78),
      F("throughput_below_plan", "wan", "critical", check="wifi_throughput", room=ROOM2, station="3c:22:fb:8e:41:07",
        measured_mbps=12.0)],
     [("wifi_weak", "wifi", ROOM2)], {"throughput_below_plan"}),
    ("nothing wrong", [LINE_FINE, PING_OK], [], [], set()),
]


@pytest.mark.parametrize("name, checks, findings, expected, explains", CASES, ids=[c[0][:60] for c in CASES])
def test_localisation_table(name: str, checks: list, findings: list, expected: list, explains: set) -> None:
    got = localise(checks, findings)
    assert [(f.code, f.where, f.detail.get("room")) for f in got] == expected, name
    if got:
        assert set(filter(None, str(got[0].detail.get("explains", "")).split(","))) == explains


def test_weak_room_message_names_room_signal_and_clears_the_line() -> None:
    (f,) = localise([LINE_FINE, room(signal=-78, tx=40.0)], [slow_room()])
    assert "Meeting room 2" in f.message and "-78 dBm" in f.message and "not the cause" in f.message
    assert f.detail["signal_dbm"] == -78 and f.detail["tx_bitrate_mbps"] == 40.0

