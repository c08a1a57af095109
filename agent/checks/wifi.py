"""wifi: the gateway's own WiFi — per interface (mode, SSID, band, channel, width, tx power, channel
load, neighbouring networks) and per connected station (signal, PHY rates, MCS/NSS, idle time,
retries), judged against configurable thresholds. No wireless interface: `skipped`.

Everything comes from `iw` (and /proc/net/wireless for client interfaces) through the seam in
agent/wifi/source.py; the parsers and the judgement are pure (agent/wifi/).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.findings import finding
from agent.reasons import because, step
from agent.wifi import assess
from agent.wifi.iw import in_use_survey, parse_dev, parse_info, parse_link, parse_station_dump, parse_survey_dump
from agent.wifi.model import Interface, Station, band_of
from agent.wifi.proc import parse_proc_net_wireless
from agent.wifi.scan import parse_scan
from agent.wifi.source import CapturedIw, IwCommand, IwSource
from linecheck.wire import Status


class WifiConfig(CheckConfig):
    interfaces: Literal["auto"] | list[str] = Field(
        default="auto", description="'auto' = every interface `iw dev` (or /sys/class/net) lists; or names")
    iw_path: str = Field(default="iw", description="The iw binary")
    capture_dir: str | None = Field(
        default=None, description="Read iw outputs captured on a site from this directory instead of running iw")
    scan: bool = Field(default=True, description="Look for neighbouring networks (where permitted)")
    scan_ap_force: bool = Field(
        default=False,
        description="On AP interfaces trigger a fresh scan with 'ap-force' (takes the radio off-channel for a "
                    "moment); otherwise the cached results of the last scan are used")
    signal_degraded_dbm: float = Field(default=-70, le=0, description="Station signal at or below: wifi_weak")
    signal_failed_dbm: float = Field(default=-80, le=0, description="Station signal at or below: wifi_weak, failed")
    rate_degraded_mbps: float = Field(default=100, ge=0, description="Active station's PHY rate below: wifi_low_rate")
    rate_failed_mbps: float = Field(default=12, ge=0, description="Active station's PHY rate at or below: failed")
    active_within_ms: int = Field(
        default=10_000, ge=0, description="Stations idle longer are reported but not judged (their rate is stale)")
    retry_degraded_pct: float = Field(
        default=25, ge=0, le=100, description="Share of frames retried at or above (with a good signal): interference")
    retry_min_packets: int = Field(default=1000, ge=1,
                                   description="Fewer frames than this: the retry share is not judged")
    busy_degraded_pct: float = Field(default=60, ge=0, le=100,
                                     description="Channel busy at or above: wifi_channel_busy")
    busy_failed_pct: float = Field(default=85, ge=0, le=100, description="Channel busy at or above: failed")
    cochannel_signal_dbm: float = Field(
        default=-75, le=0, description="Other networks overlapping our channel heard at or above this are counted")
    cochannel_degraded_count: int = Field(
        default=3, ge=1, description="That many strong overlapping networks or more: wifi_interference")
    max_stations: int = Field(default=32, ge=0, le=150, description="Per-station results reported (weakest first)")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Station MAC or interface name -> room/label shown in findings")
    timeout_s: float = 30.0

    @field_validator("labels")
    @classmethod
    def _lower_macs(cls, labels: dict[str, str]) -> dict[str, str]:
        return {k.lower() if k.count(":") == 5 else k: v for k, v in labels.items()}

    def label_for(self, *keys: str | None) -> str | None:
        for key in keys:
            if key and key.lower() in self.labels:
                return self.labels[key.lower()]
            if key and key in self.labels:
                return self.labels[key]
        return None


def source_for(cfg: WifiConfig) -> IwSource:
    return CapturedIw(cfg.capture_dir) if cfg.capture_dir else IwCommand(cfg.iw_path)


def _interfaces(cfg: WifiConfig, src: IwSource) -> tuple[list[Interface], list[Measurement]]:
    """The wireless interfaces to check, and measurements for those that cannot be checked."""
    problems: list[Measurement] = []
    listed: list[Interface] = []
    if src.available():
        out = src.run("dev")
        if out.ok:
            listed = parse_dev(out.stdout)
        else:
            problems.append(Measurement(Status.ERROR, because("iw_failed", diagnostic=str(out.error))))
    names = [i.name for i in listed]
    if cfg.interfaces == "auto":
        # interfaces the kernel calls wireless but iw cannot see (iw missing, or too old)
        missing = [n for n in src.sysfs_wireless() if n not in names]
        return listed, problems + [_no_iw(n, src) for n in missing]
    chosen: list[Interface] = []
    for name in cfg.interfaces:
        found = next((i for i in listed if i.name == name), None)
        if found is None and src.available():
            info = src.run("dev", name, "info")
            found = parse_info(info.stdout) if info.ok else None
        if found is None:
            if name in src.sysfs_wireless():
                problems.append(_no_iw(name, src))
            else:
                problems.append(Measurement(Status.ERROR, because("not_wireless", interface=name), target=name))
            continue
        chosen.append(found)
    return chosen, problems


def _no_iw(name: str, src: IwSource) -> Measurement:
    """A wireless interface without usable iw: what /proc/net/wireless still tells."""
    metrics = {}
    proc = {p.iface: p for p in parse_proc_net_wireless(src.proc_net_wireless() or "")}.get(name)
    if proc is not None:
        metrics = {"signal_dbm": proc.level_dbm, "noise_dbm": proc.noise_dbm,
                   "missed_beacons_count": proc.missed_beacon}
    return Measurement(Status.ERROR, because("no_iw", interface=name), metrics, target=name)


def _scan(cfg: WifiConfig, src: IwSource, iface: Interface) -> list | None:
    """Networks heard around `iface`, or None when no scan was possible (a reason is not needed:
    the metrics stay null). A refused fresh scan falls back to the cached results."""
    if not cfg.scan:
        return None
    attempts = [("dev", iface.name, "scan", "ap-force")] if iface.is_ap and cfg.scan_ap_force else []
    if not iface.is_ap:
        attempts.append(("dev", iface.name, "scan"))
    attempts.append(("dev", iface.name, "scan", "dump"))
    for args in attempts:
        out = src.run(*args)
        if out.ok:
            return parse_scan(out.stdout)
    return None


def _uplink_station(src: IwSource, iface: Interface, stations: list[Station]) -> Station | None:
    """On a client interface the one station is the AP; fall back to `iw link`, then /proc."""
    if stations:
        return stations[0]
    link = src.run("dev", iface.name, "link")
    if link.ok:
        parsed = parse_link(link.stdout)
        if parsed.connected and parsed.bssid:
            return Station(mac=parsed.bssid, iface=iface.name, signal_dbm=parsed.signal_dbm,
                           tx_bitrate=parsed.tx_bitrate, rx_bitrate=parsed.rx_bitrate,
                           tx_packets=parsed.tx_packets, rx_packets=parsed.rx_packets)
        return None
    proc = {p.iface: p for p in parse_proc_net_wireless(src.proc_net_wireless() or "")}.get(iface.name)
    if proc is not None and proc.level_dbm is not None:
        return Station(mac="unknown", iface=iface.name, signal_dbm=int(proc.level_dbm))
    return None


def check_interface(cfg: WifiConfig, src: IwSource, iface: Interface, ctx: CheckContext,
                    own_bssids: set[str], previous: dict[str, dict]) -> list[Measurement]:
    """One result for the interface, then one per station (weakest first, at most max_stations)."""
    ctx.progress(step("wifi", interface=iface.name))
    label = cfg.label_for(iface.name)
    target = f"{iface.name} ({iface.ssid})" if iface.ssid else iface.name
    if iface.freq_mhz is None and iface.is_ap:
        return [Measurement(Status.SKIPPED, because("wifi_not_operating", interface=iface.name), target=target)]
    dump = src.run("dev", iface.name, "station", "dump")
    stations = parse_station_dump(dump.stdout) if dump.ok else []
    survey_out = src.run("dev", iface.name, "survey", "dump")
    survey = in_use_survey(parse_survey_dump(survey_out.stdout), iface.freq_mhz) if survey_out.ok else None
    bsses = _scan(cfg, src, iface)

    state_surveys = ctx.state.setdefault("survey", {})
    state_stations = ctx.state.setdefault("stations", {})
    metrics = assess.interface_metrics(iface, stations, survey, state_surveys.get(iface.name), bsses, cfg,
                                       own_bssids)
    if survey is not None:
        state_surveys[iface.name] = {"freq": survey.freq_mhz, "active": survey.active_ms, "busy": survey.busy_ms,
                                     "rx": survey.rx_ms, "tx": survey.tx_ms}
    band = band_of(iface.freq_mhz) if iface.freq_mhz else None
    out: list[Measurement] = []

    if not iface.is_ap and (iface.type or "").lower() == "managed":
        uplink = _uplink_station(src, iface, stations)
        if uplink is None:
            verdict = assess.RoomAssessment(Status.FAILED, [because("wifi_not_connected", interface=iface.name)], [
                finding("wifi_not_connected", "critical", "wifi",
                        f"The gateway's WiFi interface {iface.name} is not connected.", {"interface": iface.name})])
            return [Measurement(verdict.status, verdict.reason, metrics, target, verdict.findings)]
        stations = [uplink]

    verdict = assess.judge_interface(iface, metrics, cfg, label)
    if not dump.ok:
        verdict.problems.append(because("station_dump_failed", diagnostic=str(dump.error)))
    out.append(Measurement(verdict.status, verdict.reason, metrics, target, verdict.findings))

    # weakest first, so the stations that matter are the ones kept under max_stations
    ordered = sorted(stations, key=lambda s: s.signal_dbm if s.signal_dbm is not None else 0)
    for st in ordered[:cfg.max_stations]:
        m = assess.station_metrics(st, previous.get(st.mac), cfg)
        st_label = cfg.label_for(st.mac) or label
        v = assess.judge_station(m, cfg, iface=iface.name, mac=st.mac, label=st_label, band_ghz=band,
                                 uplink=not iface.is_ap)
        st_target = f"{iface.name} {st.mac}" + (f" ({st_label})" if st_label else "")
        out.append(Measurement(v.status, v.reason, m, st_target, v.findings))
    for st in stations:
        state_stations[st.mac] = {"tx_packets": st.tx_packets, "tx_retries": st.tx_retries}
    return out


def run(cfg: WifiConfig, ctx: CheckContext) -> list[Measurement]:
    src = source_for(cfg)
    interfaces, problems = _interfaces(cfg, src)
    if not interfaces and not problems:
        where = "no_wireless_in_captures" if cfg.capture_dir else "no_wireless_here"
        return [Measurement(Status.SKIPPED, because(where))]
    own = {i.addr for i in interfaces if i.addr}
    out = list(problems)
    stations_before = dict(ctx.state.get("stations", {}))
    ctx.state["stations"] = {}  # rebuilt from the stations seen now: those that left are forgotten
    for iface in interfaces:
        if ctx.remaining() <= 0:
            out.append(Measurement(Status.ERROR, because("deadline_before_interface"), target=iface.name))
            continue
        out.extend(check_interface(cfg, src, iface, ctx, own, stations_before))
    return out


SPEC = CheckSpec(kind="wifi", config=WifiConfig, run=run)
