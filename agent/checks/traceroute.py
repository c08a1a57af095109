"""traceroute: the hops to the test server with their round-trip times.

By default (`method: auto`) it sends every TTL's UDP probe at once, each from its own socket with
IP_TTL set and IP_RECVERR, and reads who returned "time exceeded" from each socket's error queue:
no privilege, no scapy, all hops in one probe timeout. `method: unprivileged` does the same one TTL
at a time, as tracepath does (gentler on rate-limited routers, slower). `method: scapy` sends through
scapy's raw socket (CAP_NET_RAW; imported only then: it costs ~30 MB and most of a second); it gave
the same hops on every path measured here, so it is kept only for those who ask for it.

The result is one record for the destination (hops_count, reached_flag, rtt_ms) followed by one
per hop (target "hop N ADDRESS", or "*" when that hop stayed silent) with its RTT.
A path that does not reach the destination is `degraded`: many networks filter probes, so it is
evidence for a technician, not a finding by itself.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.checks.ping import resolve_target
from agent.reasons import because, because_of, joined, step
from linecheck.wire import Status

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
SO_EE_ORIGIN_ICMP = 2
ICMP_TIME_EXCEEDED, ICMP_DEST_UNREACH = 11, 3
BASE_PORT = 33434  # the traditional traceroute port range
MAX_SILENT = 4  # unprivileged method: give up after this many silent hops in a row


class TracerouteConfig(CheckConfig):
    target: str = Field(default="test_server", description="Address or name; 'test_server' = host of line.test_server")
    max_hops: int = Field(default=20, ge=1, le=64)
    probe_timeout_s: float = Field(default=1.0, gt=0, le=10, description="Wait for the answers to a probe")
    method: str = Field(default="auto", pattern="^(auto|scapy|unprivileged)$",
                        description="auto = all TTLs at once from unprivileged UDP sockets; unprivileged = one "
                                    "TTL at a time; scapy = scapy's raw socket (CAP_NET_RAW)")
    timeout_s: float = 60.0


@dataclass(frozen=True)
class Hop:
    ttl: int
    address: str | None  # None: no answer at this TTL
    rtt_ms: float | None
    final: bool  # the destination itself answered (port unreachable / echo reply)
    halt: bool = False  # a router said the destination is unreachable: later TTLs cannot get further


def trace_scapy(address: str, max_hops: int, timeout_s: float) -> list[Hop]:
    """All TTLs at once; raises PermissionError without CAP_NET_RAW."""
    from scapy.layers.inet import ICMP, IP, UDP  # lazy: see the module docstring
    from scapy.supersocket import L3RawSocket

    probes = [IP(dst=address, ttl=ttl) / UDP(sport=BASE_PORT + 100 + ttl, dport=BASE_PORT + ttl)
              for ttl in range(1, max_hops + 1)]
    # A kernel raw socket, not scapy's default layer-2 sender: the kernel routes and resolves the
    # next hop itself, where scapy would block on its own ARP lookup for every probe (seconds each
    # when the line is down).
    sock = L3RawSocket()
    try:
        answered, _unanswered = sock.sr(probes, timeout=timeout_s, verbose=False)
    finally:
        sock.close()
    by_ttl: dict[int, Hop] = {}
    for sent, reply in answered:
        final = reply.src == address
        halt = not final and reply.haslayer(ICMP) and reply[ICMP].type == ICMP_DEST_UNREACH
        rtt = max(0.0, (float(reply.time) - float(sent.sent_time)) * 1000.0)
        by_ttl[sent.ttl] = Hop(sent.ttl, reply.src, round(rtt, 3), final, bool(halt))
    return _until_destination([by_ttl.get(t, Hop(t, None, None, False)) for t in range(1, max_hops + 1)])


def trace_parallel(address: str, max_hops: int, timeout_s: float, deadline: float) -> list[Hop]:
    """Every TTL's probe at once, one UDP socket each (IP_RECVERR tells which router answered which)."""
    socks: dict[socket.socket, tuple[int, float]] = {}
    by_ttl: dict[int, Hop] = {}
    try:
        for ttl in range(1, max_hops + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            sock.setblocking(False)
            try:
                sock.sendto(b"linecheck-traceroute", (address, BASE_PORT + ttl))
            except OSError:
                sock.close()
                continue
            socks[sock] = (ttl, time.monotonic())
        end = min(deadline, time.monotonic() + timeout_s)
        waiting = set(socks)
        while waiting and (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select(list(waiting), [], [], left)
            got = time.monotonic()
            for sock in ready:
                try:
                    _data, ancdata, _flags, _addr = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
                except (BlockingIOError, InterruptedError):
                    continue
                parsed = parse_recverr(ancdata)
                if parsed is None:
                    continue
                waiting.discard(sock)
                ttl, sent = socks[sock]
                icmp_type, offender = parsed
                final = offender == address
                by_ttl[ttl] = Hop(ttl, offender, round((got - sent) * 1000.0, 3), final,
                                  not final and icmp_type == ICMP_DEST_UNREACH)
    finally:
        for sock in socks:
            sock.close()
    return _until_destination([by_ttl.get(t, Hop(t, None, None, False)) for t in range(1, max_hops + 1)])


def trace_unprivileged(address: str, max_hops: int, timeout_s: float, deadline: float) -> list[Hop]:
    hops: list[Hop] = []
    for ttl in range(1, max_hops + 1):
        if time.monotonic() >= deadline:
            break
        hop = _probe_ttl(address, ttl, min(timeout_s, max(0.0, deadline - time.monotonic())))
        hops.append(hop)
        if hop.final or hop.halt:
            break
        if len(hops) >= MAX_SILENT and all(h.address is None for h in hops[-MAX_SILENT:]):
            break  # one TTL at a time costs a timeout per silent hop: stop where the path went dark
    return _until_destination(hops)


def _probe_ttl(address: str, ttl: int, timeout_s: float) -> Hop:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.setblocking(False)
        sent = time.monotonic()
        try:
            sock.sendto(b"linecheck-traceroute", (address, BASE_PORT + ttl))
        except OSError:
            return Hop(ttl, None, None, False)
        end = sent + timeout_s
        while time.monotonic() < end:
            ready, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            try:
                _data, ancdata, _flags, _addr = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                continue
            got = time.monotonic()
            parsed = parse_recverr(ancdata)
            if parsed is None:
                continue
            icmp_type, offender = parsed
            final = offender == address
            halt = not final and icmp_type == ICMP_DEST_UNREACH
            return Hop(ttl, offender, round((got - sent) * 1000.0, 3), final, halt)
    return Hop(ttl, None, None, False)


def parse_recverr(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, str | None] | None:
    """(ICMP type, offender address) from IP_RECVERR ancillary data: a struct sock_extended_err
    (errno u32, origin u8, type u8, code u8, pad u8, info u32, data u32) then the offender's sockaddr_in."""
    for level, kind, value in ancdata:
        if level != socket.IPPROTO_IP or kind != IP_RECVERR or len(value) < 16:
            continue
        _errno, origin, icmp_type, _code, _pad, _info, _data = struct.unpack("=IBBBBII", value[:16])
        if origin != SO_EE_ORIGIN_ICMP:
            continue
        offender = None
        if len(value) >= 24 and struct.unpack("=H", value[16:18])[0] == socket.AF_INET:
            offender = socket.inet_ntoa(value[20:24])
        return icmp_type, offender
    return None


def _until_destination(hops: list[Hop]) -> list[Hop]:
    for i, hop in enumerate(hops):
        if hop.final or hop.halt:
            return hops[: i + 1]
    # Not reached: trailing silent hops say nothing; keep one so the gap shows.
    while len(hops) > 1 and hops[-1].address is None and hops[-2].address is None:
        hops.pop()
    return hops


def run(cfg: TracerouteConfig, ctx: CheckContext) -> list[Measurement]:
    try:
        address = resolve_target(cfg.target, ctx)
    except (LookupError, OSError) as exc:
        return [Measurement(Status.SKIPPED if cfg.target == "test_server" else Status.FAILED,
                            [because("cannot_resolve", target=cfg.target), because_of(exc)], target=cfg.target)]
    ctx.progress(step("trace", target=address))
    if cfg.method == "scapy":
        try:
            hops = trace_scapy(address, cfg.max_hops, cfg.probe_timeout_s)
        except PermissionError:
            return [Measurement(Status.SKIPPED, because("trace_needs_raw"), target=address)]
        except ModuleNotFoundError:  # an extra since the UDP methods do without it (pyproject.toml)
            return [Measurement(Status.SKIPPED, because("trace_needs_scapy"), target=address)]
    elif cfg.method == "auto":
        hops = trace_parallel(address, cfg.max_hops, cfg.probe_timeout_s, ctx.deadline)
    else:
        hops = trace_unprivileged(address, cfg.max_hops, cfg.probe_timeout_s, ctx.deadline)
    last = hops[-1] if hops else None
    reached = bool(last and last.final)
    summary = {"hops_count": len(hops) if reached else None, "reached_flag": int(reached),
               "raw_socket_flag": 1 if cfg.method == "scapy" else 0,
               "rtt_ms": last.rtt_ms if reached and last else None,
               "silent_hops_count": sum(1 for h in hops if h.address is None)}
    per_hop = [Measurement(Status.OK, None, {"hop_num": h.ttl, "hop_rtt_ms": h.rtt_ms},
                           f"hop {h.ttl} {h.address or '*'}") for h in hops]
    if reached:
        return [Measurement(Status.OK, None, summary, address), *per_hop]
    seen = [h for h in hops if h.address]
    where = because("trace_last_hop", hop=seen[-1].ttl, address=seen[-1].address or "") if seen \
        else because("trace_no_hop")
    return [Measurement(Status.DEGRADED, joined(because("trace_not_reached", target=address, max_hops=cfg.max_hops),
                                                where), summary, address), *per_hop]


SPEC = CheckSpec(kind="traceroute", config=TracerouteConfig, run=run)
