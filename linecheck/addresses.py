"""Broker addresses as config files write them (`host:port`), parsed once for the agent and the collector.

No paho here: the agent's config loads in processes that must stay small (tests/test_checkproc.py)."""

from __future__ import annotations


def parse_address(value: str, default_port: int = 1883) -> tuple[str, int]:
    """'host:port', 'host' (the default port) or '[v6 address]:port' -> (host, port); ValueError says what is
    expected. Config files list brokers this way (agent and collector `mqtt.brokers`)."""
    text = value.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"{value!r}: expected host:port such as 10.0.0.5:1883 or broker-2.example:8883")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)

