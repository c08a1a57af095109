"""udp_latency: STAMP (RFC 8762) probes against the carrier's reflector: loss, RTT, jitter,
reordering and duplicates, with a sequence number per packet.

Unlike ICMP, which routers may rate-limit or deprioritise, STAMP packets are ordinary UDP and are
treated like customer traffic. The round trip excludes the reflector's turnaround, read from its
receive and transmit timestamps. Needs no privilege.
"""

from __future__ import annotations

import errno
import select
import socket
import statistics
import time
from dataclasses import dataclass, field

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.checks.ping import resolve_target, target_name
from agent.findings import ProbeThresholds, judge_probes, reached_by_name
from agent.reasons import because, because_of, joined, step
from linecheck import stamp
from linecheck.wire import MetricValue, Status


class UdpLatencyConfig(CheckConfig):
    server: str = Field(default="test_server",
                        description="Reflector address or name; 'test_server' = the host of line.test_server")
    port: int = Field(default=stamp.DEFAULT_PORT, ge=1, le=65535, description="Reflector UDP port")
    count: int = Field(default=100, ge=1, le=100_000)
    interval_s: float = Field(default=0.02, ge=0.0005, le=10)
    reply_timeout_s: float = Field(default=1.0, gt=0, le=30, description="Wait after the last probe")
    packet_bytes: int = Field(default=stamp.BASE_LEN, ge=stamp.BASE_LEN, le=1472,
                              description="UDP payload size (STAMP's 44 bytes, padded)")
    loss_degraded_pct: float = Field(default=1.0, ge=0, le=100)
    loss_failed_pct: float = Field(default=20.0, ge=0, le=100)
    rtt_degraded_ms: float = Field(default=100.0, gt=0)
    jitter_degraded_ms: float = Field(default=30.0, gt=0)
    timeout_s: float = 60.0


@dataclass
class Session:
    sent_at: dict[int, float] = field(default_factory=dict)  # sender seq -> monotonic send time
    rtts_ms: dict[int, float] = field(default_factory=dict)  # first reply per seq
    duplicates: int = 0
    reordered: int = 0
    implausible: int = 0  # replies whose reflector timestamps claim a turnaround longer than the round trip
    refused: bool = False  # ICMP port unreachable: nothing listens on the reflector port


def probe(address: str, port: int, count: int, interval_s: float, reply_timeout_s: float, packet_bytes: int,
          deadline: float) -> Session:
    """Send `count` sequenced STAMP packets `interval_s` apart and collect the reflections."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    session = Session()
    highest = -1
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((address, port))  # connected: ICMP errors surface as ECONNREFUSED
        sock.setblocking(False)
        next_send = time.monotonic()
        seq = 0
        end: float | None = None
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                # Stamped before send(): the reply can be back before send() returns to this thread.
                session.sent_at[seq] = time.monotonic()
                try:
                    sock.send(stamp.pack_sender(seq, stamp.ntp_now(), packet_bytes))
                except ConnectionRefusedError:  # an earlier probe's port unreachable
                    session.refused = True
                except OSError:
                    pass  # e.g. network unreachable: the probe is lost like any other
                seq += 1
                next_send += interval_s
                if seq == count:
                    end = time.monotonic() + reply_timeout_s
            now = time.monotonic()
            if len(session.rtts_ms) == count or now >= deadline or (end is not None and now >= end):
                break
            wake = min(x for x in (next_send if seq < count else None, end, deadline) if x is not None)
            ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
            if not ready:
                continue
            while time.monotonic() < deadline:  # a reflector flooding us must not hold the check
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.ECONNREFUSED:
                        session.refused = True
                    break
                got = time.monotonic()
                try:
                    reply = stamp.unpack_reflected(data)
                except ValueError:
                    continue
                sent = session.sent_at.get(reply.sender_seq)
                if sent is None:
                    continue  # not ours (or mangled)
                if reply.sender_seq in session.rtts_ms:
                    session.duplicates += 1
                    continue
                if reply.sender_seq < highest:
                    session.reordered += 1
                highest = max(highest, reply.sender_seq)
                # The reflector's turnaround comes from its own clock; it cannot be negative nor longer
                # than the whole round trip. A reflector claiming so (broken or forged) would turn
                # the RTT into zero: use the round trip as measured here, and say so.
                rtt = got - sent
                turnaround = stamp.ntp_diff_s(reply.timestamp, reply.receive_timestamp)
                if 0.0 <= turnaround <= rtt:
                    rtt -= turnaround
                else:
                    session.implausible += 1
                session.rtts_ms[reply.sender_seq] = rtt * 1000.0
    return session


def summarise(session: Session) -> dict[str, MetricValue]:
    rtts = [session.rtts_ms[s] for s in sorted(session.rtts_ms)]  # in sequence order, for jitter
    sent, received = len(session.sent_at), len(rtts)
    jitter = statistics.fmean(abs(b - a) for a, b in zip(rtts, rtts[1:], strict=False)) if received >= 2 else None
    return {
        "sent_count": sent,
        "received_count": received,
        "loss_pct": round(100.0 * (sent - received) / sent, 3) if sent else None,
        "rtt_min_ms": round(min(rtts), 3) if rtts else None,
        "rtt_avg_ms": round(statistics.fmean(rtts), 3) if rtts else None,
        "rtt_max_ms": round(max(rtts), 3) if rtts else None,
        "rtt_p95_ms": round(statistics.quantiles(rtts, n=20)[-1], 3) if received >= 2 else None,
        "jitter_ms": round(jitter, 3) if jitter is not None else None,
        "duplicates_count": session.duplicates,
        "reordered_count": session.reordered,
        "implausible_timestamps_count": session.implausible,
    }


def run(cfg: UdpLatencyConfig, ctx: CheckContext) -> Measurement:
    try:
        address = resolve_target(cfg.server, ctx)
    except (LookupError, OSError) as exc:
        return Measurement(Status.SKIPPED if cfg.server == "test_server" else Status.FAILED,
                           [because("cannot_resolve_reflector", target=cfg.server), because_of(exc)], target=cfg.server)
    m = _measure(cfg, ctx, address)
    # Say which name led the probes to this address: localisation tells a wrong DNS answer from the line.
    m.findings = reached_by_name(m.findings, target_name(cfg.server, ctx), address)
    return m


def _measure(cfg: UdpLatencyConfig, ctx: CheckContext, address: str) -> Measurement:
    label = f"{address}:{cfg.port}"
    ctx.progress(step("stamp", count=cfg.count, target=label))
    session = probe(address, cfg.port, cfg.count, cfg.interval_s, cfg.reply_timeout_s, cfg.packet_bytes,
                    ctx.deadline)
    metrics = summarise(session)
    if session.refused and not session.rtts_ms:
        # The host answered "port unreachable": the line works, the reflector is not running there.
        return Measurement(Status.ERROR, because("no_reflector", target=label),
                           metrics | {k: None for k in metrics if k.startswith(("loss", "rtt", "jitter"))}, label)
    limits = ProbeThresholds(cfg.loss_degraded_pct, cfg.loss_failed_pct, cfg.rtt_degraded_ms, cfg.jitter_degraded_ms)
    status, reason, found = judge_probes("udp_latency", label, metrics, limits, probes="stamp")
    if session.implausible:
        reason = joined(reason, because("implausible_timestamps", count=session.implausible, target=label))
        if status is Status.OK:
            status = Status.DEGRADED  # the figures are upper bounds from a reflector that cannot be trusted
    return Measurement(status, reason, metrics, label, found)


SPEC = CheckSpec(kind="udp_latency", config=UdpLatencyConfig, run=run)
