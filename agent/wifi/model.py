"""What the parsers return: plain records of what `iw` printed, with units in field names.

Nothing here runs a command. A field the driver did not report is None (never 0): drivers differ
a lot in what they fill in (ath10k gives no expected throughput, iwlwifi has no survey, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bitrate:
    """One `tx bitrate:` / `rx bitrate:` value, e.g. "866.7 MBit/s VHT-MCS 9 80MHz short GI VHT-NSS 2"."""

    mbps: float | None
    phy: str  # legacy, HT, VHT, HE, EHT
    mcs: int | None = None  # as printed (HT MCS runs 0-31 across streams; VHT/HE/EHT 0-13 per stream)
    nss: int | None = None  # spatial streams; derived from the HT MCS index when not printed
    width_mhz: int | None = None  # None when iw printed no width (20 MHz for HT/VHT/HE)
    short_gi: bool = False


@dataclass
class Interface:
    name: str
    phy: int | None = None
    ifindex: int | None = None
    addr: str | None = None
    ssid: str | None = None
    type: str | None = None  # AP, managed, monitor, mesh point, P2P-client, ...
    freq_mhz: int | None = None
    channel: int | None = None
    width_mhz: int | None = None
    center1_mhz: int | None = None
    txpower_dbm: float | None = None

    @property
    def is_ap(self) -> bool:
        return (self.type or "").lower() in ("ap", "p2p-go")


@dataclass
class Station:
    """One entry of `iw dev X station dump` (on an AP: a client; on a client: its AP)."""

    mac: str
    iface: str
    inactive_ms: int | None = None
    rx_bytes: int | None = None
    rx_packets: int | None = None
    tx_bytes: int | None = None
    tx_packets: int | None = None
    tx_retries: int | None = None
    tx_failed: int | None = None
    beacon_loss: int | None = None
    signal_dbm: int | None = None
    signal_chains_dbm: list[int] = field(default_factory=list)
    signal_avg_dbm: int | None = None
    beacon_signal_avg_dbm: int | None = None
    tx_bitrate: Bitrate | None = None
    rx_bitrate: Bitrate | None = None
    expected_throughput_mbps: float | None = None
    connected_s: int | None = None
    authorized: bool | None = None
    associated: bool | None = None


@dataclass
class Link:
    """`iw dev X link` on a client (managed) interface."""

    connected: bool
    bssid: str | None = None
    ssid: str | None = None
    freq_mhz: int | None = None
    signal_dbm: int | None = None
    rx_bytes: int | None = None
    rx_packets: int | None = None
    tx_bytes: int | None = None
    tx_packets: int | None = None
    rx_bitrate: Bitrate | None = None
    tx_bitrate: Bitrate | None = None


@dataclass
class Survey:
    """One frequency of `iw dev X survey dump`. Times are cumulative driver counters."""

    iface: str
    freq_mhz: int
    in_use: bool = False
    noise_dbm: int | None = None
    active_ms: int | None = None
    busy_ms: int | None = None
    ext_busy_ms: int | None = None
    rx_ms: int | None = None
    tx_ms: int | None = None

    @property
    def busy_pct(self) -> float | None:
        if self.active_ms and self.busy_ms is not None:
            return min(100.0, 100.0 * self.busy_ms / self.active_ms)
        return None


@dataclass
class Bss:
    """One network heard in `iw dev X scan`."""

    bssid: str
    iface: str | None = None
    freq_mhz: int | None = None
    signal_dbm: float | None = None
    ssid: str | None = None
    associated: bool = False
    primary_channel: int | None = None
    last_seen_ms: int | None = None


@dataclass
class ProcWireless:
    """One interface line of /proc/net/wireless (wireless extensions; client interfaces only)."""

    iface: str
    link_quality: float | None
    level_dbm: float | None
    noise_dbm: float | None
    discarded_retry: int | None = None
    discarded_misc: int | None = None
    missed_beacon: int | None = None


def channel_of(freq_mhz: int) -> int | None:
    """IEEE 802.11 channel number of a centre frequency (2.4, 5, 6 and 60 GHz bands)."""
    if freq_mhz == 2484:
        return 14
    if 2407 < freq_mhz < 2484:
        return (freq_mhz - 2407) // 5
    if freq_mhz == 5935:  # 6 GHz channel 2 sits below the regular 6 GHz grid
        return 2
    if 5950 < freq_mhz <= 7115:
        return (freq_mhz - 5950) // 5
    if 4910 <= freq_mhz <= 5895:
        return (freq_mhz - 5000) // 5
    if 58320 <= freq_mhz <= 70200:
        return (freq_mhz - 56160) // 2160
    return None


def band_of(freq_mhz: int) -> float | None:
    """The band in GHz: 2.4, 5, 6 or 60."""
    if 2400 <= freq_mhz < 2500:
        return 2.4
    if 4900 <= freq_mhz < 5925:
        return 5.0
    if 5925 <= freq_mhz <= 7125:
        return 6.0
    if 57000 <= freq_mhz <= 71000:
        return 60.0
    return None
