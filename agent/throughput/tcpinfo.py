"""Read Linux TCP_INFO: bytes the peer acknowledged, and the connection's smoothed RTT.

Upload goodput is what the receiver acknowledged, not what the application pushed into its
send buffer (which can hold megabytes); `tcpi_bytes_acked` gives exactly that. Download
progress is `tcpi_bytes_received`: counted by the kernel as segments arrive, so a reader thread
the scheduler kept waiting (two busy cores) does not shift bytes from one interval to the next.
Offsets follow struct tcp_info in <linux/tcp.h> (stable ABI; fields are only ever appended).
"""

from __future__ import annotations

import socket
import struct

_RTT_US = 68  # __u32 tcpi_rtt
_BYTES_ACKED = 120  # __u64 tcpi_bytes_acked (Linux >= 4.1)
_BYTES_RECEIVED = 128  # __u64 tcpi_bytes_received (Linux >= 4.1)
_SIZE = 232


def bytes_acked(sock: socket.socket) -> int | None:
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except OSError:
        return None
    if len(raw) < _BYTES_ACKED + 8:
        return None
    return struct.unpack_from("=Q", raw, _BYTES_ACKED)[0]


def bytes_received(sock: socket.socket) -> int | None:
    """Payload bytes the kernel received in order (read by the application or still queued)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except OSError:
        return None
    if len(raw) < _BYTES_RECEIVED + 8:
        return None
    return struct.unpack_from("=Q", raw, _BYTES_RECEIVED)[0]


def rtt_ms(sock: socket.socket) -> float | None:
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except OSError:
        return None
    if len(raw) < _RTT_US + 4:
        return None
    us = struct.unpack_from("=I", raw, _RTT_US)[0]
    return us / 1000.0 if us else None
