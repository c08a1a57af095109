"""Localisation: from the findings of a line check (and of LAN/WiFi room tests) to where the
fault is — the WAN line, the gateway's port or cable (cpe), the LAN, the WiFi of a room, DNS, or
the carrier's service state.

Findings arrive from the checks already tagged with a `where`; this module decides which of them
is the cause when several show the same fault from different sides, and reclassifies speed
findings whose figures point somewhere other than the line. A finding explained by another is
dropped from the list and named in the cause's `detail["explains"]` (the evidence stays in the
check results). The rules, upstream first:

  1. service_suspended (service) explains the HTTP, reachability and speed symptoms a portal
     causes, and a DNS failure only when the suspension itself works through DNS (mode dns_hijack):
     a resolver that times out beside a portal redirect is a second fault, and folding it away hid
     a DNS outage behind a wrong suspension verdict (issue 21);
  2. line_down (wan) explains every other WAN, DNS and speed symptom;
  3. wan_link_degraded (cpe) explains a slow line test that does not exceed the port's speed;
  4. dns_failure (dns) explains http_failure when the probes by address are fine, and a probe
     finding (unreachable, loss, PMTU) against a target whose name the DNS check saw resolve to a
     wrong address (error wrong_answer, the probe's address among the wrong ones): the probes went
     to the wrong place, the line is not to blame;
  5. a slow room test (LAN/WiFi throughput to the gateway, or a speed finding carrying a room) never
     crosses the WAN: it becomes wifi_weak / wifi_low_rate / wifi_channel_busy / wifi_interference
     from the station's own figures, wifi_throughput_low when the radio looks fine, and
     lan_throughput_low for a device that is not a WiFi station of this gateway;
  6. the same code for the same station or room is reported once (the most severe).

Pure functions, table-tested in tests/test_localise.py; docs/wifi.md lists the codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agent.findings import finding
from linecheck.catalogue import WIFI_THROUGHPUT
from linecheck.wire import CheckResult, Finding, MetricValue

if TYPE_CHECKING:
    from agent.checks.wifi import WifiConfig

SPEED_CODES = {"throughput_below_plan"}  # the throughput check's; a room test carries a room or its kind
ROOM_SLOW_CODES = {"wifi_throughput_low", "lan_throughput_low"}
WIFI_CAUSES = {"wifi_weak", "wifi_low_rate", "wifi_channel_busy", "wifi_interference"}
SUSPENSION_SYMPTOMS = {"dns_failure", "http_failure", "target_unreachable", "packet_loss",
                       "high_latency"} | SPEED_CODES
LINE_DOWN_SYMPTOMS = {"target_unreachable", "packet_loss", "high_latency", "high_jitter", "dns_failure",
                      "gateway_unreachable", "http_failure", "pmtu_blackhole", "pmtu_reduced", "ipv6_unavailable",
                      "service_suspended"} | SPEED_CODES
# What a probe sent to the wrong address shows (ping, udp_latency, pmtu against a named target).
MISLED_PROBES = {"target_unreachable", "packet_loss", "high_latency", "high_jitter", "pmtu_blackhole",
                 "pmtu_reduced"}
PORT_MARGIN = 1.05  # a measured rate within 5% of the negotiated port speed is capped by the port
ORDER = {"service": 0, "wan": 1, "cpe": 2, "dns": 3, "lan": 4, "wifi": 5}


def _explained_codes(f: Finding) -> set[str]:
    return set(str(f.detail.get("explains", "")).split(",")) - {""}


def _explain(cause: Finding, explained: Iterable[Finding]) -> Finding:
    """`cause` with the codes of `explained` (and what they explained) added to detail.explains."""
    codes = _explained_codes(cause)
    for f in explained:
        codes |= {f.code} | _explained_codes(f)
    codes.discard(cause.code)
    if codes == _explained_codes(cause):
        return cause
    detail = dict(cause.detail)
    detail["explains"] = ",".join(sorted(codes))
    return cause.model_copy(update={"detail": detail})


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _room_of(f: Finding) -> str | None:
    room = f.detail.get("room")
    return room if isinstance(room, str) else None


def _is_room_test(f: Finding) -> bool:
    return f.code in ROOM_SLOW_CODES or (f.code in SPEED_CODES and (_room_of(f) is not None
                                                                   or f.check == WIFI_THROUGHPUT))


def _room_metrics(checks: list[CheckResult], f: Finding) -> dict[str, MetricValue]:
    """The metrics of the room test behind `f` (the wifi_throughput result for its room)."""
    room = _room_of(f)
    for c in checks:
        if c.kind == WIFI_THROUGHPUT and (room is None or c.target == room):
            return c.metrics
    return {}


def classify_room(f: Finding, metrics: dict[str, MetricValue], wifi: WifiConfig) -> Finding:
    """Rule 5: what a slow room test says about the room, from the station's radio figures."""
    room = _room_of(f) or "this room"
    measured = _num(f.detail.get("measured_mbps")) or _num(metrics.get("down_mbps"))
    got = f"{measured:g} Mbit/s" if measured is not None else "a slow result"
    detail: dict[str, MetricValue | str] = {k: v for k, v in f.detail.items() if k != "explains"}
    for key in ("signal_dbm", "tx_bitrate_mbps", "rx_bitrate_mbps", "tx_retry_pct", "channel_busy_pct",
                "band_ghz", "down_mbps", "up_mbps"):
        if metrics.get(key) is not None:
            detail.setdefault(key, metrics[key])
    signal, busy, retry = _num(metrics.get("signal_dbm")), _num(metrics.get("channel_busy_pct")), _num(
        metrics.get("tx_retry_pct"))
    rates = [r for r in (_num(metrics.get("tx_bitrate_mbps")), _num(metrics.get("rx_bitrate_mbps"))) if r is not None]
    station = metrics.get("station_found_flag") == 1 or signal is not None

    def out(code: str, message: str) -> Finding:
        return _explain(finding(code, f.severity, f.check or WIFI_THROUGHPUT, message, detail),
                        [f] if f.code != code else [])

    if not station:
        how = ("the gateway could not tell whether over its WiFi" if metrics.get("station_found_flag") is None
               else "not over this gateway's WiFi")
        return out("lan_throughput_low",
                   f"The test from {room} reached {got} to the gateway over the office network ({how}): "
                   "check that device's cable, switch port or access point.")
    if signal is not None and signal <= wifi.signal_degraded_dbm:
        return out("wifi_weak",
                   f"The test from {room} reached {got} because the WiFi signal there is weak ({signal:g} dBm): "
                   "the line is not the cause; move the access point closer or add one in that room.")
    if rates and min(rates) < wifi.rate_degraded_mbps:
        return out("wifi_low_rate",
                   f"The test from {room} reached {got}: the device's WiFi link runs at only {min(rates):g} "
                   "Mbit/s although the signal is adequate (old or single-stream device, 2.4 GHz, narrow channel).")
    if busy is not None and busy >= wifi.busy_degraded_pct:
        return out("wifi_channel_busy",
                   f"The test from {room} reached {got}: the WiFi channel is busy {busy:g}% of the time.")
    if retry is not None and retry >= wifi.retry_degraded_pct:
        return out("wifi_interference",
                   f"The test from {room} reached {got}: {retry:g}% of the frames to the device are sent again "
                   "(interference).")
    return out("wifi_throughput_low",
               f"The test from {room} reached {got} over WiFi although the device's radio figures look fine: "
               "the device itself (or its browser) may be the limit.")


