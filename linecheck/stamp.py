"""STAMP test packets (RFC 8762, unauthenticated mode), shared by the agent and the reflector.

A Session-Sender packet carries a sequence number and its send time; the Session-Reflector
answers with the same length, adding its own sequence number, its receive time and its transmit
time, and echoing the sender's fields. The sender then has four timestamps and can take the
reflector's turnaround out of the round trip:  rtt = (t4 - t1) - (t3 - t2).

Timestamps are 64-bit NTP format (seconds since 1900 and a 32-bit fraction). Both packet
layouts are 44 bytes; a sender may pad to test larger packets and the reflector keeps the length.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

DEFAULT_PORT = 862  # the IANA port for STAMP (RFC 8762 §4.1)
BASE_LEN = 44
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
# Error Estimate (RFC 4656 §4.1.2): S=0 (clock not known to be synchronised), Z=0 (NTP format),
# scale 0, multiplier 1 (the multiplier must not be zero).
ERROR_ESTIMATE = 0x0001

_SENDER = struct.Struct("!IQH30x")  # seq, timestamp, error estimate, MBZ
_REFLECTOR = struct.Struct("!IQHHQIQH2xB3x")  # seq, ts, err, ssid/MBZ, rx ts, s-seq, s-ts, s-err, MBZ, s-ttl, MBZ
assert _SENDER.size == BASE_LEN and _REFLECTOR.size == BASE_LEN


def ntp_now() -> int:
    return to_ntp(time.time())


def to_ntp(unix_s: float) -> int:
    seconds = int(unix_s)
    fraction = int((unix_s - seconds) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32 | fraction


def ntp_diff_s(later: int, earlier: int) -> float:
    """Seconds between two NTP timestamps (the reflector's turnaround)."""
    return (later - earlier) / float(1 << 32)


@dataclass(frozen=True)
class SenderPacket:
    seq: int
    timestamp: int


@dataclass(frozen=True)
class ReflectedPacket:
    seq: int  # the reflector's own counter (stateful) or the sender's (stateless)
    timestamp: int  # t3: when the reflector sent it
    receive_timestamp: int  # t2: when the reflector received the sender's packet
    sender_seq: int
    sender_timestamp: int  # t1, as the sender stamped it
    sender_ttl: int


def pack_sender(seq: int, timestamp: int, length: int = BASE_LEN) -> bytes:
    return _SENDER.pack(seq & 0xFFFFFFFF, timestamp, ERROR_ESTIMATE).ljust(max(length, BASE_LEN), b"\0")


def unpack_sender(data: bytes) -> SenderPacket:
    if len(data) < BASE_LEN:
        raise ValueError(f"STAMP packet too short: {len(data)} bytes")
    seq, ts, _err = _SENDER.unpack_from(data)
    return SenderPacket(seq, ts)


def pack_reflected(seq: int, timestamp: int, receive_timestamp: int, sent: SenderPacket, sender_ttl: int,
                   length: int) -> bytes:
    body = _REFLECTOR.pack(seq & 0xFFFFFFFF, timestamp, ERROR_ESTIMATE, 0, receive_timestamp, sent.seq,
                           sent.timestamp, ERROR_ESTIMATE, sender_ttl & 0xFF)
    return body.ljust(max(length, BASE_LEN), b"\0")


def unpack_reflected(data: bytes) -> ReflectedPacket:
    if len(data) < BASE_LEN:
        raise ValueError(f"STAMP packet too short: {len(data)} bytes")
    seq, ts, _e, _ssid, rx, sseq, sts, _se, ttl = _REFLECTOR.unpack_from(data)
    return ReflectedPacket(seq, ts, rx, sseq, sts, ttl)
