"""Times on the command line: in the zone the console shows (http.timezone), always with the offset.

A bare "2026-12-07 14:30" on the CLI was UTC while the console said Asia/Shanghai: the same event
read eight hours apart. Every time the CLI prints goes through here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from collector.config import CollectorConfig


def display_zone(cfg: CollectorConfig) -> ZoneInfo:
    return ZoneInfo(cfg.http.timezone)


def shown(at: datetime, zone: ZoneInfo, seconds: bool = True) -> str:
    """'2026-12-07 22:30:00 +08:00' (a naive datetime is taken as UTC, as the store keeps it)."""
    local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(zone)
    offset = local.strftime("%z")  # +0800
    clock = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{clock} {offset[:3]}:{offset[3:]}"
