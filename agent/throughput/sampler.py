"""What the gateway's WAN interface carried during a test, and how busy the gateway's CPU was.

The agent sits on the gateway, so every byte the office sends or receives crosses the WAN
interface. While the test saturates the line, all WAN bytes together are the line's capacity;
the WAN bytes that are not the test's are the office's cross-traffic.

Interface counters count frames; to compare them with the test's goodput (TCP payload) each
frame's headers are taken off: payload = bytes - packets * header_bytes. This also holds on
interfaces that count GSO/GRO super-packets (veth, many NICs) once per super-packet, since the
kernel then also counts one set of headers per counted packet.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

# Ethernet (14) + IPv4 (20) + TCP with timestamps (32): what a bulk TCP data frame carries.
HEADER_BYTES = 66


@dataclass(frozen=True)
class WanSample:
    t: float
    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int

    def payload_since(self, earlier: WanSample, header_bytes: int = HEADER_BYTES) -> tuple[int, int]:
        """(down, up) payload bytes between `earlier` and this sample."""
        down = (self.rx_bytes - earlier.rx_bytes) - (self.rx_packets - earlier.rx_packets) * header_bytes
        up = (self.tx_bytes - earlier.tx_bytes) - (self.tx_packets - earlier.tx_packets) * header_bytes
        return max(0, down), max(0, up)


def wan_sample(iface: str | None, t: float) -> WanSample | None:
    if not iface:
        return None
    c = psutil.net_io_counters(pernic=True).get(iface)
    if c is None:
        return None
    return WanSample(t, c.bytes_recv, c.bytes_sent, c.packets_recv, c.packets_sent)


class CpuMeter:
    """Max whole-gateway CPU busy % over the intervals it was sampled at."""

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # primes the counter: the next call covers the interval since now
        self.max_pct: float | None = None

    def sample(self) -> None:
        pct = psutil.cpu_percent(None)
        self.max_pct = pct if self.max_pct is None else max(self.max_pct, pct)
