"""Judge what the parsers found: metrics with units, a status, and findings with a room.

Pure functions (no I/O): the wifi check and the LAN throughput recorder both use them.
Finding codes (docs/wifi.md): wifi_weak, wifi_low_rate, wifi_channel_busy, wifi_interference,
wifi_not_connected. All carry where="wifi".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.findings import finding
from agent.reasons import because, joined
from agent.wifi.model import Bss, Interface, Station, Survey, band_of, channel_of
from linecheck.i18n.phrases import Phrase
from linecheck.wire import Finding, MetricValue, Status

if TYPE_CHECKING:  # the config lives with the check, which imports this module
    from agent.checks.wifi import WifiConfig

Metrics = dict[str, MetricValue]


@dataclass
class RoomAssessment:
    status: Status
    problems: list[Phrase]
    findings: list[Finding]

    @property
    def reason(self) -> list[Phrase] | None:
        return joined(self.problems) or None


def _pct(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return round(min(100.0, 100.0 * part / whole), 1)


def station_metrics(st: Station, prev: dict[str, Any] | None, cfg: WifiConfig) -> Metrics:
    """Per-station metrics. The retry share is over the interval since the previous check when the
    counters allow it (enough new frames), else since association."""
    tx, rx = st.tx_bitrate, st.rx_bitrate
    retry_pct = None
    if st.tx_packets is not None and st.tx_retries is not None:
        d_pkts = st.tx_packets - prev["tx_packets"] if prev and prev.get("tx_packets") is not None else None
        d_retr = st.tx_retries - prev["tx_retries"] if prev and prev.get("tx_retries") is not None else None
        if d_pkts is not None and d_retr is not None and d_pkts >= cfg.retry_min_packets and d_retr >= 0:
            retry_pct = _pct(d_retr, d_pkts)
        elif st.tx_packets >= cfg.retry_min_packets:
            retry_pct = _pct(st.tx_retries, st.tx_packets)
    return {
        "signal_dbm": st.signal_dbm,
        "signal_avg_dbm": st.signal_avg_dbm,
        "tx_bitrate_mbps": tx.mbps if tx else None,
        "rx_bitrate_mbps": rx.mbps if rx else None,
        "tx_mcs_num": tx.mcs if tx else None,
        "tx_nss_count": tx.nss if tx else None,
        "tx_width_mhz": tx.width_mhz if tx else None,
        "rx_mcs_num": rx.mcs if rx else None,
        "rx_nss_count": rx.nss if rx else None,
        "expected_throughput_mbps": st.expected_throughput_mbps,
        "inactive_ms": st.inactive_ms,
        "connected_s": st.connected_s,
        "tx_packets_count": st.tx_packets,
        "tx_retries_count": st.tx_retries,
        "tx_failed_count": st.tx_failed,
        "tx_retry_pct": retry_pct,
        "beacon_loss_count": st.beacon_loss,
    }


def _where(iface: str, mac: str | None, label: str | None) -> str:
    who = f"station {mac}" if mac else f"interface {iface}"
    return f"{who} in {label}" if label else who


def judge_station(m: Metrics, cfg: WifiConfig, *, iface: str, mac: str, label: str | None,
                  band_ghz: float | None, uplink: bool = False) -> RoomAssessment:
    """Weak signal explains a low rate and retries, so it is reported alone; a low rate or many
    retries with a good signal point elsewhere (old client, 2.4 GHz, interference)."""
    detail: dict[str, MetricValue | str] = {"interface": iface, "station": mac}
    if label:
        detail["room"] = label
    for key in ("signal_dbm", "tx_bitrate_mbps", "tx_retry_pct"):
        if m.get(key) is not None:
            detail[key] = m[key]
    if band_ghz is not None:
        detail["band_ghz"] = band_ghz
    inactive = m.get("inactive_ms")
    if not uplink and isinstance(inactive, int) and inactive > cfg.active_within_ms:
        return RoomAssessment(Status.OK, [], [])  # idle: figures are stale, nothing to judge
    who = f"the gateway's WiFi uplink ({iface})" if uplink else _where(iface, mac, label)
    signal, rate, retry = m.get("signal_dbm"), m.get("tx_bitrate_mbps"), m.get("tx_retry_pct")
    status, problems, findings = Status.OK, [], []
    if isinstance(signal, int | float) and signal <= cfg.signal_degraded_dbm:
        failed = signal <= cfg.signal_failed_dbm
        status = Status.FAILED if failed else Status.DEGRADED
        rate_txt = f" and {rate:g} Mbit/s" if isinstance(rate, int | float) else ""
        problems.append(because("wifi_weak_rate", signal_dbm=signal, rate_mbps=rate) if isinstance(rate, int | float)
                        else because("wifi_weak", signal_dbm=signal))
        findings.append(finding(
            "wifi_weak", "critical" if failed else "warning", "wifi",
            f"The WiFi signal of {who} is weak ({signal} dBm{rate_txt}): move the access point closer "
            "or add one in that room.", detail))
        return RoomAssessment(status, problems, findings)
    if isinstance(rate, int | float) and rate < cfg.rate_degraded_mbps:
        failed = rate <= cfg.rate_failed_mbps
        status = Status.FAILED if failed else Status.DEGRADED
        band = f" on {band_ghz:g} GHz" if band_ghz else ""
        problems.append(because("wifi_low_rate_band", rate_mbps=rate, band_ghz=band_ghz) if band_ghz
                        else because("wifi_low_rate", rate_mbps=rate))
        findings.append(finding(
            "wifi_low_rate", "critical" if failed else "warning", "wifi",
            f"{who[0].upper() + who[1:]} connects at only {rate:g} Mbit/s{band} although its signal is adequate "
            "(old or single-stream client, 2.4 GHz, or a narrow channel).", detail))
    if isinstance(retry, int | float) and retry >= cfg.retry_degraded_pct:
        status = Status.DEGRADED if status is Status.OK else status
        problems.append(because("wifi_retries", retry_pct=retry))
        findings.append(finding(
            "wifi_interference", "warning", "wifi",
            f"{retry:g}% of the frames to {who} must be sent again although the signal is good: "
            "interference on the channel.", detail))
    return RoomAssessment(status, problems, findings)


def overlaps(iface: Interface, bss: Bss) -> bool:
    """Does a network heard in a scan share (part of) our channel? Spans are compared in MHz:
    ours is the operating width around center1, theirs the 20 MHz around their primary channel
    (2.4 GHz channels less than 4 apart overlap)."""
    if iface.freq_mhz is None or bss.freq_mhz is None:
        return False
    centre = iface.center1_mhz or iface.freq_mhz
    half = (iface.width_mhz or 20) / 2
    return abs(bss.freq_mhz - centre) < half + 10


def interface_metrics(iface: Interface, stations: list[Station], survey: Survey | None,
                      prev_survey: dict[str, Any] | None, bsses: list[Bss] | None, cfg: WifiConfig,
                      own_bssids: set[str]) -> Metrics:
    active = [s for s in stations if s.inactive_ms is None or s.inactive_ms <= cfg.active_within_ms]
    signals = [s.signal_dbm for s in active if s.signal_dbm is not None]
    rates = [s.tx_bitrate.mbps for s in active if s.tx_bitrate and s.tx_bitrate.mbps is not None]
    busy = rx = tx = None
    if survey is not None:
        active_ms, busy_ms, rx_ms, tx_ms = survey.active_ms, survey.busy_ms, survey.rx_ms, survey.tx_ms
        if prev_survey and prev_survey.get("freq") == survey.freq_mhz and active_ms is not None \
                and prev_survey.get("active") is not None and active_ms - prev_survey["active"] > 0:
            # counters since the previous check: this interval, not the average since the channel was set
            base = prev_survey
            active_ms = active_ms - base["active"]
            busy_ms = None if busy_ms is None or base.get("busy") is None else busy_ms - base["busy"]
            rx_ms = None if rx_ms is None or base.get("rx") is None else rx_ms - base["rx"]
            tx_ms = None if tx_ms is None or base.get("tx") is None else tx_ms - base["tx"]
        busy, rx, tx = _pct(busy_ms, active_ms), _pct(rx_ms, active_ms), _pct(tx_ms, active_ms)
    heard = [b for b in bsses or [] if b.bssid not in own_bssids and not b.associated]  # not our own AP
    strong = [b for b in heard if overlaps(iface, b) and b.signal_dbm is not None
              and b.signal_dbm >= cfg.cochannel_signal_dbm]
    band = band_of(iface.freq_mhz) if iface.freq_mhz else None
    return {
        "ap_mode_flag": 1 if iface.is_ap else 0,
        "freq_mhz": iface.freq_mhz,
        "channel_num": iface.channel if iface.channel is not None else (
            channel_of(iface.freq_mhz) if iface.freq_mhz else None),
        "band_ghz": band,
        "width_mhz": iface.width_mhz,
        "txpower_dbm": iface.txpower_dbm,
        "station_count": len(stations),
        "active_station_count": len(active),
        "weakest_signal_dbm": min(signals) if signals else None,
        "lowest_tx_bitrate_mbps": min(rates) if rates else None,
        "noise_dbm": survey.noise_dbm if survey else None,
        "channel_busy_pct": busy,
        "channel_rx_pct": rx,
        "channel_tx_pct": tx,
        "neighbour_networks_count": len(heard) if bsses is not None else None,
        "cochannel_networks_count": len(strong) if bsses is not None else None,
        "cochannel_strongest_dbm": max(b.signal_dbm for b in strong if b.signal_dbm is not None) if strong else None,
    }


def judge_interface(iface: Interface, m: Metrics, cfg: WifiConfig, label: str | None) -> RoomAssessment:
    detail: dict[str, MetricValue | str] = {"interface": iface.name}
    if label:
        detail["room"] = label
    for key in ("band_ghz", "channel_num", "channel_busy_pct", "cochannel_networks_count", "cochannel_strongest_dbm"):
        if m.get(key) is not None:
            detail[key] = m[key]
    where = f"{iface.name}" + (f" ({label})" if label else "")
    chan = f"channel {m['channel_num']}" if m.get("channel_num") is not None else "its channel"
    status, problems, findings = Status.OK, [], []
    busy = m.get("channel_busy_pct")
    if isinstance(busy, int | float) and busy >= cfg.busy_degraded_pct:
        failed = busy >= cfg.busy_failed_pct
        status = Status.FAILED if failed else Status.DEGRADED
        problems.append(_on_channel("wifi_channel_busy", m, channel_busy_pct=busy))
        findings.append(finding(
            "wifi_channel_busy", "critical" if failed else "warning", "wifi",
            f"The air on {chan} of {where} is busy {busy:g}% of the time: little is left for this office's "
            "devices (choose a quieter channel or move clients to 5 GHz).", detail))
    strong = m.get("cochannel_networks_count")
    if isinstance(strong, int) and strong >= cfg.cochannel_degraded_count:
        status = Status.DEGRADED if status is Status.OK else status
        problems.append(_on_channel("wifi_cochannel", m, count=strong, signal_dbm=cfg.cochannel_signal_dbm))
        findings.append(finding(
            "wifi_interference", "warning", "wifi",
            f"{strong} neighbouring networks share {chan} with {where} (strongest "
            f"{m.get('cochannel_strongest_dbm'):g} dBm): choose another channel.", detail))
    return RoomAssessment(status, problems, findings)


def _on_channel(key: str, m: Metrics, **args: MetricValue | str) -> Phrase:
    """A reason about the interface's channel: `<key>` naming its number, `<key>_own` when it is not known."""
    num = m.get("channel_num")
    return because(key, channel=num, **args) if num is not None else because(f"{key}_own", **args)


def worse(a: Status, b: Status) -> Status:
    return a if a.rank >= b.rank else b
