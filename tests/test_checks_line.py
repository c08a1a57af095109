"""Every line-health check at once through `linecheck-agent check`, in one emulated line with its
carrier services (STAMP reflector, DNS, HTTP, HTTPS, an IPv6 server, two routers beyond the
carrier): healthy → all ok; as `nobody` → still ok or clearly skipped; DNS hijacked → suspended;
carrier link down → line_down. Every metric emitted must be in the catalogue.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from linecheck.catalogue import unlisted
from tests.checkctx import by_kind, run_agent
from tests.lab import CARRIER_ADDR, SERVER6_ADDR, SERVER_ADDR, LineLab
from tests.labdns import LabDNS
from tests.labhttp import LabHTTP, self_signed
from testserver.reflector import Reflector

pytestmark = pytest.mark.lab

DNS_ADDR = "198.18.1.53"
PORTAL_ADDR = "198.18.1.80"
LINE_CHECKS = {"link", "ping", "udp_latency", "dns", "gateway", "pmtu", "traceroute", "ipv6", "http",
               "service_state"}


@dataclass
class Line:
    lab: LineLab
    dns: LabDNS
    checks: str
    line: str


@pytest.fixture(scope="module")
def line() -> Iterator[Line]:
    import os

    if os.geteuid() != 0:
        pytest.skip("the line lab needs root to create network namespaces")
    certs = Path(tempfile.mkdtemp(prefix="linecheck-certs-"))
    certs.chmod(0o755)  # the agent also runs as nobody here
    with LineLab() as lab:
        far = lab.add_router_chain(2)
        lab.enable_ipv6()
        lab.add_address(lab.carrier, DNS_ADDR)
        lab.sh(lab.gw, "ip link add lan0 type veth peer name lan0p; ip link set lan0 up; ip link set lan0p up")
        lab.set_resolv_conf(lab.gw, f"nameserver {DNS_ADDR}\n")
        cert, key = self_signed(certs, SERVER_ADDR)
        cert.chmod(0o644)
        with lab.inside(lab.carrier):
            reflector = Reflector(SERVER_ADDR, 0).start()
            dns = LabDNS(DNS_ADDR, 53, {"www.lab.test": [SERVER_ADDR]}, portal=PORTAL_ADDR).start()
            web = LabHTTP(SERVER_ADDR, 80).start()
            tls = LabHTTP(SERVER_ADDR, 443, cert=(cert, key)).start()
        checks = (
            "  link: {window_s: 0.2}\n"
            "  ping: {targets: [gateway, test_server], count: 5, interval_s: 0.02, reply_timeout_s: 0.5}\n"
            f"  udp_latency: {{port: {reflector.port}, count: 50, interval_s: 0.005, reply_timeout_s: 0.5}}\n"
            "  dns: {resolvers: [system], names: [www.lab.test], query_timeout_s: 0.5}\n"
            "  gateway: {arp_count: 1, ping_count: 3, interval_s: 0.02, reply_timeout_s: 0.3}\n"
            "  pmtu: {probe_timeout_s: 0.2}\n"
            f"  traceroute: {{target: {far}, probe_timeout_s: 0.3, max_hops: 6}}\n"
            f"  ipv6: {{target: '{SERVER6_ADDR}', count: 3, interval_s: 0.02, reply_timeout_s: 0.5}}\n"
            f"  http: {{urls: ['http://www.lab.test/', 'https://{SERVER_ADDR}/'], ca_file: {cert},"
            " request_timeout_s: 1}\n"
            "  service_state: {probe_url: 'http://www.lab.test/generate_204', dns_name: www.lab.test,"
            f" dns_expect: ['{SERVER_ADDR}'], request_timeout_s: 1}}\n"
        )
        line_yaml = f"{{test_server: '{SERVER_ADDR}:80', lan_interfaces: [lan0], plan_down_mbps: 500}}"
        try:
            yield Line(lab, dns, checks, line_yaml)
        finally:
            for server in (reflector, dns, web, tls):
                server.stop()
    shutil.rmtree(certs, ignore_errors=True)


def _statuses(env: dict) -> dict[str, list[str]]:
    return {kind: [r["status"] for r in results] for kind, results in by_kind(env).items()}


def _assert_catalogued(env: dict) -> None:
    for result in env["checks"]:
        assert unlisted(result["kind"], set(result["metrics"])) == [], result


def _reasons(env: dict) -> str:
    return "\n".join(f"{c['kind']} {c['target']}: {c['status']} {c['reason']}" for c in env["checks"]
                     if c["status"] != "ok")


def test_healthy_line_all_checks_ok_and_every_metric_catalogued(line: Line) -> None:
    env = run_agent(line.lab, line.checks, line_yaml=line.line)
    statuses = _statuses(env)
    assert set(statuses) == LINE_CHECKS
    assert all(s == "ok" for ss in statuses.values() for s in ss), _reasons(env)
    assert env["verdict"] == "healthy" and env["findings"] == []
    _assert_catalogued(env)
    kinds = by_kind(env)
    assert [r["target"] for r in kinds["link"]] == ["wan0", "lan0"]
    assert kinds["pmtu"][0]["metrics"]["path_mtu_bytes"] == 1500
    assert kinds["gateway"][0]["metrics"]["arp_permitted_flag"] == 1
    assert kinds["traceroute"][0]["metrics"]["hops_count"] == 3
    assert [r["metrics"]["tls_handshake_ms"] is not None for r in kinds["http"]] == [False, True]
    assert kinds["service_state"][0]["metrics"]["suspended_flag"] == 0


def test_as_nobody_without_capabilities_everything_still_runs(line: Line) -> None:
    env = run_agent(line.lab, line.checks, line_yaml=line.line, as_nobody=True)
    assert all(s == "ok" for ss in _statuses(env).values() for s in ss), _reasons(env)
    kinds = by_kind(env)
    assert kinds["gateway"][0]["metrics"]["arp_permitted_flag"] == 0  # fell back to ping, and says so
    assert kinds["traceroute"][0]["metrics"]["raw_socket_flag"] == 0  # the unprivileged method
    _assert_catalogued(env)


def test_as_nobody_without_icmp_permission_the_icmp_checks_skip_with_the_reason(line: Line) -> None:
    line.lab.sh(line.lab.gw, "sysctl -qw net.ipv4.ping_group_range='1 0'")
    try:
        env = run_agent(line.lab, line.checks, line_yaml=line.line, as_nobody=True)
    finally:
        line.lab.sh(line.lab.gw, "sysctl -qw net.ipv4.ping_group_range='0 2147483647'")
    statuses = _statuses(env)
    for kind in ("ping", "gateway", "pmtu", "ipv6"):
        assert set(statuses[kind]) == {"skipped"}, (kind, _reasons(env))
        for result in by_kind(env)[kind]:
            assert "ICMP not permitted" in result["reason"] and "ping_group_range" in result["reason"]
    for kind in ("link", "udp_latency", "dns", "traceroute", "http", "service_state"):
        assert set(statuses[kind]) == {"ok"}, (kind, _reasons(env))
    assert env["findings"] == []


def test_dns_hijacked_to_a_portal_is_service_suspended(line: Line) -> None:
    line.dns.mode = "hijack"
    try:
        env = run_agent(line.lab, line.checks, line_yaml=line.line, only=["service_state"])
    finally:
        line.dns.mode = "nxdomain"
    [state] = by_kind(env)["service_state"]
    assert state["status"] == "failed" and state["metrics"]["dns_hijack_flag"] == 1
    [f] = env["findings"]
    assert (f["code"], f["where"], f["detail"]["mode"], f["detail"]["portal"]) == \
        ("service_suspended", "service", "dns_hijack", PORTAL_ADDR)


def test_carrier_link_down_is_line_down_and_nothing_crashes(line: Line) -> None:
    line.lab.link(up=False)
    try:
        env = run_agent(line.lab, line.checks, line_yaml=line.line)
    finally:
        line.lab.link(up=True)
    assert env["verdict"] == "problems"
    codes = [f["code"] for f in env["findings"]]
    assert codes[0] == "line_down", codes  # localisation puts the cause first and folds the symptoms in
    statuses = _statuses(env)
    assert statuses["link"] == ["failed", "ok"]  # the WAN port lost its carrier; the LAN port did not
    assert "error" not in {s for ss in statuses.values() for s in ss}, _reasons(env)
    for kind in ("ping", "udp_latency", "dns", "gateway", "http"):
        assert "failed" in statuses[kind], (kind, _reasons(env))
    _assert_catalogued(env)
    assert CARRIER_ADDR in by_kind(env)["gateway"][0]["target"]
