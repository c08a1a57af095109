"""The line lab: an emulated broadband line between a "gateway" and a "carrier" network namespace.

    [gw ns]  wan0 198.18.0.2/24  ==== veth ====  cr0 198.18.0.1/24  [carrier ns]
             default via .1                      lo: 198.18.1.1/32 (the "test server" address)

Shaping uses `tc tbf` (this kernel has no netem): the download rate is shaped on the carrier
side's egress, the upload rate on the gateway's. Names carry the pid and a counter so labs of
parallel test runs never collide. Everything is torn down on exit, even after a failure.
Addresses are in 198.18.0.0/15 (RFC 2544 benchmarking); nothing leaves the namespaces.

With `LineLab(emulator=True)` the access link passes through a third, "wire" namespace where a
user-space line emulator (tests/lineemu.py) adds delay, jitter, loss, reordering and a rate cap
per direction: `lab.line(down=dict(delay_ms=10, loss=0.001), up=...)`.

Optional extras (tests call them): more server addresses (`add_address`), a resolv.conf for
programs run in a namespace (`set_resolv_conf`), IPv6 in 2001:2::/48 (`enable_ipv6`), and a chain
of routers behind the carrier for multi-hop paths (`add_router_chain`), and a management link that
survives a cut access line (`add_management_link`).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.lineemu import CARRIER_SIDE_IF, GW_SIDE_IF, LineEmulator, configure_line
from tests.lineemu import command as emulator_command

GW_ADDR = "198.18.0.2"
CARRIER_ADDR = "198.18.0.1"
SERVER_ADDR = "198.18.1.1"  # on the carrier's loopback: one routed hop beyond the access link
FAR_ADDR = "198.18.21.1"  # on the last router of add_router_chain()
LAN_GW_IF = "lan0"  # add_client(): the gateway's LAN side
LAN_GW_ADDR = "198.19.0.1"
LAN_CLIENT_ADDR = "198.19.0.2"
MGMT_ADDR = "198.18.3.1"  # add_management_link(): the carrier's management address (e.g. the broker)
GW6_ADDR = "2001:2::2"  # enable_ipv6(): 2001:2::/48 is the IPv6 benchmarking range (RFC 5180)
CARRIER6_ADDR = "2001:2::1"
SERVER6_ADDR = "2001:2:0:1::1"
_counter = itertools.count()
CLONE_NEWNET = 0x40000000


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


class LineLab:
    def __init__(self, emulator: bool = False) -> None:
        tag = f"{os.getpid() % 100000}x{next(_counter)}"
        self.gw = f"lcgw{tag}"
        self.carrier = f"lccr{tag}"
        self.wire = f"lcwr{tag}" if emulator else ""  # the line emulator's namespace, if any
        self.emulator: LineEmulator | None = None
        self.gw_if = "wan0"
        self.carrier_if = "cr0"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._extra_ns: list[str] = []  # router chain namespaces (add_router_chain)
        self.client: str = ""  # the LAN client namespace, once add_client() made it

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LineLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.gw, self.carrier):
            _run(["ip", "netns", "add", ns])
            self.sh(ns, "ip link set lo up")
        if self.wire:
            self._build_wire()
        else:
            tmp = f"lcv{os.getpid() % 100000}{next(_counter)}"
            _run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"])
            _run(["ip", "link", "set", tmp, "netns", self.gw, "name", self.gw_if])
            _run(["ip", "link", "set", tmp + "p", "netns", self.carrier, "name", self.carrier_if])
        self.sh(self.gw, f"ip addr add {GW_ADDR}/24 dev {self.gw_if}; ip link set {self.gw_if} up; "
                         f"ip route add default via {CARRIER_ADDR}")
        self.sh(self.carrier, f"ip addr add {CARRIER_ADDR}/24 dev {self.carrier_if}; "
                              f"ip link set {self.carrier_if} up; ip addr add {SERVER_ADDR}/32 dev lo; "
                              "sysctl -qw net.ipv4.ip_forward=1")
        # Unprivileged ICMP sockets for every group, as a gateway image would configure it.
        for ns in (self.gw, self.carrier):
            self.sh(ns, "sysctl -qw net.ipv4.ping_group_range='0 2147483647'")
        if self.wire:
            self._start_emulator()

    def _build_wire(self) -> None:
        """wan0 == e0 [wire] e1 == cr0: two veth pairs, the emulator bridging e0 and e1."""
        _run(["ip", "netns", "add", self.wire])
        self._extra_ns.append(self.wire)
        # The wire carries frames, it has no addresses: no IPv6 autoconfiguration noise of its own.
        self.sh(self.wire, "ip link set lo up; sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                           "net.ipv6.conf.default.disable_ipv6=1")
        for end, ns, name in ((GW_SIDE_IF, self.gw, self.gw_if), (CARRIER_SIDE_IF, self.carrier, self.carrier_if)):
            tmp = f"lcv{os.getpid() % 100000}{next(_counter)}"
            _run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"])
            _run(["ip", "link", "set", tmp, "netns", ns, "name", name])
            _run(["ip", "link", "set", tmp + "p", "netns", self.wire, "name", end])
            self.sh(self.wire, f"ip link set {end} up")

    def _start_emulator(self) -> None:
        proc = self.popen(self.wire, emulator_command(),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.emulator = LineEmulator(proc)  # type: ignore[arg-type]  # popen is typed for bytes

    def line(self, down: Mapping[str, Any] | None = None, up: Mapping[str, Any] | None = None) -> None:
        """Impair the line (LineLab(emulator=True) only): one mapping per direction, keys in
        tests/lineemu.Impairment; None is a clean direction. Replaces what was set before."""
        if self.emulator is None:
            raise RuntimeError("line() needs LineLab(emulator=True)")
        configure_line(self.emulator, down=down, up=up)

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for ns in (self.gw, self.carrier, *self._extra_ns):
            _run(["ip", "netns", "del", ns], check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)

    # --- running things inside -----------------------------------------------------------------
    def sh(self, ns: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", ns, "sh", "-ec", script], check=check)

    def run(self, ns: str, argv: Sequence[str], check: bool = False, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              check=check, timeout=timeout, env=env)

    def popen(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc

    @contextmanager
    def inside(self, ns: str) -> Iterator[None]:
        """Move the calling thread into `ns` (setns is per thread) for sockets opened in the block.

        Only sockets opened inside the block live in the namespace. /proc/net and /sys still show
        the process's namespace, so run whole programs with `run`/`popen` instead.
        """
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
            try:
                yield
            finally:
                libc.setns(own, CLONE_NEWNET)
        finally:
            os.close(own)
            os.close(target)

    # --- line faults and shaping ---------------------------------------------------------------
    def shape(self, down_mbit: float | None, up_mbit: float | None) -> None:
        """tbf on each side's egress; None removes the shaping in that direction."""
        for ns, dev, rate in ((self.carrier, self.carrier_if, down_mbit), (self.gw, self.gw_if, up_mbit)):
            if rate is None:
                self.sh(ns, f"tc qdisc del dev {dev} root", check=False)
                continue
            # Burst of ~4 ms at rate (at least 32 kB) keeps short-term accuracy; 50 ms queue limit.
            burst = max(32 * 1024, int(rate * 1e6 / 8 * 0.004))
            self.sh(ns, f"tc qdisc replace dev {dev} root tbf rate {rate}mbit burst {burst} latency 50ms")

    def link(self, up: bool) -> None:
        """Cut or restore the line on the carrier side: the gateway sees its carrier go away."""
        self.sh(self.carrier, f"ip link set {self.carrier_if} {'up' if up else 'down'}")

    def slow_wan_port(self, mbit: int) -> None:
        """The gateway's WAN port negotiates only `mbit` Mbit/s (a cable or port fault at the office).

        veth's speed is fixed at 10 Gbit/s, so the gateway's `wan0` becomes a TAP device that reports
        `mbit` (ETHTOOL_SSET) and tests/tap_relay.py bridges it onto the veth; both directions are
        shaped to the port's rate, as a port negotiated at that speed carries no more.
        """
        g = self.gw_if
        self.run(self.carrier, [sys.executable, "-m", "tests.tap_relay", "no-offload", self.carrier_if], check=True)
        self.sh(self.gw, f"ip addr flush dev {g}; ip link set {g} down; ip link set {g} name {g}x; "
                         f"sysctl -qw net.ipv6.conf.{g}x.disable_ipv6=1; ip link set {g}x promisc on; "
                         f"ip link set {g}x up; ip tuntap add dev {g} mode tap")
        relay = self.popen(self.gw, [sys.executable, "-m", "tests.tap_relay", g, f"{g}x", str(mbit)],
                           stdout=subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[1]))
        assert relay.stdout is not None and relay.stdout.readline().strip() == b"relaying"
        self.sh(self.gw, f"ip link set {g} up; ip addr add {GW_ADDR}/24 dev {g}; "
                         f"ip route add default via {CARRIER_ADDR}")
        self.shape(mbit, mbit)

    def set_mtu(self, ns: str, mtu: int) -> None:
        dev = self.gw_if if ns == self.gw else self.carrier_if
        self.sh(ns, f"ip link set {dev} mtu {mtu}")

    # --- extra services and topology (additive) -------------------------------------------------
    def add_address(self, ns: str, address: str) -> str:
        """Another address on `ns`'s loopback (a second server beyond the access link)."""
        prefix = 128 if ":" in address else 32
        self.sh(ns, f"ip addr add {address}/{prefix} dev lo" + (" nodad" if ":" in address else ""))
        return address

    def set_resolv_conf(self, ns: str, text: str) -> None:
        """The /etc/resolv.conf that programs started with `run`/`popen` in `ns` see.

        `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf; threads moved
        with `inside` do not get it.
        """
        os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
        with open(f"/etc/netns/{ns}/resolv.conf", "w") as fh:
            fh.write(text)

    def enable_ipv6(self) -> tuple[str, str]:
        """IPv6 on the access link (2001:2::/64, RFC 5180 benchmarking) with a default route, and a
        server address beyond the carrier. Returns (gateway's address, server address)."""
        for ns in (self.gw, self.carrier):
            self.sh(ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0")
        self.sh(self.carrier, f"ip -6 addr add {CARRIER6_ADDR}/64 dev {self.carrier_if} nodad; "
                              f"ip -6 addr add {SERVER6_ADDR}/128 dev lo nodad; "
                              "sysctl -qw net.ipv6.conf.all.forwarding=1")
        self.sh(self.gw, f"ip -6 addr add {GW6_ADDR}/64 dev {self.gw_if} nodad; "
                         f"ip -6 route add default via {CARRIER6_ADDR} dev {self.gw_if}")
        return GW6_ADDR, SERVER6_ADDR

    def add_router_chain(self, hops: int) -> str:
        """`hops` router namespaces behind the carrier, each one more routed hop, with a far server
        address on the last one. Returns that address (a traceroute from the gateway sees the carrier
        and then each router). Link i is 198.18.20.(4i)/30; the far server is 198.18.21.1."""
        prev_ns = self.carrier
        for i in range(hops):
            ns = f"{self.carrier}r{i}"
            _run(["ip", "netns", "add", ns])
            self._extra_ns.append(ns)
            self.sh(ns, "ip link set lo up; sysctl -qw net.ipv4.ip_forward=1")
            left, right = f"198.18.20.{4 * i + 1}", f"198.18.20.{4 * i + 2}"
            tmp = f"lcc{os.getpid() % 100000}{next(_counter)}"
            _run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"])
            _run(["ip", "link", "set", tmp, "netns", prev_ns, "name", f"ch{i}a"])
            _run(["ip", "link", "set", tmp + "p", "netns", ns, "name", f"ch{i}b"])
            self.sh(prev_ns, f"ip addr add {left}/30 dev ch{i}a; ip link set ch{i}a up; "
                             f"ip route add {FAR_ADDR}/32 via {right}")
            self.sh(ns, f"ip addr add {right}/30 dev ch{i}b; ip link set ch{i}b up; ip route add default via {left}")
            prev_ns = ns
        self.sh(prev_ns, f"ip addr add {FAR_ADDR}/32 dev lo")
        return FAR_ADDR

    def add_management_link(self) -> str:
        """A second gateway↔carrier link that survives the access line (an LTE backup, a management
        VLAN): only traffic to MGMT_ADDR, on the carrier's loopback, takes it (198.18.2.0/30).
        Returns MGMT_ADDR; a broker listening there stays reachable while the line is down."""
        tmp = f"lcm{os.getpid() % 100000}{next(_counter)}"
        _run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"])
        _run(["ip", "link", "set", tmp, "netns", self.gw, "name", "mgmt0"])
        _run(["ip", "link", "set", tmp + "p", "netns", self.carrier, "name", "mgmt1"])
        self.sh(self.carrier, f"ip addr add 198.18.2.1/30 dev mgmt1; ip link set mgmt1 up; "
                              f"ip addr add {MGMT_ADDR}/32 dev lo")
        self.sh(self.gw, f"ip addr add 198.18.2.2/30 dev mgmt0; ip link set mgmt0 up; "
                         f"ip route add {MGMT_ADDR}/32 via 198.18.2.1 dev mgmt0")
        return MGMT_ADDR

    def set_link_mtu(self, ns: str, dev: str, mtu: int) -> None:
        """MTU of any device in any lab namespace (set_mtu covers only the access link)."""
        self.sh(ns, f"ip link set {dev} mtu {mtu}")

    # --- a LAN client behind the gateway (additive; the WiFi/LAN room tests) --------------------
    def add_client(self, mac: str | None = None) -> str:
        """A third namespace, an office device on the gateway's LAN side:

            [client ns] eth0 198.19.0.2/24 ==== veth ==== lan0 198.19.0.1/24 [gw ns]

        `mac` sets the client's Ethernet address (so a captured `iw station dump` can name it).
        Returns the client namespace; its default route is the gateway. Call once per lab.
        """
        ns = f"{self.gw}c"
        _run(["ip", "netns", "add", ns])
        self._extra_ns.append(ns)
        self.client = ns
        self.sh(ns, "ip link set lo up")
        tmp = f"lcl{os.getpid() % 100000}{next(_counter)}"
        _run(["ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp + "p"])
        _run(["ip", "link", "set", tmp, "netns", self.gw, "name", LAN_GW_IF])
        _run(["ip", "link", "set", tmp + "p", "netns", ns, "name", "eth0"])
        if mac:
            self.sh(ns, f"ip link set eth0 address {mac}")
        self.sh(self.gw, f"ip addr add {LAN_GW_ADDR}/24 dev {LAN_GW_IF}; ip link set {LAN_GW_IF} up")
        self.sh(ns, f"ip addr add {LAN_CLIENT_ADDR}/24 dev eth0; ip link set eth0 up; "
                    f"ip route add default via {LAN_GW_ADDR}")
        return ns

    def shape_lan(self, down_mbit: float | None, up_mbit: float | None) -> None:
        """tbf on the LAN link, like `shape` on the access link: down = gateway -> client."""
        for ns, dev, rate in ((self.gw, LAN_GW_IF, down_mbit), (self.client, "eth0", up_mbit)):
            if rate is None:
                self.sh(ns, f"tc qdisc del dev {dev} root", check=False)
                continue
            burst = max(32 * 1024, int(rate * 1e6 / 8 * 0.004))
            self.sh(ns, f"tc qdisc replace dev {dev} root tbf rate {rate}mbit burst {burst} latency 50ms")


def start_testserver(lab: LineLab) -> LineLab:
    """linecheck-testserver (HTTP on SERVER_ADDR:8080, the STAMP reflector on 862) in the carrier namespace,
    listening when this returns; the lab stops it with the namespaces."""
    proc = lab.popen(lab.carrier, [sys.executable, "-m", "testserver.cli", "--listen", f"{SERVER_ADDR}:8080"],
                     stdout=subprocess.PIPE)
    assert proc.stdout is not None and b"http listening" in proc.stdout.readline()
    return lab
