"""Parser for /proc/net/wireless (wireless extensions): signal and noise of client interfaces.

Drivers mark values with a trailing '.' when they were updated since the last read; a level of
-256 or a noise of -256 means "not available".
"""

from __future__ import annotations

from agent.wifi.model import ProcWireless


def _num(token: str) -> float | None:
    try:
        value = float(token.rstrip("."))
    except ValueError:
        return None
    return None if value <= -256 else value


def _int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def parse_proc_net_wireless(text: str) -> list[ProcWireless]:
    out: list[ProcWireless] = []
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        cols = rest.split()
        if len(cols) < 10:
            continue
        # status, link, level, noise, nwid, crypt, frag, retry, misc, missed beacon
        level = _num(cols[2])
        out.append(ProcWireless(
            iface=name.strip(), link_quality=_num(cols[1]),
            level_dbm=level if level is not None and level < 0 else None,  # positive = not dBm
            noise_dbm=_num(cols[3]), discarded_retry=_int(cols[7]), discarded_misc=_int(cols[8]),
            missed_beacon=_int(cols[9])))
    return out
