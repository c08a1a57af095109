"""Settings of the `wifi` check (its thresholds are also used to judge the station behind a
LAN/WiFi throughput test). Documented line by line in config/agent.example.yaml and docs/wifi.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from agent.checks.base import CheckConfig


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
