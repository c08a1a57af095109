"""Simulated measurements, judged by the agent's own checks.

A simulated agent makes up only the figures a real check would measure (link speed, echo replies,
DNS answers, throughput); the status, reason and findings come from the same pure judge functions
the agent's checks call (agent/checks/*.py `judge...`). So a simulated DNS fault carries the finding,
sentence and details a real gateway would send, and a change to a check's judgement shows in the
demo too. Pure: no I/O, no clock.
"""

from __future__ import annotations

import random

from agent.checks import dns, link, ping, throughput
from agent.checks.base import CheckContext, LineInfo, Measurement
from agent.reasons import reason_fields
from linecheck.wire import CheckResult, Finding, Status

WAN = "wan0"
RESOLVER = "198.18.0.53"  # benchmarking range (RFC 2544): never a real address
TEST_SERVER = "198.18.0.10:8080"


def _ctx(plan_down: float | None, plan_up: float | None) -> CheckContext:
    return CheckContext(line=LineInfo(wan_interface=WAN, lan_interfaces=[], plan_down_mbps=plan_down,
                                      plan_up_mbps=plan_up, test_server=TEST_SERVER), state={}, deadline=0.0)


def _result(kind: str, m: Measurement, duration_s: float) -> tuple[CheckResult, list[Finding]]:
    # As the agent's runner turns a measurement into a check result (agent/runner.py run_one): the reason
    # in English plus its phrases, which the console and report render in the reader's language.
    return (CheckResult(kind=kind, status=m.status, **reason_fields(None if m.status is Status.OK else m.reason),
                        metrics=m.metrics, duration_s=duration_s, target=m.target), list(m.findings))


def link_check(port_mbps: int, plan_down: float | None) -> tuple[CheckResult, list[Finding]]:
    metrics: dict = {"wan_up_flag": 1, "wan_speed_mbps": port_mbps, "wan_full_duplex_flag": 1, "wan_mtu_bytes": 1500,
                     "wan_errors_in_count": 0, "wan_errors_out_count": 0, "wan_drops_in_count": 0,
                     "wan_drops_out_count": 0, "wan_carrier_changes_count": 0}
    return _result("link", link.judge_wan(link.LinkConfig(), _ctx(plan_down, None), WAN, metrics), 2.0)


def ping_check(rng: random.Random, rtt_ms: float, count: int = 10) -> tuple[CheckResult, list[Finding]]:
    rtts = [round(max(0.3, rng.gauss(rtt_ms, rtt_ms * 0.08)), 2) for _ in range(count)]
    mean = sum(rtts) / count
    metrics: dict = {"sent_count": count, "received_count": count, "loss_pct": 0.0, "rtt_min_ms": min(rtts),
                     "rtt_avg_ms": round(mean, 2), "rtt_max_ms": max(rtts),
                     "rtt_mdev_ms": round((sum((r - mean) ** 2 for r in rtts) / count) ** 0.5, 2),
                     "jitter_ms": round(sum(abs(a - b) for a, b in zip(rtts, rtts[1:], strict=False)) / (count - 1), 2)}
    return _result("ping", ping.judge(ping.PingConfig(), "gateway (198.18.0.1)", metrics), 2.2)


def dns_check(rng: random.Random, answering: bool) -> tuple[CheckResult, list[Finding]]:
    names = ("www.baidu.com", "www.qq.com")
    if answering:
        answers = [dns.Answer(n, t, None, round(rng.uniform(8, 25), 1), ("198.18.1.1",)) for n in names
                   for t in ("A", "AAAA")]
    else:  # the carrier's resolver is silent: every query times out
        answers = [dns.Answer(n, t, "timeout", None, (), "no answer within 2 s") for n in names for t in ("A", "AAAA")]
    return _result("dns", dns.judge(RESOLVER, answers, dns.DnsConfig().slow_ms), 0.1 if answering else 8.0)


def throughput_check(rng: random.Random, down_mbps: float, up_mbps: float, plan_down: float | None,
                     plan_up: float | None) -> tuple[CheckResult, list[Finding]]:
    down = round(rng.uniform(0.96, 1.0) * down_mbps, 1)
    up = round(rng.uniform(0.96, 1.0) * up_mbps, 1)
    idle = round(rng.uniform(4, 8), 1)
    metrics: dict = {"down_mbps": down, "up_mbps": up, "capacity_down_mbps": round(down * 1.01, 1),
                     "capacity_up_mbps": round(up * 1.01, 1), "cross_traffic_down_mbps": round(down * 0.01, 1),
                     "cross_traffic_up_mbps": round(up * 0.01, 1), "cross_traffic_high_flag": 0,
                     "latency_idle_ms": idle, "latency_loaded_down_ms": round(idle * 2.5, 1),
                     "latency_loaded_up_ms": round(idle * 3, 1), "streams_down_count": 8, "streams_up_count": 4,
                     "cpu_max_pct": round(rng.uniform(20, 45), 1)}
    m = throughput.judge(throughput.ThroughputConfig(), _ctx(plan_down, plan_up), metrics, TEST_SERVER, [])
    return _result("throughput", m, 24.0)
