"""dns: resolv.conf parsing on captured files, and timeout / SERVFAIL / NXDOMAIN told apart in the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.checks import dns as dns_check
from agent.checks.dns import DnsConfig, parse_resolv_conf, split_server
from agent.reasons import english
from linecheck.catalogue import unlisted
from linecheck.wire import Status
from tests.checkctx import make_ctx
from tests.lab import LineLab
from tests.labdns import LabDNS

DATA = Path(__file__).parent / "data" / "dns"


def test_parse_resolv_conf_captures() -> None:
    assert parse_resolv_conf((DATA / "resolv.conf.container").read_text()) == ["10.255.255.53"]
    assert parse_resolv_conf((DATA / "resolv.conf.systemd-resolved").read_text()) == ["127.0.0.53"]
    assert parse_resolv_conf("# nothing\nsearch lan\n") == []


def test_split_server() -> None:
    assert split_server("198.18.1.53") == ("198.18.1.53", 53)
    assert split_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert split_server("[2001:2::1]:5300") == ("2001:2::1", 5300)
    assert split_server("2001:2::1") == ("2001:2::1", 53)


def test_only_a_and_aaaa_are_accepted() -> None:
    with pytest.raises(ValueError, match="only A and AAAA"):
        DnsConfig(types=["MX"])


def test_loopback_resolver_answers_and_every_metric_is_catalogued() -> None:
    with LabDNS("127.0.0.1", 0, {"ok.lab.test": ["198.18.1.1", "2001:2::1"]}) as server:
        cfg = DnsConfig(resolvers=[f"127.0.0.1:{server.port}"], names=["ok.lab.test"])
        [m] = dns_check.run(cfg, make_ctx())
    assert m.status is Status.OK, m.reason
    assert m.metrics["answered_count"] == 2 and m.metrics["addresses_count"] == 2
    assert m.metrics["a_time_ms"] is not None and m.metrics["aaaa_time_ms"] is not None
    assert unlisted("dns", set(m.metrics)) == []


@pytest.mark.lab
def test_timeout_servfail_and_nxdomain_are_three_distinct_reasons(lab: LineLab) -> None:
    addrs = {mode: lab.add_address(lab.carrier, f"198.18.1.{53 + i}")
             for i, mode in enumerate(("nxdomain", "servfail", "silent"))}
    good = lab.add_address(lab.carrier, "198.18.1.60")
    with lab.inside(lab.carrier):
        servers = [LabDNS(addr, 53, mode=mode).start() for mode, addr in addrs.items()]
        servers.append(LabDNS(good, 53, {"www.lab.test": ["198.18.1.1"]}).start())
    try:
        cfg = DnsConfig(resolvers=[*addrs.values(), good], names=["www.lab.test"], types=["A"],
                        query_timeout_s=0.5)
        with lab.inside(lab.gw):
            results = {m.target: m for m in dns_check.run(cfg, make_ctx())}
    finally:
        for s in servers:
            s.stop()
    assert results[good].status is Status.OK
    errors = {}
    for mode, addr in addrs.items():
        m = results[addr]
        assert m.status is Status.FAILED and m.metrics["failed_count"] == 1, m
        [f] = m.findings
        assert (f.code, f.where, f.severity) == ("dns_failure", "dns", "warning")  # one resolver still works
        errors[mode] = (f.detail["error"], english(m.reason))
    assert errors["silent"][0] == "timeout" and "no answer within 0.5 s" in errors["silent"][1]
    assert errors["servfail"][0] == "servfail" and "SERVFAIL" in errors["servfail"][1]
    assert errors["nxdomain"][0] == "nxdomain" and "does not exist" in errors["nxdomain"][1]
    assert len({reason for _e, reason in errors.values()}) == 3
    assert results[addrs["silent"]].metrics["a_time_ms"] is None  # not measured is null, not 0


@pytest.mark.lab
def test_every_resolver_failing_is_critical(lab: LineLab) -> None:
    with lab.inside(lab.carrier):
        server = LabDNS("198.18.1.1", 53, mode="servfail").start()
    try:
        with lab.inside(lab.gw):
            [m] = dns_check.run(DnsConfig(resolvers=["198.18.1.1"], names=["x.lab.test"]), make_ctx())
    finally:
        server.stop()
    assert m.findings[0].severity == "critical" and m.findings[0].detail["errors"] == "servfail"


def test_an_answer_outside_the_known_addresses_is_a_wrong_answer() -> None:
    known = ["198.18.1.1", "2001:2:0:1::1"]
    right = dns_check.Answer("ts.lab.test", "A", None, 3.0, ("198.18.1.1",))
    stale = dns_check.Answer("ts.lab.test", "A", None, 3.0, ("198.18.9.9", "198.18.1.1"))
    v6 = dns_check.Answer("ts.lab.test", "AAAA", None, 3.0, ("2001:2:0:1::1",))
    assert dns_check.checked(right, known) == right and dns_check.checked(v6, known) == v6
    assert dns_check.checked(stale, None) == stale  # nothing known: nothing to compare
    got = dns_check.checked(stale, known)
    assert (got.error, got.addresses) == ("wrong_answer", ("198.18.9.9",))
    m = dns_check.judge("198.18.1.53", [right, got], 500)
    [f] = m.findings
    assert m.status is Status.FAILED and f.detail["error"] == "wrong_answer" and f.detail["addresses"] == "198.18.9.9"
    # a timeout and a wrong answer through one resolver: two findings, the wrong one naming where it led
    late = dns_check.Answer("www.lab.test", "A", "timeout", None, text="no answer within 1 s")
    assert [x.detail["error"] for x in dns_check.judge("198.18.1.53", [late, got], 500).findings] == [
        "timeout", "wrong_answer"]


def test_expect_refuses_what_is_not_an_address() -> None:
    with pytest.raises(ValueError, match=r"expect.ts.lab.test: 'ts.lab.test' is not an IP address"):
        DnsConfig(expect={"ts.lab.test": ["ts.lab.test"]})
    with pytest.raises(ValueError, match="at least one address"):
        DnsConfig(expect={"ts.lab.test": []})
