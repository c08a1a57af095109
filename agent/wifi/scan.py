"""Parser for `iw dev X scan` (and `scan dump`): the networks heard, for co-channel interference.

Only what interference needs is kept: BSSID, frequency, signal, SSID and the primary channel
from the DS Parameter set / HT operation elements. Everything else iw prints (rates, RSN,
vendor elements, ...) is skipped.
"""

from __future__ import annotations

import re

from agent.wifi.iw import unescape_ssid
from agent.wifi.model import Bss, channel_of

_BSS = re.compile(r"BSS ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\s*\(on (\S+)\)(.*)")


def parse_scan(text: str) -> list[Bss]:
    out: list[Bss] = []
    current: Bss | None = None
    for line in text.splitlines():
        m = _BSS.match(line)
        if m:
            current = Bss(bssid=m.group(1).lower(), iface=m.group(2), associated="associated" in m.group(3))
            out.append(current)
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("freq:"):
            num = re.search(r"\d+(?:\.\d+)?", stripped)
            current.freq_mhz = int(float(num.group())) if num else None
        elif stripped.startswith("signal:"):
            num = re.search(r"-?\d+(?:\.\d+)?", stripped)
            # "signal: 62/100" (unspecified units) is not dBm: leave it unknown
            current.signal_dbm = float(num.group()) if num and "dBm" in stripped else None
        elif stripped.startswith("SSID:") and current.ssid is None:
            current.ssid = unescape_ssid(stripped[5:].strip())
        elif stripped.startswith("DS Parameter set: channel") or (
                stripped.startswith("* primary channel:") and current.primary_channel is None):
            num = re.search(r"\d+$", stripped)  # a garbled line leaves the channel unknown, not a crash
            current.primary_channel = int(num.group()) if num else None
        elif stripped.startswith("last seen:") and "ago" in stripped:
            num = re.search(r"\d+", stripped)
            current.last_seen_ms = int(num.group()) if num else None
    for bss in out:
        if bss.primary_channel is None and bss.freq_mhz is not None:
            bss.primary_channel = channel_of(bss.freq_mhz)
    return out
