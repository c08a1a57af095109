"""A gateway WAN port that negotiated a lower speed, for the line lab (`LineLab.slow_wan_port`).

veth always reports 10 Gbit/s and its speed cannot be set; a TAP device's can (ETHTOOL_SSET).
So the gateway's WAN becomes a TAP device `wan0` reporting the given speed, and this relay,
running inside the gateway namespace, copies Ethernet frames between the TAP and the veth end
(renamed) that leads to the carrier — a two-port bridge in user space. The lab shapes both
directions to the port's rate with tbf, as a port negotiated at that speed would carry.

    python -m tests.tap_relay TAP VETH SPEED_MBIT      (prints "relaying" once ready)
    python -m tests.tap_relay no-offload IFACE         (run in the carrier namespace first)

veth hands its peer TCP segments with the checksum left to "hardware" (CHECKSUM_PARTIAL); copied
into a TAP they would arrive with a bad checksum and be dropped. `no-offload` turns checksum,
scatter-gather and segmentation offloads off on the carrier's veth end, so every frame the
relay sees is complete and at most one MTU long.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SIOCETHTOOL = 0x8946
ETHTOOL_GSET, ETHTOOL_SSET = 1, 2
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # frames this host sent: the relay's own writes, never relayed back


# Legacy ethtool "set" commands taking struct ethtool_value {u32 cmd; u32 data}.
ETHTOOL_STXCSUM, ETHTOOL_SSG, ETHTOOL_STSO, ETHTOOL_SGSO = 0x17, 0x19, 0x1F, 0x24


def no_offload(name: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for cmd in (ETHTOOL_SGSO, ETHTOOL_STSO, ETHTOOL_SSG, ETHTOOL_STXCSUM):
            value = array.array("B", struct.pack("II", cmd, 0))
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, struct.pack("16sP", name.encode(), value.buffer_info()[0]))
    finally:
        s.close()


def set_speed(name: str, mbit: int) -> None:
    """Legacy ETHTOOL_SSET on struct ethtool_cmd: speed (low/high 16 bits), full duplex, autoneg off."""
    buf = array.array("B", bytes(44))
    struct.pack_into("I", buf, 0, ETHTOOL_GSET)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sP", name.encode(), buf.buffer_info()[0])
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
        struct.pack_into("I", buf, 0, ETHTOOL_SSET)
        struct.pack_into("H", buf, 12, mbit & 0xFFFF)
        struct.pack_into("B", buf, 14, 1)  # DUPLEX_FULL
        struct.pack_into("B", buf, 18, 0)  # AUTONEG_DISABLE
        struct.pack_into("H", buf, 28, mbit >> 16)
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
    finally:
        s.close()


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main(argv: list[str]) -> int:
    if argv[0] == "no-offload":
        no_offload(argv[1])
        return 0
    tap_name, veth_name, mbit = argv[0], argv[1], int(argv[2])
    tap = open_tap(tap_name)
    set_speed(tap_name, mbit)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    raw.bind((veth_name, 0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("relaying", flush=True)
    poller = select.poll()
    poller.register(tap, select.POLLIN)
    poller.register(raw.fileno(), select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == tap:
                frame = os.read(tap, 65536)
                with contextlib.suppress(OSError):  # a frame the veth refuses is dropped, as on a real port
                    raw.send(frame)
            else:
                frame, addr = raw.recvfrom(65536)
                if addr[2] != PACKET_OUTGOING:
                    with contextlib.suppress(OSError):
                        os.write(tap, frame)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
