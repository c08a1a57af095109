"""What the gateway's WiFi sees of a LAN client: its MAC (neighbour table) and, when it is a
station on one of our access points, its signal, PHY rates and its channel's load (iw)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.checks.wifi import WifiConfig, source_for
from agent.lan import neighbours
from agent.wifi import assess
from agent.wifi.iw import in_use_survey, parse_dev, parse_station_dump, parse_survey_dump
from agent.wifi.model import band_of
from linecheck.wire import MetricValue


@dataclass
class StationView:
    ip: str
    mac: str | None = None
    lan_iface: str | None = None
    wifi_iface: str | None = None
    ssid: str | None = None
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    note: str | None = None  # why the radio figures are missing, when they are

    def public(self) -> dict[str, object]:
        """What the page shows the client about itself."""
        return {"ip": self.ip, "mac": self.mac, "wifi_interface": self.wifi_iface, "ssid": self.ssid,
                "note": self.note, **self.metrics}


STATION_KEYS = ("signal_dbm", "signal_avg_dbm", "tx_bitrate_mbps", "rx_bitrate_mbps", "tx_mcs_num", "tx_nss_count",
                "tx_width_mhz", "tx_retry_pct")


def look_up(client_ip: str, wifi: WifiConfig | None = None) -> StationView:
    """Never raises: a client we cannot place is recorded with null radio figures and a note."""
    wifi = wifi or WifiConfig()
    view = StationView(ip=neighbours.normalise(client_ip))
    blank: dict[str, MetricValue] = dict.fromkeys(
        (*STATION_KEYS, "band_ghz", "channel_num", "channel_busy_pct"), None)
    view.metrics = {"station_found_flag": None, **blank}
    found = neighbours.lookup(view.ip)
    if found is None:
        view.note = "the client is not in the gateway's neighbour table (routed from another network?)"
        return view
    view.mac, view.lan_iface = found.mac, found.iface
    src = source_for(wifi)
    if not src.available():
        view.note = "iw is not available on the gateway: cannot tell whether the client uses its WiFi"
        return view
    out = src.run("dev")
    interfaces = parse_dev(out.stdout) if out.ok else []
    for iface in interfaces:
        dump = src.run("dev", iface.name, "station", "dump")
        if not dump.ok:
            continue
        station = next((s for s in parse_station_dump(dump.stdout) if s.mac == found.mac), None)
        if station is None:
            continue
        m = assess.station_metrics(station, None, wifi)
        survey_out = src.run("dev", iface.name, "survey", "dump")
        survey = in_use_survey(parse_survey_dump(survey_out.stdout), iface.freq_mhz) if survey_out.ok else None
        view.wifi_iface, view.ssid = iface.name, iface.ssid
        view.metrics = {"station_found_flag": 1, **{k: m[k] for k in STATION_KEYS},
                        "band_ghz": band_of(iface.freq_mhz) if iface.freq_mhz else None,
                        "channel_num": iface.channel,
                        "channel_busy_pct": round(survey.busy_pct, 1) if survey and survey.busy_pct is not None
                        else None}
        return view
    view.metrics["station_found_flag"] = 0
    view.note = "not a WiFi station of this gateway (wired, or behind another access point)"
    return view
