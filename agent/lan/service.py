"""Wiring the LAN test server into an agent: where it listens and where its results go."""

from __future__ import annotations

import socket
from collections.abc import Callable

import psutil

from agent.checks.wifi import WifiConfig
from agent.config import AgentConfig
from agent.lan.server import Identity, LanServer
from linecheck.wire import ResultEnvelope


class LanServiceError(Exception):
    """The LAN test server cannot start; the message names the config key to fix."""


def listen_host(cfg: AgentConfig) -> str:
    """lan_test.host, else the first IPv4 address of line.lan_interfaces: never the WAN side."""
    if cfg.lan_test.host:
        return cfg.lan_test.host
    addrs = psutil.net_if_addrs()
    for iface in cfg.line.lan_interfaces:
        for a in addrs.get(iface, []):
            if a.family == socket.AF_INET:
                return a.address
    raise LanServiceError("lan_test: set lan_test.host, or line.lan_interfaces to an interface with an IPv4 "
                          f"address (got {cfg.line.lan_interfaces or 'none'})")


def build(cfg: AgentConfig, record: Callable[[ResultEnvelope], ResultEnvelope]) -> LanServer:
    wifi = cfg.checks.get("wifi")
    identity = Identity(cfg.agent_id, cfg.line_id, cfg.site_id, cfg.line.plan_down_mbps)
    host = listen_host(cfg)
    try:
        return LanServer(cfg.lan_test, identity, record, host, wifi if isinstance(wifi, WifiConfig) else None)
    except OSError as exc:
        raise LanServiceError(f"lan_test: cannot listen on {host}:{cfg.lan_test.port}: {exc.strerror}") from None
