"""Who is behind an IP address on the LAN: its MAC from the kernel's neighbour table.

A client that just talked to us over TCP has a fresh neighbour entry, so the lookup happens
while its request is being answered. IPv4 comes from /proc/net/arp; IPv6 from `ip -6 neigh`.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ATF_COM = 0x2  # a completed entry (the MAC is known)


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    iface: str


def parse_proc_net_arp(text: str) -> list[Neighbour]:
    """/proc/net/arp: 'IP address  HW type  Flags  HW address  Mask  Device'."""
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 6:
            continue
        try:
            flags = int(cols[2], 16)
        except ValueError:
            continue
        if flags & _ATF_COM and cols[3] != "00:00:00:00:00:00":
            out.append(Neighbour(cols[0], cols[3].lower(), cols[5]))
    return out


_IP_NEIGH = re.compile(r"^(\S+) dev (\S+) lladdr ([0-9a-fA-F:]{17})\b(?!.*\bFAILED\b)")


def parse_ip_neigh(text: str) -> list[Neighbour]:
    """`ip neigh show` lines: '198.19.0.2 dev lan0 lladdr 02:..:01 REACHABLE'."""
    return [Neighbour(m.group(1), m.group(3).lower(), m.group(2))
            for m in map(_IP_NEIGH.match, text.splitlines()) if m]


def normalise(ip: str) -> str:
    """'::ffff:198.19.0.2' (a v4 client on a dual-stack socket) -> '198.19.0.2'."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def lookup(ip: str, proc_arp: Path = Path("/proc/net/arp")) -> Neighbour | None:
    ip = normalise(ip)
    if ":" not in ip:
        try:
            found = [n for n in parse_proc_net_arp(proc_arp.read_text()) if n.ip == ip]
        except OSError:
            found = []
        return found[0] if found else None
    try:
        text = subprocess.run(["ip", "-6", "neigh", "show", ip], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = parse_ip_neigh(text)
    return found[0] if found else None
