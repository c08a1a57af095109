"""Traffic monitor: WAN and LAN byte counters of the gateway, turned into rates.

Cheap by design (one read of /proc/net/dev through psutil per sample): the idle tracker samples
it every minute and the cross-traffic gate over a few seconds. Counters are cumulative since the
interface appeared, so a rate needs two readings; a counter that went backwards (reboot, the
interface re-created, a 32-bit wrap on an old driver) yields no rate rather than a wrong one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from agent.netinfo import default_route


@dataclass(frozen=True)
class Counters:
    """Cumulative byte counters. `lan_bytes` sums rx+tx over the LAN interfaces; None if none is visible."""

    wan_rx_bytes: int
    wan_tx_bytes: int
    lan_bytes: int | None = None


@dataclass(frozen=True)
class Rates:
    """Average rates between two readings, in kbit/s (1 kbit = 1000 bit)."""

    wan_down_kbps: float
    wan_up_kbps: float
    lan_kbps: float | None
    seconds: float

    @property
    def wan_kbps(self) -> float:
        return self.wan_down_kbps + self.wan_up_kbps


def read_counters(wan: str | None, lans: Sequence[str] = ()) -> Counters | None:
    """Counters of the WAN interface (and LAN interfaces), or None when the WAN interface is unknown."""
    if not wan:
        return None
    nics = psutil.net_io_counters(pernic=True)
    w = nics.get(wan)
    if w is None:
        return None
    lan_seen = [nics[name] for name in lans if name in nics]
    lan = sum(n.bytes_recv + n.bytes_sent for n in lan_seen) if lan_seen else None
    return Counters(w.bytes_recv, w.bytes_sent, lan)


def rates(before: Counters, after: Counters, seconds: float) -> Rates | None:
    """Rates between two readings; None when any counter went backwards or no time passed."""
    if seconds <= 0:
        return None
    down = after.wan_rx_bytes - before.wan_rx_bytes
    up = after.wan_tx_bytes - before.wan_tx_bytes
    if down < 0 or up < 0:
        return None
    lan: float | None = None
    if before.lan_bytes is not None and after.lan_bytes is not None:
        if after.lan_bytes < before.lan_bytes:
            return None
        lan = (after.lan_bytes - before.lan_bytes) * 8 / 1000 / seconds
    return Rates(down * 8 / 1000 / seconds, up * 8 / 1000 / seconds, lan, seconds)


def wan_interface(configured: str) -> str | None:
    """The configured WAN interface, or the default route's when configured as 'auto'."""
    if configured != "auto":
        return configured
    route = default_route()
    return route.interface if route else None


class TrafficMonitor:
    """Reads the gateway's counters; the reading function and the clock are injectable for tests."""

    def __init__(self, wan: str, lans: Sequence[str] = (),
                 read: Callable[[str | None, Sequence[str]], Counters | None] = read_counters,
                 monotonic: Callable[[], float] = time.monotonic):
        self.wan = wan
        self.lans = list(lans)
        self._read = read
        self._monotonic = monotonic

    def read(self) -> Counters | None:
        return self._read(wan_interface(self.wan), self.lans)

    def measure(self, window_s: float, wait: Callable[[float], object] = time.sleep) -> Rates | None:
        """Average rates over `window_s` (wait is e.g. a stop event's wait, so shutdown is prompt)."""
        first, t0 = self.read(), self._monotonic()
        wait(window_s)
        second, t1 = self.read(), self._monotonic()
        if first is None or second is None:
            return None
        return rates(first, second, t1 - t0)
