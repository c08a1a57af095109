"""Parsers for `iw` output: `iw dev`, `iw dev X info`, `iw dev X link`, `iw dev X station dump`,
`iw dev X survey dump`. Pure functions of the text; tested on captures in tests/data/iw/.

iw prints one `key:<tabs>value` per line, indented with tabs, and has changed over the years
(iw 6 prints the station flags before the counters, adds MLO `Link N:` sections, drivers leave
fields out). So the parsers look fields up by name, never by position, and ignore what they do
not know.
"""

from __future__ import annotations

import re

from agent.wifi.model import Bitrate, Interface, Link, Station, Survey

_MAC = r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}"
_INT = re.compile(r"-?\d+")
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def unescape_ssid(raw: str) -> str:
    """iw prints non-printable SSID bytes as \\xNN (so a UTF-8 SSID such as 会议室 arrives as
    \\xe4\\xbc\\x9a...); turn them back into text."""
    if "\\x" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw.startswith("\\x", i) and re.fullmatch(r"[0-9a-fA-F]{2}", raw[i + 2:i + 4]):
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        else:
            out.extend(raw[i].encode())
            i += 1
    return out.decode("utf-8", errors="replace")


def _first_int(text: str) -> int | None:
    m = _INT.search(text)
    return int(m.group()) if m else None


def _first_num(text: str) -> float | None:
    m = _NUM.search(text)
    return float(m.group()) if m else None


def _key_value(line: str) -> tuple[str, str] | None:
    """'\\tsignal avg:\\t-77 [-79, -80] dBm' -> ('signal avg', '-77 [-79, -80] dBm')."""
    stripped = line.strip()
    if ":" not in stripped:
        return None
    key, _, value = stripped.partition(":")
    return key.strip().lower(), value.strip()


# --- bitrates -----------------------------------------------------------------------------------

def parse_bitrate(text: str) -> Bitrate | None:
    """'866.7 MBit/s VHT-MCS 9 80MHz short GI VHT-NSS 2' and friends; None when no rate is given."""
    text = text.strip()
    if not text:
        return None
    rate = re.match(r"(\d+(?:\.\d+)?) MBit/s", text)
    mbps = float(rate.group(1)) if rate else None
    phy, mcs, nss = "legacy", None, None
    for name in ("EHT", "HE", "VHT"):
        m = re.search(rf"\b{name}-MCS (\d+)", text)
        if m:
            phy, mcs = name, int(m.group(1))
            n = re.search(rf"\b{name}-NSS (\d+)", text)
            nss = int(n.group(1)) if n else None
            break
    else:
        m = re.search(r"(?<![\w-])MCS (\d+)", text)
        if m:
            phy, mcs = "HT", int(m.group(1))
            nss = mcs // 8 + 1 if mcs < 32 else None  # HT MCS 0-7 one stream, 8-15 two, ...
    width = re.search(r"\b(\d+)(P80)?MHz\b", text)
    width_mhz = None
    if width:
        width_mhz = 160 if width.group(2) else int(width.group(1))
    elif phy != "legacy":
        width_mhz = 20  # iw prints no width flag for 20 MHz HT/VHT/HE rates
    if mbps is None and mcs is None:
        return None
    return Bitrate(mbps=mbps, phy=phy, mcs=mcs, nss=nss, width_mhz=width_mhz, short_gi="short GI" in text)


# --- interfaces ---------------------------------------------------------------------------------

_WIDTH = re.compile(r"width:\s*(\d+)(?:\+(\d+))?\s*MHz")
_CHANNEL_TYPE_WIDTH = {"NO HT": 20, "HT20": 20, "HT40-": 40, "HT40+": 40}


def _iface_field(iface: Interface, line: str) -> None:
    word, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if word == "ifindex":
        iface.ifindex = _first_int(rest)
    elif word == "addr":
        iface.addr = rest.lower()
    elif word == "ssid":
        iface.ssid = unescape_ssid(rest)
    elif word == "type":
        iface.type = rest
    elif word == "wiphy":
        iface.phy = _first_int(rest)
    elif word == "channel":
        m = re.match(r"(\d+) \((\d+)(?:\.\d+)? MHz\)", rest)
        if m:
            iface.channel, iface.freq_mhz = int(m.group(1)), int(m.group(2))
        w = _WIDTH.search(rest)
        if w:
            iface.width_mhz = int(w.group(1)) + int(w.group(2) or 0)
        else:
            for name, mhz in _CHANNEL_TYPE_WIDTH.items():
                if rest.endswith(name):
                    iface.width_mhz = mhz
        c1 = re.search(r"center1: (\d+) MHz", rest)
        iface.center1_mhz = int(c1.group(1)) if c1 else None
    elif word == "txpower":
        iface.txpower_dbm = _first_num(rest)


def parse_dev(text: str) -> list[Interface]:
    """`iw dev`: every wireless interface with its phy, type, SSID, channel and tx power."""
    out: list[Interface] = []
    phy: int | None = None
    current: Interface | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.match(r"phy#(\d+)", line)
        if m:
            phy, current = int(m.group(1)), None
            continue
        m = re.match(r"\s+Interface (\S+)\s*$", line)
        if m:
            current = Interface(name=m.group(1), phy=phy)
            out.append(current)
            continue
        if re.match(r"\s+Unnamed/non-netdev interface", line):
            current = None  # a P2P-device wdev: no netdev, nothing to check
            continue
        if current is not None:
            _iface_field(current, line)
    return out


