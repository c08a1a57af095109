"""ARP requests over a raw packet socket (AF_PACKET, CAP_NET_RAW): is the next hop there at layer 2?

What the gateway check needs from ARP is a request out of one interface and the matching reply back,
timed. A packet socket bound to the ARP ethertype does that in a few lines; scapy did the same for
~30 MB of resident memory and most of a second of imports in the check process (docs/scaling.md).
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import time

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
SIOCGIFADDR = 0x8915
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6
MIN_FRAME = 60  # Ethernet minimum without the FCS; padded here so no driver has to


def interface_ipv4(interface: str) -> bytes:
    """The interface's IPv4 address (4 bytes), or 0.0.0.0 when it has none: an ARP probe (RFC 5227)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        except OSError:
            return b"\0\0\0\0"
    return answer[20:24]


def request_frame(mac: bytes, sender_ip: bytes, target_ip: bytes) -> bytes:
    frame = (BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
             + struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, ARP_REQUEST, mac, sender_ip, b"\0" * 6, target_ip))
    return frame.ljust(MIN_FRAME, b"\0")


def is_reply_from(frame: bytes, target_ip: bytes) -> bool:
    """An Ethernet frame carrying an ARP reply whose sender is `target_ip` (anything else: False)."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", ETH_P_ARP):
        return False
    _htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    return ptype == ETH_P_IP and hlen == 6 and plen == 4 and op == ARP_REPLY and frame[28:32] == target_ip


def probe(interface: str, address: str, count: int, timeout_s: float) -> list[float]:
    """RTTs (ms) of ARP replies from `address`, one request at a time; raises PermissionError without
    CAP_NET_RAW (the caller falls back to ICMP)."""
    target_ip = socket.inet_aton(address)
    rtts: list[float] = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, ETH_P_ARP))
        mac = sock.getsockname()[4]
        if len(mac) != 6:
            raise OSError(f"{interface} has no Ethernet address (ARP runs on Ethernet-like links only)")
        frame = request_frame(mac, interface_ipv4(interface), target_ip)
        for _ in range(count):
            sent = time.monotonic()
            sock.send(frame)
            end = sent + timeout_s
            while (left := end - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                if is_reply_from(sock.recv(128), target_ip):
                    rtts.append(round((time.monotonic() - sent) * 1000.0, 3))
                    break
    return rtts
