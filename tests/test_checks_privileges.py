"""Without privileges nothing crashes: simulated PermissionError at the socket seam (no root needed).
The lab tests run the same checks for real as `nobody` (tests/test_checks_line.py)."""

from __future__ import annotations

import socket

import pytest

from agent.checks import gateway, ipv6, ping, pmtu, traceroute
from agent.netinfo import Route
from agent.reasons import english
from linecheck.wire import Status
from tests.checkctx import make_ctx

REAL_SOCKET = socket.socket


@pytest.fixture
def no_icmp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ICMP/raw socket is refused, as for a user outside ping_group_range without CAP_NET_RAW."""

    def guarded(family: int = -1, type: int = -1, proto: int = -1, *args: object) -> socket.socket:  # noqa: A002
        if type == socket.SOCK_RAW or proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
            raise PermissionError(1, "Operation not permitted")
        return REAL_SOCKET(family, type, proto, *args)

    monkeypatch.setattr(socket, "socket", guarded)


def test_ping_skips_with_the_fix_in_the_reason(no_icmp: None) -> None:
    [m] = ping.run(ping.PingConfig(targets=["127.0.0.1"], count=1), make_ctx())
    assert m.status is Status.SKIPPED
    assert "net.ipv4.ping_group_range" in english(m.reason) and "CAP_NET_RAW" in english(m.reason)


def test_pmtu_and_ipv6_skip(no_icmp: None, monkeypatch: pytest.MonkeyPatch) -> None:
    m = pmtu.run(pmtu.PmtuConfig(target="127.0.0.1"), make_ctx(wan=None))
    assert m.status is Status.SKIPPED and "ICMP not permitted" in english(m.reason)
    address = "24003200000000000000000000000009 02 40 00 00 wan0\n"
    default = f"{'0' * 32} 00 {'0' * 32} 00 fe80{'0' * 27}1 00000400 00000001 00000000 00000003 wan0\n"
    monkeypatch.setattr(ipv6, "_read", lambda path: address if path == ipv6.IF_INET6 else default)
    m = ipv6.run(ipv6.Ipv6Config(target="::1"), make_ctx())
    assert m.status is Status.SKIPPED
    assert m.metrics["global_address_count"] == 1 and m.metrics["default_route_flag"] == 1
    assert "reachability not tested" in english(m.reason)


def test_gateway_without_arp_or_icmp_is_skipped_not_an_error(no_icmp: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway, "default_route", lambda: Route("wan0", "198.18.0.1"))

    def refused(*_a: object) -> list[float]:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(gateway, "arp_probe", refused)
    m = gateway.run(gateway.GatewayConfig(), make_ctx())
    assert m.status is Status.SKIPPED and m.metrics["arp_permitted_flag"] == 0 and m.metrics["reachable_flag"] is None
    assert "ARP needs CAP_NET_RAW" in english(m.reason) and "ICMP not permitted" in english(m.reason)


def test_traceroute_scapy_only_skips_and_auto_falls_back(no_icmp: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_a: object) -> list:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(traceroute, "trace_scapy", refused)
    [m] = traceroute.run(traceroute.TracerouteConfig(target="127.0.0.1", method="scapy"), make_ctx())
    assert m.status is Status.SKIPPED and "CAP_NET_RAW" in english(m.reason)
    summary, *hops = traceroute.run(traceroute.TracerouteConfig(target="127.0.0.1", probe_timeout_s=0.5), make_ctx())
    assert summary.status is Status.OK and summary.metrics["raw_socket_flag"] == 0 and len(hops) == 1


def test_ping_accepts_ipv6_literals_on_loopback() -> None:
    [m] = ping.run(ping.PingConfig(targets=["::1"], count=3, interval_s=0.01), make_ctx())
    if m.status is Status.SKIPPED:
        pytest.skip(f"this machine allows no ICMPv6 echo: {english(m.reason)}")
    assert m.status is Status.OK and m.target == "::1" and m.metrics["received_count"] == 3
