"""Facts about the gateway's own network stack, read from /proc and /sys (no subprocesses)."""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Route:
    interface: str
    gateway: str | None  # None for an on-link default route (e.g. PPP)


def parse_proc_net_route(text: str) -> Route | None:
    """The IPv4 default route with the lowest metric from /proc/net/route content."""
    best: tuple[int, Route] | None = None
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8 or cols[1] != "00000000" or cols[7] != "00000000":
            continue
        try:
            flags = int(cols[3], 16)
            gw_raw = int(cols[2], 16)
            metric = int(cols[6])
            gateway = socket.inet_ntoa(struct.pack("<I", gw_raw)) if flags & 0x2 and gw_raw else None
        except (ValueError, struct.error):  # a line we cannot read is not a route we can use
            continue
        if not flags & 0x1:  # RTF_UP
            continue
        if best is None or metric < best[0]:
            best = (metric, Route(cols[0], gateway))
    return best[1] if best else None


def default_route() -> Route | None:
    try:
        return parse_proc_net_route(Path("/proc/net/route").read_text())
    except OSError:
        return None


def carrier_up(interface: str) -> bool | None:
    """Whether the port sees its link partner now (/sys/class/net/IF/carrier); None when unknown.

    The kernel refuses to read `carrier` (EINVAL) while the interface is administratively down:
    that is no link either."""
    try:
        return Path(f"/sys/class/net/{interface}/carrier").read_text().strip() == "1"
    except OSError as exc:
        return False if exc.errno == errno.EINVAL else None


def carrier_changes(interface: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{interface}/carrier_changes").read_text().strip())
    except (OSError, ValueError):
        return None
