"""Loss under load: STAMP probes (RFC 8762) to the test server's reflector, idle and while the test runs.

Why probes and not the test's own TCP retransmissions: any TCP test loses packets at a full drop-tail
queue, by design (it is how loss-based congestion control finds the rate; BBR overshoots a shallow
buffer too), and how much depends on the sender's algorithm, not only on the line. For a download the
sender is the server, whose counters the agent cannot read. A light stream of small UDP packets
beside the test (`interval_s` apart, full-size: ~1.2 Mbit/s) waits in the same queue as the office's calls would
and is lost when they would be: that is the loss a line inflicts under load, measured the same way in
both directions and before the test on the idle line. During a download the replies cross the loaded
downstream queue, during an upload the probes cross the loaded upstream one, so a round trip lost
under one direction's load is that direction's loss (the other way carries only acknowledgements).
The upload's own retransmitted share is reported beside it (`retrans_up_pct`, tcpinfo.py).

A reply later than `reply_timeout_s` counts as lost (a call would have dropped it too). When nothing
answers (no reflector at that port, refused or silent), the figures are None with the reason, never 0.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time

from linecheck import stamp

INTERVAL_S = 0.01
REPLY_TIMEOUT_S = 1.0
# Full-size frames (1472 bytes of UDP payload: a 1514-byte Ethernet frame over IPv4), ~1.2 Mbit/s: a queue
# limited in bytes that is full for a 1514-byte frame of the test may still take a small probe (the line
# emulator's 1 ms buffer at 100 Mbit/s dropped 25 % of the test's frames and none of 44-byte probes).
PROBE_BYTES = 1472


class LossProber(threading.Thread):
    """Sends sequenced STAMP packets every `interval_s` until stop(); keeps send and reply times."""

    def __init__(self, host: str, port: int = stamp.DEFAULT_PORT, interval_s: float = INTERVAL_S,
                 reply_timeout_s: float = REPLY_TIMEOUT_S) -> None:
        super().__init__(daemon=True, name="loss-prober")
        self.host, self.port, self.interval_s, self.reply_timeout_s = host, port, interval_s, reply_timeout_s
        self.probe_bytes = PROBE_BYTES if ":" not in host else PROBE_BYTES - 20  # IPv6's header is 20 bytes longer
        self.sent_at: list[float] = []  # index = sequence number
        self.replied_at: dict[int, float] = {}
        self.refused = False
        self._halt = threading.Event()
        self._sock: socket.socket | None = None

    def run(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.connect((self.host, self.port))  # connected: an ICMP port unreachable surfaces as ECONNREFUSED
        except OSError:
            self.refused = True
            return
        sock.setblocking(False)
        next_send = time.monotonic()
        last_send = next_send
        with sock:
            while True:
                now = time.monotonic()
                sending = not self._halt.is_set()
                if not sending and (now - last_send >= self.reply_timeout_s or self.answered_all()):
                    break
                if sending and now >= next_send:
                    seq = len(self.sent_at)
                    self.sent_at.append(now)
                    last_send = now
                    try:
                        sock.send(stamp.pack_sender(seq, stamp.ntp_now(), self.probe_bytes))
                    except ConnectionRefusedError:
                        self.refused = True
                    except OSError:
                        pass  # e.g. no route for a moment: the probe is lost like any other
                    next_send += self.interval_s
                wake = next_send if sending else last_send + self.reply_timeout_s
                ready, _, _ = select.select([sock], [], [], max(0.0, min(wake - time.monotonic(), 0.05)))
                if ready:
                    self._receive(sock)

    def _receive(self, sock: socket.socket) -> None:
        for _ in range(1000):  # a reflector flooding us must not hold the loop
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ECONNREFUSED:
                    self.refused = True
                return
            got = time.monotonic()
            try:
                seq = stamp.unpack_reflected(data).sender_seq
            except ValueError:
                continue
            if 0 <= seq < len(self.sent_at) and seq not in self.replied_at:
                self.replied_at[seq] = got

    def answered_all(self) -> bool:
        return len(self.replied_at) >= len(self.sent_at)

    def stop(self) -> None:
        """Stop sending; wait for replies still on their way (up to `reply_timeout_s`)."""
        self._halt.set()
        self.join(self.reply_timeout_s + 1)

    def loss_pct(self, t0: float, t1: float) -> tuple[float | None, int, str | None]:
        """(lost %, probes sent, why None) for the probes sent between t0 and t1."""
        seqs = [i for i, t in enumerate(list(self.sent_at)) if t0 <= t <= t1]
        if not seqs:
            return None, 0, "no loss probe was sent in the window"
        if not self.replied_at:
            why = "refused" if self.refused else "no reply"
            return None, len(seqs), f"the STAMP reflector at {self.host}:{self.port} did not answer ({why})"
        lost = sum(1 for i in seqs if self.replied_at.get(i, float("inf")) - self.sent_at[i] > self.reply_timeout_s)
        return 100.0 * lost / len(seqs), len(seqs), None


def idle_loss(host: str, port: int, seconds: float = 1.0,
              interval_s: float = 0.005) -> tuple[float | None, int, str | None]:
    """Loss of the same probes on the idle line, just before the test: 200 in a second, so that a line
    losing 1 % of frames each way (2 % of round trips) loses none of them only 1.8 % of the time."""
    prober = LossProber(host, port, interval_s)
    prober.start()
    t0 = time.monotonic()
    time.sleep(seconds)  # probes are sent by the thread meanwhile: the sampling period itself
    prober.stop()
    return prober.loss_pct(t0, t0 + seconds)
