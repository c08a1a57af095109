"""What any throughput backend returns: metrics under the catalogue's names, and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from linecheck.wire import MetricValue

# Every metric a throughput result may carry (linecheck/metrics.csv, kind `throughput`).
METRICS = (
    "down_mbps", "up_mbps", "capacity_down_mbps", "capacity_up_mbps",
    "cross_traffic_down_mbps", "cross_traffic_up_mbps", "cross_traffic_high_flag",
    "latency_idle_ms", "latency_loaded_down_ms", "latency_loaded_up_ms", "responsiveness_rpm",
    "streams_down_count", "streams_up_count", "bytes_down_bytes", "bytes_up_bytes",
    "duration_down_s", "duration_up_s", "stable_down_flag", "stable_up_flag", "cpu_max_pct",
    "interrupted_down_flag", "interrupted_up_flag", "server_limited_flag", "retrans_up_pct",
    "loss_idle_pct", "loss_loaded_down_pct", "loss_loaded_up_pct",
)


@dataclass
class ThroughputResult:
    backend: str  # linecheck | speedtest | iperf3
    target: str  # e.g. linecheck://198.18.1.1:8070
    metrics: dict[str, MetricValue] = field(default_factory=lambda: dict.fromkeys(METRICS))
    notes: list[str] = field(default_factory=list)  # how each direction ended, caps hit, ...
    interrupted: str | None = None  # the line interrupted the test (link lost, streams stalled): why

    @property
    def bytes_used(self) -> int:
        return int((self.metrics.get("bytes_down_bytes") or 0) + (self.metrics.get("bytes_up_bytes") or 0))


def mbps(bits_per_s: float | None) -> float | None:
    return None if bits_per_s is None else round(bits_per_s / 1e6, 2)
