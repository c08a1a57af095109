"""Read Linux TCP_INFO: what the peer has of our data, what we sent and resent, and the smoothed RTT.

Upload goodput is what reached the receiver, not what the application pushed into its send buffer
(which can hold megabytes). `tcpi_bytes_acked` counts what the receiver acknowledged cumulatively;
while a loss is being repaired it stands still although the segments behind the hole keep arriving
(the receiver selectively acknowledges them, SACK). A window that starts in such a stall and ends in
steady state reads above the line's rate (20 ms RTT, a 1 Gbit/s cap dropping at its queue: 962 and
983 Mbit/s of goodput where 956 is the most a 1 Gbit/s Ethernet rate carries). `delivered_bytes` adds
the SACKed segments (`tcpi_sacked` x `tcpi_snd_mss`): what the receiver holds, as the line delivered it.
Download progress is `tcpi_bytes_received`: counted by the kernel as segments arrive, so a reader
thread the scheduler kept waiting (two busy cores) does not shift bytes from one interval to the next.
`tcpi_bytes_sent` and `tcpi_bytes_retrans` (Linux >= 4.19) give the retransmitted share of an upload.
Offsets follow struct tcp_info in <linux/tcp.h> (stable ABI; fields are only ever appended).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_SND_MSS = 16  # __u32 tcpi_snd_mss
_SACKED = 28  # __u32 tcpi_sacked: segments the receiver SACKed above the cumulative ACK
_RTT_US = 68  # __u32 tcpi_rtt
_BYTES_ACKED = 120  # __u64 tcpi_bytes_acked (Linux >= 4.1)
_BYTES_RECEIVED = 128  # __u64 tcpi_bytes_received (Linux >= 4.1)
_BYTES_SENT = 200  # __u64 tcpi_bytes_sent: data bytes sent, retransmissions included (Linux >= 4.19)
_BYTES_RETRANS = 208  # __u64 tcpi_bytes_retrans (Linux >= 4.19)
_SIZE = 232


def _raw(sock: socket.socket) -> bytes | None:
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except OSError:
        return None


def _u64(raw: bytes | None, offset: int) -> int | None:
    if raw is None or len(raw) < offset + 8:
        return None
    return int(struct.unpack_from("=Q", raw, offset)[0])


def bytes_acked(sock: socket.socket) -> int | None:
    return _u64(_raw(sock), _BYTES_ACKED)


def bytes_received(sock: socket.socket) -> int | None:
    """Payload bytes the kernel received in order (read by the application or still queued)."""
    return _u64(_raw(sock), _BYTES_RECEIVED)


@dataclass(frozen=True)
class SendCounters:
    delivered: int  # acknowledged cumulatively + SACKed above the hole: what the receiver holds
    sent: int | None  # data bytes put on the wire, retransmissions included (None: kernel < 4.19)
    retrans: int | None  # of which retransmitted


def send_counters(sock: socket.socket) -> SendCounters | None:
    raw = _raw(sock)
    acked = _u64(raw, _BYTES_ACKED)
    if raw is None or acked is None:
        return None
    mss, sacked = struct.unpack_from("=I", raw, _SND_MSS)[0], struct.unpack_from("=I", raw, _SACKED)[0]
    return SendCounters(acked + mss * sacked, _u64(raw, _BYTES_SENT), _u64(raw, _BYTES_RETRANS))


def delivered_bytes(sock: socket.socket) -> int | None:
    c = send_counters(sock)
    return None if c is None else c.delivered


def rtt_ms(sock: socket.socket) -> float | None:
    raw = _raw(sock)
    if raw is None or len(raw) < _RTT_US + 4:
        return None
    us = struct.unpack_from("=I", raw, _RTT_US)[0]
    return us / 1000.0 if us else None
