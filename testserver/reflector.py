"""The UDP STAMP Session-Reflector (RFC 8762, stateful, unauthenticated) of linecheck-testserver.

Carriers run it next to the HTTP throughput endpoints; the agent's `udp_latency` check sends
sequenced probes to it. It answers each probe with a packet of the same length (no
amplification), its own per-session sequence number and its receive and transmit timestamps.

For tests it can impair its own replies, since the kernel here has no netem:
  --drop-pct X   drop that share of received probes (chosen at random, like a lossy path);
  --delay-ms Y   hold each probe Y ms *before* timestamping it, so the delay behaves like a
                 longer path and shows in the measured round trip (a delay after the receive
                 timestamp would be subtracted as reflector turnaround).

    python -m testserver.reflector --port 8620 [--host 0.0.0.0] [--drop-pct 10] [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import logging
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import OrderedDict

from linecheck import stamp

log = logging.getLogger(__name__)

MAX_SESSIONS = 10_000  # per-client counters kept; the oldest are forgotten beyond this
MAX_PACKET = 9000
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux value; Python does not export it everywhere


class Reflector:
    """A STAMP reflector on (host, port); port 0 picks a free port, read back from `.port`."""

    def __init__(self, host: str = "0.0.0.0", port: int = stamp.DEFAULT_PORT, drop_pct: float = 0.0,
                 delay_ms: float = 0.0, seed: int | None = None):
        if not 0 <= drop_pct <= 100:
            raise ValueError(f"drop_pct must be within 0..100, got {drop_pct}")
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        self.host = host
        self.port = port
        self.drop_pct = drop_pct
        self.delay_ms = delay_ms
        self._random = random.Random(seed)
        self._sessions: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stopping = False
        self.received = 0
        self.reflected = 0
        self.dropped = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Reflector:
        """Bind (in the calling thread, hence its network namespace) and serve in a thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name=f"stamp-reflector-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Reflector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the loop ----------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        sock.setblocking(False)
        pending: list[tuple[float, int, bytes, tuple, int]] = []  # (due, tiebreak, data, addr, ttl)
        tiebreak = 0
        while not self._stopping:
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
            ready, _, _ = select.select([sock, self._wake_r], [], [], timeout)
            if self._wake_r in ready:
                break
            if sock in ready:
                while True:
                    try:
                        data, anc, _flags, addr = sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(4))
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # e.g. an ICMP error queued for an earlier reply
                        log.debug("recv: %s", exc)
                        break
                    self.received += 1
                    if len(data) < stamp.BASE_LEN:
                        continue
                    if self.drop_pct and self._random.random() * 100 < self.drop_pct:
                        self.dropped += 1
                        continue
                    tiebreak += 1
                    due = time.monotonic() + self.delay_ms / 1000.0
                    heapq.heappush(pending, (due, tiebreak, data, addr, _ttl(anc)))
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _due, _t, data, addr, ttl = heapq.heappop(pending)
                self._reflect(sock, data, addr, ttl)

    def _reflect(self, sock: socket.socket, data: bytes, addr: tuple, ttl: int) -> None:
        received_at = stamp.ntp_now()
        try:
            sent = stamp.unpack_sender(data)
        except ValueError:
            return
        key = (addr[0], addr[1])
        seq = self._sessions.pop(key, 0)
        self._sessions[key] = seq + 1  # re-inserted last: the dict stays in least-recently-used order
        if len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        reply = stamp.pack_reflected(seq, stamp.ntp_now(), received_at, sent, ttl, len(data))
        try:
            sock.sendto(reply, addr)
            self.reflected += 1
        except OSError as exc:
            log.debug("send to %s: %s", addr, exc)


def _ttl(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, value in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
            return struct.unpack("i", value[:4])[0] if len(value) >= 4 else value[0]
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testserver.reflector", description="STAMP (RFC 8762) UDP reflector")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default all IPv4; '::' for IPv6)")
    p.add_argument("--port", type=int, default=stamp.DEFAULT_PORT, help="UDP port (0 = any free port)")
    p.add_argument("--drop-pct", type=float, default=0.0, help="test impairment: drop this %% of probes")
    p.add_argument("--delay-ms", type=float, default=0.0, help="test impairment: delay each probe this long")
    p.add_argument("--seed", type=int, default=None, help="seed the drop choice (repeatable tests)")
    args = p.parse_args(argv)
    try:
        reflector = Reflector(args.host, args.port, args.drop_pct, args.delay_ms, args.seed).start()
    except (OSError, ValueError) as exc:
        print(f"reflector: cannot start on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    # Readiness line for supervisors and tests (they wait for it instead of sleeping).
    print(f"reflector listening on {args.host}:{reflector.port} drop_pct={args.drop_pct:g} "
          f"delay_ms={args.delay_ms:g}", flush=True)
    done.wait()
    reflector.stop()
    print(f"reflector stopped: received={reflector.received} reflected={reflector.reflected} "
          f"dropped={reflector.dropped}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
