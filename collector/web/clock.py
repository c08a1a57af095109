"""Times on the console: in the console's zone (http.timezone) and always with its offset.

The footer names the zone, but a time copied out of a page (into a ticket note, a mail, a chat) loses
the footer: "2026-12-07 14:30" then reads eight hours apart in Shanghai and in UTC. Every time a page
or a chart shows goes through `shown`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from collector.store.types import as_utc


def shown(ts: datetime, tz: tzinfo) -> str:
    """'2026-12-07 22:30 +08:00' (an untyped time is taken as UTC, as the store keeps it)."""
    local = as_utc(ts).astimezone(tz)  # type: ignore[union-attr]
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"
