"""pmtu: the path MTU to the test server, found by probing with Don't-Fragment echoes.

A binary search over packet sizes finds the largest ICMP echo that comes back. The socket asks
for DF while ignoring the kernel's cached path MTU (IP_PMTUDISC_PROBE), so each size is really
tried. With IP_RECVERR the ICMP "fragmentation needed" a router sends for an oversized packet is
read from the socket's error queue: a reduced path MTU that is signalled is `pmtu_reduced`
(TCP adapts; still worth fixing, e.g. clamp MSS on a PPPoE WAN); one that is not is
`pmtu_blackhole` (large packets vanish and connections hang after the handshake).
Uses the same unprivileged ICMP socket as `ping`.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass

import psutil
from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.checks.ping import (
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    checksum,
    open_icmp_socket,
    resolve_target,
    target_name,
)
from agent.findings import finding, reached_by_name
from agent.reasons import because, because_of, step
from linecheck.wire import MetricValue, Status

IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_PROBE = getattr(socket, "IP_PMTUDISC_PROBE", 3)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IP_MTU = getattr(socket, "IP_MTU", 14)
SO_EE_ORIGIN_LOCAL, SO_EE_ORIGIN_ICMP = 1, 2
ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED = 3, 4
HEADERS = 20 + 8  # IPv4 header without options + ICMP echo header
MIN_MTU = 68  # the smallest MTU IPv4 allows (RFC 791)


class PmtuConfig(CheckConfig):
    target: str = Field(default="test_server",
                        description="Address or name; 'test_server' = host of line.test_server; 'gateway'")
    max_mtu: int | None = Field(default=None, ge=MIN_MTU, le=65535,
                                description="Largest size to try; default: the MTU of the route's interface")
    probes: int = Field(default=2, ge=1, le=10, description="Echoes per size; one reply means the size passes")
    probe_timeout_s: float = Field(default=1.0, gt=0, le=10, description="Wait for a reply to one size")
    timeout_s: float = 60.0


@dataclass
class ProbeOutcome:
    passed: bool
    frag_needed_mtu: int | None = None  # from an ICMP "fragmentation needed", when one arrived


class Prober:
    """Sends DF echoes of a given IP size to one address and says whether any came back."""

    def __init__(self, address: str):
        self.address = address
        self.sock, self.method = open_icmp_socket()
        self.sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        self.sock.setblocking(False)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.sent = 0

    def close(self) -> None:
        self.sock.close()

    def try_size(self, size: int, probes: int, timeout_s: float, deadline: float) -> ProbeOutcome:
        outcome = ProbeOutcome(False)
        mine: set[int] = set()
        for _ in range(probes):
            self.seq = (self.seq + 1) & 0xFFFF
            mine.add(self.seq)
            body = b"\x5a" * (size - HEADERS)
            header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, self.ident, self.seq)
            if self.method == "raw":
                header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + body), self.ident, self.seq)
            try:
                self.sock.sendto(header + body, (self.address, 0))
                self.sent += 1
            except OSError:
                self._drain_errors(outcome)  # EMSGSIZE: larger than the interface allows
        end = min(time.monotonic() + timeout_s, deadline)
        while not outcome.passed and time.monotonic() < end:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            self._drain_errors(outcome)
            while True:
                try:
                    data, (src, _port) = self.sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # a queued ICMP error surfaces here once; read it from the queue
                    self._drain_errors(outcome)
                    continue
                if self.method == "raw":
                    data = data[(data[0] & 0x0F) * 4:]
                if len(data) < 8 or src != self.address:
                    continue
                kind, _c, _s, rid, rseq = struct.unpack("!BBHHH", data[:8])
                if kind == ICMP_ECHO_REPLY and rseq in mine and (self.method != "raw" or rid == self.ident):
                    outcome.passed = True
        return outcome

    def _drain_errors(self, outcome: ProbeOutcome) -> None:
        while True:
            try:
                _data, ancdata, _flags, _addr = self.sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            for level, kind, value in ancdata:
                if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(value) < 16:
                    continue
                _errno, origin, icmp_type, icmp_code, _pad, info, _data32 = struct.unpack("=IBBBBII", value[:16])
                if origin == SO_EE_ORIGIN_ICMP and (icmp_type, icmp_code) == (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED):
                    outcome.frag_needed_mtu = info or None
                elif origin == SO_EE_ORIGIN_LOCAL and info:
                    outcome.frag_needed_mtu = info  # the local interface refused the size


def interface_mtu(address: str, wan: str | None) -> int:
    """The MTU the gateway would send with: the WAN interface's, else the route's (IP_MTU)."""
    stats = psutil.net_if_stats().get(wan) if wan else None
    if stats is not None and stats.mtu:
        return int(stats.mtu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))


def search(prober: Prober, top: int, probes: int, timeout_s: float, deadline: float) -> tuple[int | None, bool]:
    """(largest size that passed or None, whether an ICMP fragmentation-needed was seen)."""
    signalled = False

    def passes(size: int) -> bool:
        nonlocal signalled
        outcome = prober.try_size(size, probes, timeout_s, deadline)
        signalled = signalled or (outcome.frag_needed_mtu is not None and outcome.frag_needed_mtu < size)
        return outcome.passed

    if passes(top):
        return top, False
    if not passes(MIN_MTU):
        return None, signalled
    good, bad = MIN_MTU, top
    while bad - good > 1 and time.monotonic() < deadline:
        mid = (good + bad) // 2
        if passes(mid):
            good = mid
        else:
            bad = mid
    return good, signalled


def run(cfg: PmtuConfig, ctx: CheckContext) -> Measurement:
    try:
        address = resolve_target(cfg.target, ctx)
    except (LookupError, OSError) as exc:
        return Measurement(Status.SKIPPED if cfg.target == "test_server" else Status.FAILED,
                           [because("cannot_resolve", target=cfg.target), because_of(exc)], target=cfg.target)
    m = _measure(cfg, ctx, address)
    # Say which name led the probes to this address: localisation tells a wrong DNS answer from the line.
    m.findings = reached_by_name(m.findings, target_name(cfg.target, ctx), address)
    return m


def _measure(cfg: PmtuConfig, ctx: CheckContext, address: str) -> Measurement:
    try:
        iface_mtu = interface_mtu(address, ctx.line.wan_interface)
    except OSError as exc:
        return Measurement(Status.FAILED, [because("no_route", target=address), because_of(exc)], target=address)
    top = min(cfg.max_mtu or iface_mtu, iface_mtu)
    ctx.progress(step("pmtu", target=address, top_bytes=top))
    try:
        prober = Prober(address)
    except PermissionError as exc:
        return Measurement(Status.SKIPPED, because_of(exc), target=address)
    try:
        path_mtu, signalled = search(prober, top, cfg.probes, cfg.probe_timeout_s, ctx.deadline)
    finally:
        prober.close()
    metrics: dict[str, MetricValue] = {
        "path_mtu_bytes": path_mtu,
        "interface_mtu_bytes": iface_mtu,
        "frag_needed_flag": None if path_mtu is None or path_mtu >= iface_mtu else int(signalled),
        "probes_count": prober.sent,
    }
    if path_mtu is None:
        return Measurement(Status.FAILED, because("pmtu_no_reply", target=address, size_bytes=MIN_MTU), metrics,
                           address,
                           [finding("target_unreachable", "critical", "pmtu", f"{address} does not answer ping.",
                                    {"target": address})])
    if path_mtu >= iface_mtu:
        return Measurement(Status.OK, None, metrics, address)
    detail: dict[str, MetricValue | str] = {"target": address, "path_mtu_bytes": path_mtu,
                                            "interface_mtu_bytes": iface_mtu}
    if signalled:
        return Measurement(
            Status.DEGRADED, because("pmtu_reduced", target=address, path_mtu_bytes=path_mtu,
                                     interface_mtu_bytes=iface_mtu), metrics, address,
            [finding("pmtu_reduced", "warning", "pmtu",
                     f"Packets larger than {path_mtu} bytes do not fit the path to {address}; the gateway's WAN "
                     f"MTU is {iface_mtu}. Set the WAN MTU or clamp TCP MSS to match.", detail)])
    return Measurement(
        Status.FAILED, because("pmtu_blackhole", target=address, path_mtu_bytes=path_mtu,
                               interface_mtu_bytes=iface_mtu), metrics, address,
        [finding("pmtu_blackhole", "critical", "pmtu",
                 f"Packets larger than {path_mtu} bytes silently disappear on the way to {address}: pages and "
                 "downloads may hang. The WAN MTU must be lowered to match the line.", detail)])


SPEC = CheckSpec(kind="pmtu", config=PmtuConfig, run=run)
