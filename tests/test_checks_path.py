"""gateway, pmtu, traceroute and ipv6 in the line lab, and their /proc parsers on captured files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.checks import pmtu, traceroute
from agent.checks.ipv6 import parse_if_inet6, parse_ipv6_default_route
from agent.checks.pmtu import PmtuConfig
from agent.checks.traceroute import TracerouteConfig
from agent.reasons import english
from linecheck.wire import Status
from tests.checkctx import by_kind, make_ctx, run_agent
from tests.lab import CARRIER_ADDR, SERVER6_ADDR, SERVER_ADDR, LineLab

PROC = Path(__file__).parent / "data" / "proc"


def test_if_inet6_captures() -> None:
    lab = parse_if_inet6((PROC / "if_inet6.lab_gateway").read_text())
    assert [(a.address, a.prefix_len, a.interface, a.usable) for a in lab] == [("2001:2::2", 64, "wan0", True)]
    assert parse_if_inet6((PROC / "if_inet6.container_ula").read_text()) == []  # ULA and link-local only
    lines = ("20010db8000000000000000000000001 02 40 00 00  eth0\n"  # documentation prefix: not global
             "24003200000000000000000000000001 02 40 00 40  eth0\n"  # tentative (DAD running)
             "24003200000000000000000000000009 02 40 00 00  eth0\n")
    assert [(a.address, a.usable) for a in parse_if_inet6(lines)] == [("2400:3200::1", False), ("2400:3200::9", True)]


def test_ipv6_default_route_captures() -> None:
    assert parse_ipv6_default_route((PROC / "ipv6_route.lab_gateway").read_text()) == ("wan0", "2001:2::1")
    assert parse_ipv6_default_route((PROC / "ipv6_route.container_ula").read_text()) == ("eth0", "fd00::1")
    unreachable_only = (PROC / "ipv6_route.lab_gateway").read_text().splitlines()[-1]
    assert parse_ipv6_default_route(unreachable_only) is None  # the kernel's reject route on lo is no route


@pytest.mark.lab
def test_pmtu_exact_when_the_carrier_link_beyond_is_smaller(lab: LineLab) -> None:
    far = lab.add_router_chain(1)
    lab.set_link_mtu(lab.carrier, "ch0a", 1400)  # the carrier's router signals it with ICMP
    with lab.inside(lab.gw):
        m = pmtu.run(PmtuConfig(target=far, probe_timeout_s=0.3), make_ctx(wan=None))
    assert m.metrics["path_mtu_bytes"] == 1400 and m.metrics["interface_mtu_bytes"] == 1500
    assert m.status is Status.DEGRADED and m.metrics["frag_needed_flag"] == 1
    assert [f.code for f in m.findings] == ["pmtu_reduced"]


@pytest.mark.lab
def test_pmtu_blackhole_when_the_carrier_access_port_is_smaller(lab: LineLab) -> None:
    lab.set_mtu(lab.carrier, 1400)
    with lab.inside(lab.gw):
        m = pmtu.run(PmtuConfig(target=SERVER_ADDR, probe_timeout_s=0.3), make_ctx(wan=None))
    # A veth port drops frames above its MTU without any ICMP, but (like many NICs) allows a VLAN
    # tag's 4 bytes of slack (is_skb_forwardable()): the largest IP packet that crosses is MTU + 4.
    assert m.metrics["path_mtu_bytes"] == 1404, m.metrics
    assert m.status is Status.FAILED and m.metrics["frag_needed_flag"] == 0
    assert [f.code for f in m.findings] == ["pmtu_blackhole"]


@pytest.mark.lab
def test_traceroute_unprivileged_method_lists_each_hop(lab: LineLab) -> None:
    far = lab.add_router_chain(2)
    with lab.inside(lab.gw):
        summary, *hops = traceroute.run(TracerouteConfig(target=far, method="unprivileged", probe_timeout_s=0.5),
                                        make_ctx())
    assert summary.status is Status.OK and summary.metrics["reached_flag"] == 1
    assert summary.metrics["hops_count"] == 3 and summary.metrics["raw_socket_flag"] == 0
    assert [h.target for h in hops] == [f"hop 1 {CARRIER_ADDR}", "hop 2 198.18.20.2", f"hop 3 {far}"]
    assert all(h.metrics["hop_rtt_ms"] is not None for h in hops)


@pytest.mark.lab
def test_traceroute_not_reaching_the_target_is_degraded_with_the_last_hop(lab: LineLab) -> None:
    with lab.inside(lab.gw):
        summary, *hops = traceroute.run(TracerouteConfig(target="198.18.30.1", method="unprivileged",
                                                         probe_timeout_s=0.2, max_hops=6), make_ctx())
    # The carrier has no route to 198.18.30.1: it answers "network unreachable" and the trace ends there.
    assert summary.status is Status.DEGRADED and summary.metrics["reached_flag"] == 0
    assert summary.metrics["hops_count"] is None and summary.metrics["rtt_ms"] is None
    assert f"last answer from hop 1 ({CARRIER_ADDR})" in english(summary.reason)
    assert [h.target for h in hops] == [f"hop 1 {CARRIER_ADDR}"]


@pytest.mark.lab
def test_gateway_traceroute_ipv6_as_root_and_as_nobody(lab: LineLab, tmp_path: Path) -> None:
    far = lab.add_router_chain(2)
    lab.enable_ipv6()
    checks = (f"  gateway: {{arp_count: 2, ping_count: 3, interval_s: 0.05}}\n"
              f"  traceroute: {{target: {far}, probe_timeout_s: 0.5}}\n"
              f"  ipv6: {{target: '{SERVER6_ADDR}', count: 3, interval_s: 0.05}}\n")
    root = by_kind(run_agent(lab, checks))
    nobody = by_kind(run_agent(lab, checks, as_nobody=True))
    for seen, raw in ((root, 1), (nobody, 0)):
        [gw] = seen["gateway"]
        assert gw["status"] == "ok" and gw["target"] == f"{CARRIER_ADDR} via wan0", gw
        assert gw["metrics"]["arp_permitted_flag"] == raw and gw["metrics"]["reachable_flag"] == 1
        assert (gw["metrics"]["arp_received_count"] == 2) if raw else gw["metrics"]["arp_rtt_avg_ms"] is None
        trace = seen["traceroute"]
        assert trace[0]["status"] == "ok" and trace[0]["metrics"]["raw_socket_flag"] == 0  # auto: UDP sockets
        assert [t["target"] for t in trace[1:]] == [f"hop 1 {CARRIER_ADDR}", "hop 2 198.18.20.2", f"hop 3 {far}"]
        [v6] = seen["ipv6"]
        assert v6["status"] == "ok" and v6["metrics"]["global_address_count"] == 1, v6
        assert v6["metrics"]["loss_pct"] == 0


@pytest.mark.lab
def test_ipv6_missing_is_degraded_and_gateway_down_is_unreachable(lab: LineLab, tmp_path: Path) -> None:
    checks = ("  gateway: {arp_count: 1, ping_count: 2, interval_s: 0.05, reply_timeout_s: 0.3}\n"
              f"  ipv6: {{target: '{SERVER6_ADDR}'}}\n")
    seen = by_kind(run_agent(lab, checks))
    [v6] = seen["ipv6"]
    assert v6["status"] == "degraded" and "no usable global IPv6 address" in v6["reason"]
    lab.sh(lab.carrier, f"ip addr del {CARRIER_ADDR}/24 dev {lab.carrier_if}")  # the next hop is gone
    env = run_agent(lab, checks, only=["gateway"])
    [gw] = by_kind(env)["gateway"]
    assert gw["status"] == "failed" and gw["metrics"]["reachable_flag"] == 0
    assert [f["code"] for f in env["findings"]] == ["gateway_unreachable"]


def test_parse_recverr_on_captured_ancillary_data() -> None:
    rows = {}
    for line in (Path(__file__).parent / "data" / "traceroute" / "ip_recverr.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        name, level, kind, value = line.split()
        rows[name] = traceroute.parse_recverr([(int(level), int(kind), bytes.fromhex(value))])
    assert rows["time_exceeded_hop1"] == (11, CARRIER_ADDR)
    assert rows["port_unreachable_destination"] == (3, "198.18.21.1")
    assert traceroute.parse_recverr([(0, 11, b"\0" * 8)]) is None  # truncated: ignored, not a crash


def test_importing_the_agent_does_not_load_scapy() -> None:
    import subprocess
    import sys

    code = "import sys, agent.cli, agent.runner, agent.checks; print(any(m.startswith('scapy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
