"""ARP over a raw packet socket (agent/arp.py): the frame we send, and what we accept back. The replies come
from the WAN segment, so anything else on it may answer: only a well-formed ARP reply from the address
asked about counts. The real exchange runs in the line lab (tests/test_checks_path.py, as root and nobody)."""

from __future__ import annotations

import socket
import struct

import pytest

from agent import arp

MAC = bytes.fromhex("3c22fb8e4107")
ME, GW, OTHER = socket.inet_aton("198.18.0.2"), socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.9")


def reply(sender_ip: bytes, op: int = arp.ARP_REPLY, ptype: int = arp.ETH_P_IP, ethertype: int = arp.ETH_P_ARP,
          hlen: int = 6, plen: int = 4) -> bytes:
    return (MAC + bytes(6) + struct.pack("!H", ethertype)
            + struct.pack("!HHBBH6s4s6s4s", 1, ptype, hlen, plen, op, bytes(6), sender_ip, MAC, ME)).ljust(60, b"\0")


def test_the_request_is_a_padded_broadcast_who_has() -> None:
    frame = arp.request_frame(MAC, ME, GW)
    assert len(frame) == 60 and frame[:6] == b"\xff" * 6 and frame[6:12] == MAC
    assert frame[12:14] == b"\x08\x06" and struct.unpack("!H", frame[20:22])[0] == arp.ARP_REQUEST
    assert frame[28:32] == ME and frame[38:42] == GW
    assert not arp.is_reply_from(frame, GW)  # our own request, seen again on the socket, is not an answer


@pytest.mark.parametrize("frame", [
    reply(OTHER),                         # someone else answering
    reply(GW, op=arp.ARP_REQUEST),        # the gateway asking, not answering
    reply(GW, ptype=0x86DD),              # not IPv4
    reply(GW, ethertype=0x0800),          # not ARP at all
    reply(GW, hlen=8), reply(GW, plen=16),
    reply(GW)[:41], b"", b"\xff" * 3,     # truncated
])
def test_only_a_well_formed_reply_from_the_address_counts(frame: bytes) -> None:
    assert not arp.is_reply_from(frame, GW)


def test_a_reply_from_the_gateway_counts() -> None:
    assert arp.is_reply_from(reply(GW), GW) and arp.is_reply_from(reply(GW)[:42], GW)


def test_nobody_answers_on_loopback() -> None:
    """The socket path for real: a request out of lo, no ARP reply back (an empty list, not an error)."""
    try:
        assert arp.probe("lo", "127.0.0.1", 1, 0.1) == []
    except PermissionError:
        pytest.skip("no CAP_NET_RAW here")
