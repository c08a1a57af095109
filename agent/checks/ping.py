"""ping: ICMP echo loss, round-trip time and jitter to each configured target.

Uses the unprivileged ICMP datagram socket (needs the agent's group in
net.ipv4.ping_group_range) and falls back to a raw socket only when that is refused and raw
sockets are permitted (CAP_NET_RAW). Count-based: it sends `count` echoes `interval_s` apart and
waits for replies with select(), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import statistics
import struct
import time
from dataclasses import dataclass

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.findings import ProbeThresholds, judge_probes, reached_by_name
from agent.netinfo import default_route
from agent.reasons import NotFound, NotPermitted, because, because_of, step
from linecheck.wire import Status

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129


class PingConfig(CheckConfig):
    targets: list[str] = Field(
        default_factory=lambda: ["gateway"],
        min_length=1,
        description="IPv4 addresses or names; 'gateway' = default route next hop, 'test_server' = line.test_server",
    )
    count: int = Field(default=10, ge=1, le=1000)
    interval_s: float = Field(default=0.2, ge=0.01, le=10)
    reply_timeout_s: float = Field(default=2.0, gt=0, le=30, description="Wait after the last echo")
    payload_bytes: int = Field(default=56, ge=16, le=1472)
    loss_degraded_pct: float = Field(default=1.0, ge=0, le=100)
    loss_failed_pct: float = Field(default=20.0, ge=0, le=100)
    rtt_degraded_ms: float = Field(default=100.0, gt=0)
    jitter_degraded_ms: float = Field(default=30.0, gt=0, description="Mean RTT change between echoes")
    timeout_s: float = 60.0


@dataclass
class EchoStats:
    sent: int
    rtts_ms: list[float]  # in send order of the replies received
    method: str


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def open_icmp_socket(family: int = socket.AF_INET) -> tuple[socket.socket, str]:
    """An ICMP (or ICMPv6) socket, unprivileged if the kernel allows it. Raises PermissionError if
    neither works."""
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), "dgram"
    except PermissionError:
        pass
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), "raw"
    except PermissionError:
        raise NotPermitted("icmp_not_permitted") from None


def echo(address: str, count: int, interval_s: float, reply_timeout_s: float, payload_bytes: int,
         deadline: float) -> EchoStats:
    """Echo `address` (IPv4, or IPv6 when it contains ':') `count` times."""
    v6 = ":" in address
    sock, method = open_icmp_socket(socket.AF_INET6 if v6 else socket.AF_INET)
    request, reply_type = (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY) if v6 else (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    ident = os.getpid() & 0xFFFF
    sent_at: dict[int, float] = {}
    rtts: dict[int, float] = {}
    try:
        sock.setblocking(False)
        next_send = time.monotonic()
        seq = 0
        end = None
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                seq += 1
                body = struct.pack("!d", time.time()).ljust(payload_bytes, b"\x5a")
                header = struct.pack("!BBHHH", request, 0, 0, ident, seq)
                packet = header + body
                # The kernel fills id and checksum for datagram sockets, and the ICMPv6 checksum always.
                if method == "raw" and not v6:
                    packet = struct.pack("!BBHHH", request, 0, checksum(packet), ident, seq) + body
                sent_at[seq] = time.monotonic()  # before sendto: the reply can beat its return
                with contextlib.suppress(OSError):  # unreachable network etc.: counts as a lost echo
                    sock.sendto(packet, (address, 0))
                next_send += interval_s
                if seq == count:
                    end = time.monotonic() + reply_timeout_s
            wake = min(x for x in (next_send if seq < count else None, end, deadline) if x is not None)
            if len(rtts) == count or time.monotonic() >= deadline or (end and time.monotonic() >= end):
                break
            ready, _, _ = select.select([sock], [], [], max(0.0, wake - time.monotonic()))
            if not ready:
                continue
            while True:
                try:
                    data, peer = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                got = time.monotonic()
                if method == "raw" and not v6:  # raw IPv4 sockets deliver the IP header too
                    data = data[(data[0] & 0x0F) * 4:]
                if len(data) < 8 or not _same_address(peer[0], address):
                    continue
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
                if kind != reply_type or (method == "raw" and rid != ident):
                    continue
                if rseq in sent_at and rseq not in rtts:  # duplicates are ignored
                    rtts[rseq] = (got - sent_at[rseq]) * 1000.0
    finally:
        sock.close()
    return EchoStats(sent=len(sent_at), rtts_ms=[rtts[s] for s in sorted(rtts)], method=method)


def _same_address(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return False


def summarise(stats: EchoStats) -> dict[str, float | int | None]:
    """Metrics from echo statistics. With no replies every RTT figure is null, not zero."""
    rtts = stats.rtts_ms
    received = len(rtts)
    loss = 100.0 * (stats.sent - received) / stats.sent if stats.sent else None
    mdev = statistics.pstdev(rtts) if received >= 2 else None
    jitter = statistics.fmean(abs(b - a) for a, b in zip(rtts, rtts[1:], strict=False)) if received >= 2 else None
    return {
        "sent_count": stats.sent,
        "received_count": received,
        "loss_pct": round(loss, 3) if loss is not None else None,
        "rtt_min_ms": round(min(rtts), 3) if rtts else None,
        "rtt_avg_ms": round(statistics.fmean(rtts), 3) if rtts else None,
        "rtt_max_ms": round(max(rtts), 3) if rtts else None,
        "rtt_mdev_ms": round(mdev, 3) if mdev is not None else None,
        "jitter_ms": round(jitter, 3) if jitter is not None else None,
    }


def resolve_target(target: str, ctx: CheckContext) -> str:
    if target == "gateway":
        route = default_route()
        if route is None or route.gateway is None:
            raise NotFound("no_gateway_to_ping")
        return route.gateway
    if target == "test_server":
        if not ctx.line.test_server:
            raise NotFound("no_test_server")
        target = ctx.line.test_server.split(":")[0]
    with contextlib.suppress(ValueError):  # an address literal, IPv6 included, needs no lookup
        return str(ipaddress.ip_address(target))
    return socket.getaddrinfo(target, None, socket.AF_INET)[0][4][0]


def target_name(target: str, ctx: CheckContext) -> str | None:
    """The DNS name `target` is looked up by: None for the gateway and for address literals."""
    if target == "gateway":
        return None
    if target == "test_server":
        target = (ctx.line.test_server or "").split(":")[0]
    try:
        ipaddress.ip_address(target)
    except ValueError:
        return target or None
    return None


def judge(cfg: PingConfig, target: str, metrics: dict[str, float | int | None]) -> Measurement:
    limits = ProbeThresholds(cfg.loss_degraded_pct, cfg.loss_failed_pct, cfg.rtt_degraded_ms, cfg.jitter_degraded_ms)
    status, reason, found = judge_probes("ping", target, metrics, limits, probes="icmp")
    return Measurement(status, reason, metrics, target, found)


def run(cfg: PingConfig, ctx: CheckContext) -> list[Measurement]:
    out: list[Measurement] = []
    for target in cfg.targets:
        try:
            address = resolve_target(target, ctx)
        except (LookupError, OSError) as exc:
            out.append(Measurement(Status.FAILED, [because("cannot_resolve", target=target), because_of(exc)],
                                   target=target))
            continue
        label = address if address == target else f"{target} ({address})"
        ctx.progress(step("ping", target=label))
        try:
            stats = echo(address, cfg.count, cfg.interval_s, cfg.reply_timeout_s, cfg.payload_bytes, ctx.deadline)
        except PermissionError as exc:
            out.append(Measurement(Status.SKIPPED, because_of(exc), target=label))
            continue
        m = judge(cfg, label, summarise(stats))
        m.findings = reached_by_name(m.findings, target_name(target, ctx), address)
        out.append(m)
    return out


SPEC = CheckSpec(kind="ping", config=PingConfig, run=run)
