"""Settings of the LAN-side speed test service (config key `lan_test`)."""

from __future__ import annotations

from pydantic import Field, field_validator

from linecheck.configfile import Strict


def valid_room(label: str) -> str:
    """Room labels become result targets and promise keys: 1-64 printable characters."""
    label = " ".join(label.split())
    if not 1 <= len(label) <= 64 or not label.isprintable():
        raise ValueError("a room label is 1-64 printable characters")
    return label


class LanTestConfig(Strict):
    enabled: bool = Field(default=False, description="Serve the LAN speed test from the daemon")
    host: str | None = Field(
        default=None, description="Address to listen on; null = the first IPv4 address of line.lan_interfaces "
                                  "(never the WAN side)")
    port: int = Field(default=8090, ge=0, le=65535)
    rooms: dict[str, float] = Field(
        default_factory=dict, description="Room label -> target Mbit/s (both directions); offered on the page")
    target_mbps: float | None = Field(
        default=None, gt=0, description="Target for rooms not listed; null = line.plan_down_mbps")
    max_test_s: float = Field(default=30, gt=0, le=300, description="One browser/CLI test may last this long")
    max_tests: int = Field(default=2, ge=1, le=32, description="Tests at once (more: 'server busy')")
    max_results_per_hour: int = Field(
        default=120, ge=1, description="Recorded results per hour from the LAN (beyond: refused, not spooled)")
    token: str | None = Field(default=None, description="When set, clients must send it (Authorization: Bearer)")

    @field_validator("rooms")
    @classmethod
    def _rooms(cls, rooms: dict[str, float]) -> dict[str, float]:
        out = {}
        for label, mbps in rooms.items():
            if mbps <= 0:
                raise ValueError(f"room {label!r}: target must be above 0 Mbit/s")
            out[valid_room(label)] = mbps
        return out