def _port_caps(speed: Finding, port: Finding) -> bool:
    port_mbps = _num(port.detail.get("wan_speed_mbps"))
    measured = _num(speed.detail.get("measured_mbps"))
    return port_mbps is not None and (measured is None or measured <= port_mbps * PORT_MARGIN)


def _probes_fine(checks: list[CheckResult]) -> bool:
    probes = [c for c in checks if c.kind in ("ping", "udp_latency")]
    return bool(probes) and all(c.status.value == "ok" for c in probes)


def _misled_by(wrong: Finding, probe: Finding) -> bool:
    """Did `probe` go to an address the DNS check saw `wrong`'s name resolve to wrongly?"""
    name = probe.detail.get("name")
    if not isinstance(name, str) or name.rstrip(".").lower() != str(wrong.detail.get("name", "")).rstrip(".").lower():
        return False
    bad = set(str(wrong.detail.get("addresses", "")).split(",")) - {""}
    return not bad or probe.detail.get("address") in bad


def _key(f: Finding) -> tuple[str, str]:
    who = f.detail.get("station") or f.detail.get("room") or f.detail.get("interface") or f.detail.get("target")
    return f.code, str(who) if who is not None else f.message


def localise(checks: list[CheckResult], findings: list[Finding], wifi: WifiConfig | None = None) -> list[Finding]:
    """The findings that remain once each symptom is attributed to its cause, most upstream first."""
    if wifi is None:
        from agent.checks.wifi import WifiConfig

        wifi = WifiConfig()
    out = list(findings)

    # rule 5 first: a room test never says anything about the WAN
    out = [classify_room(f, _room_metrics(checks, f), wifi) if _is_room_test(f) else f for f in out]

    def fold(cause_code: str, symptoms: set[str], when=lambda cause, f: True) -> None:  # noqa: ANN001
        nonlocal out
        causes = [f for f in out if f.code == cause_code]
        if not causes:
            return
        cause = causes[0]
        explained = [f for f in out if f.code in symptoms and f is not cause and f.where != "wifi"
                     and f.where != "lan" and when(cause, f)]
        if not explained:
            return
        out = [_explain(f, explained) if f is cause else f for f in out if not any(f is e for e in explained)]

    fold("service_suspended", SUSPENSION_SYMPTOMS,
         lambda cause, f: f.code != "dns_failure" or cause.detail.get("mode") == "dns_hijack")
    fold("line_down", LINE_DOWN_SYMPTOMS)
    fold("wan_link_degraded", SPEED_CODES, lambda port, speed: _port_caps(speed, port))
    if _probes_fine(checks):
        fold("dns_failure", {"http_failure"})
    for wrong in [f for f in out if f.code == "dns_failure" and f.detail.get("error") == "wrong_answer"]:
        misled = [f for f in out if f.code in MISLED_PROBES and _misled_by(wrong, f)]
        if misled:
            out = [_explain(f, misled) if f is wrong else f for f in out if not any(f is m for m in misled)]

    # rule 6: one finding per code and station/room, the most severe
    kept: dict[tuple[str, str], Finding] = {}
    for f in out:
        k = _key(f)
        old = kept.get(k)
        if old is None:
            kept[k] = f
            continue
        better, other = (f, old) if f.severity == "critical" and old.severity != "critical" else (old, f)
        kept[k] = _explain(better, [other])
    return sorted(kept.values(), key=lambda f: (ORDER.get(f.where or "", 9), f.severity != "critical"))