def parse_info(text: str) -> Interface | None:
    """`iw dev X info`."""
    current: Interface | None = None
    for line in text.splitlines():
        m = re.match(r"Interface (\S+)\s*$", line)
        if m:
            current = Interface(name=m.group(1))
        elif current is not None and line.strip():
            _iface_field(current, line)
    return current


# --- link ---------------------------------------------------------------------------------------

def parse_link(text: str) -> Link:
    """`iw dev X link` on a client interface; `Not connected.` gives connected=False."""
    link = Link(connected=False)
    for line in text.splitlines():
        m = re.match(rf"Connected to ({_MAC})", line)
        if m:
            link.connected, link.bssid = True, m.group(1).lower()
            continue
        kv = _key_value(line)
        if kv is None or not link.connected:
            continue
        key, value = kv
        if key == "ssid":
            link.ssid = unescape_ssid(value)
        elif key == "freq":
            num = _first_num(value)
            link.freq_mhz = int(num) if num is not None else None
        elif key == "signal":
            link.signal_dbm = _first_int(value)
        elif key in ("rx", "tx"):
            m2 = re.match(r"(\d+) bytes \((\d+) packets\)", value)
            if m2:
                setattr(link, f"{key}_bytes", int(m2.group(1)))
                setattr(link, f"{key}_packets", int(m2.group(2)))
        elif key == "rx bitrate":
            link.rx_bitrate = parse_bitrate(value)
        elif key == "tx bitrate":
            link.tx_bitrate = parse_bitrate(value)
    return link


# --- stations -----------------------------------------------------------------------------------

_STATION_INTS = {
    "inactive time": "inactive_ms", "rx bytes": "rx_bytes", "rx packets": "rx_packets",
    "tx bytes": "tx_bytes", "tx packets": "tx_packets", "tx retries": "tx_retries",
    "tx failed": "tx_failed", "beacon loss": "beacon_loss", "connected time": "connected_s",
    "signal avg": "signal_avg_dbm", "beacon signal avg": "beacon_signal_avg_dbm",
}


def parse_station_dump(text: str) -> list[Station]:
    """`iw dev X station dump` (also `iw dev X station get MAC`)."""
    stations: list[Station] = []
    current: Station | None = None
    in_mlo_link = False
    for line in text.splitlines():
        m = re.match(rf"Station ({_MAC}) \(on (\S+)\)", line)
        if m:
            current = Station(mac=m.group(1).lower(), iface=m.group(2))
            stations.append(current)
            in_mlo_link = False
            continue
        if current is None:
            continue
        if re.match(r"\s+Link \d+:", line):
            in_mlo_link = True  # per-link repeats of the fields above (WiFi 7 MLO): keep the totals
        kv = _key_value(line)
        if kv is None or in_mlo_link:
            continue
        key, value = kv
        if key in _STATION_INTS:
            setattr(current, _STATION_INTS[key], _first_int(value))
        elif key == "signal":
            current.signal_dbm = _first_int(value)
            chains = re.search(r"\[([^\]]*)\]", value)
            current.signal_chains_dbm = [int(x) for x in _INT.findall(chains.group(1))] if chains else []
        elif key == "tx bitrate":
            current.tx_bitrate = parse_bitrate(value)
        elif key == "rx bitrate":
            current.rx_bitrate = parse_bitrate(value)
        elif key == "expected throughput":
            current.expected_throughput_mbps = _first_num(value)
        elif key in ("authorized", "associated"):
            setattr(current, key, value == "yes")
    return stations


# --- survey -------------------------------------------------------------------------------------

_SURVEY_FIELDS = {
    "noise": "noise_dbm", "channel active time": "active_ms", "channel busy time": "busy_ms",
    "extension channel busy time": "ext_busy_ms", "channel receive time": "rx_ms",
    "channel transmit time": "tx_ms",
}


def parse_survey_dump(text: str) -> list[Survey]:
    """`iw dev X survey dump`: one record per frequency; `in_use` marks the operating channel."""
    out: list[Survey] = []
    iface: str | None = None
    current: Survey | None = None
    for line in text.splitlines():
        m = re.match(r"Survey data from (\S+)", line)
        if m:
            iface, current = m.group(1), None
            continue
        kv = _key_value(line)
        if kv is None or iface is None:
            continue
        key, value = kv
        if key == "frequency":
            freq = _first_num(value)
            if freq is None:
                continue
            current = Survey(iface=iface, freq_mhz=int(freq), in_use="[in use]" in value)
            out.append(current)
        elif current is not None and key in _SURVEY_FIELDS:
            setattr(current, _SURVEY_FIELDS[key], _first_int(value))
    return out


def in_use_survey(surveys: list[Survey], freq_mhz: int | None = None) -> Survey | None:
    """The operating channel's survey: the one marked [in use], else the one on `freq_mhz`."""
    for s in surveys:
        if s.in_use:
            return s
    for s in surveys:
        if freq_mhz is not None and s.freq_mhz == freq_mhz:
            return s
    return None

