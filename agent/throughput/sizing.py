"""How many streams, and how large their socket buffers, from the line's bandwidth-delay product.

A TCP stream cannot carry more than its window per round trip. The window is bounded by the socket
buffer, which Linux autotunes up to the third field of net.ipv4.tcp_rmem (receiving) or tcp_wmem
(sending), and only part of a buffer is window (the rest pays for the kernel's bookkeeping:
`USABLE`). To fill a line of rate R at round trip RTT the streams together need the bandwidth-delay
product BDP = R x RTT in flight, times `HEADROOM` (the queue at the bottleneck adds to the round
trip under load, and a stream repairing a loss sends less for a while). So:

    streams = ceil(BDP x HEADROOM / (limit x USABLE)), at least `start_streams`, at most `max_streams`

and when even `max_streams` would not do, each buffer is asked for explicitly (SO_SNDBUF /
SO_RCVBUF with the privileged FORCE variants, which may exceed the autotuning limit; without the
privilege the request is skipped: an unprivileged SO_RCVBUF is capped at net.core.rmem_max, often
far below the autotuning limit, and would shrink the window instead). Otherwise the buffers are left
to autotuning, which grows them as far as the BDP needs and no further.

R is the plan's rate when the agent knows it, else the ramp's estimate (the moving average so far);
RTT is the idle round trip measured before the test. Example: 1 Gbit/s at 50 ms is a 6.25 MB BDP; with
this machine's 4 MiB send-buffer limit (2 MiB of window) an upload needs 7 streams, a download
(32 MiB receive limit) the 4 it starts with.
"""

from __future__ import annotations

import contextlib
import math
import socket
from dataclasses import dataclass
from pathlib import Path

HEADROOM = 2.0
USABLE = 0.5  # share of a socket buffer that is TCP window (tcp_adv_win_scale, skb overhead)
DEFAULT_LIMIT = 4 * 1024 * 1024  # when /proc cannot be read: Linux's default tcp_wmem maximum
# SO_{SND,RCV}BUFFORCE: Linux's socket options 32 and 33, not exported by Python's socket module.
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@dataclass(frozen=True)
class Sizing:
    bdp_bytes: int
    streams: int  # streams the BDP needs (within start..max)
    buffer_bytes: int | None  # per-stream buffer to ask for; None: leave it to autotuning
    limit_bytes: int  # the autotuning limit it was judged against

    def describe(self) -> str:
        buf = "autotuned buffers" if self.buffer_bytes is None else f"{self.buffer_bytes / 2**20:.1f} MiB buffers"
        return f"BDP {self.bdp_bytes / 1e6:.2f} MB: {self.streams} streams, {buf}"


def autotune_limit(direction: str, proc: Path = Path("/proc/sys/net/ipv4")) -> int:
    """The largest buffer autotuning gives a socket: receiving (download) or sending (upload)."""
    name = "tcp_rmem" if direction == "down" else "tcp_wmem"
    try:
        return int((proc / name).read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return DEFAULT_LIMIT


def streams_for(rate_bps: float, rtt_s: float, limit_bytes: int) -> int:
    """Streams whose autotuned windows together hold HEADROOM x the BDP of `rate_bps` at `rtt_s`."""
    need = rate_bps / 8 * rtt_s * HEADROOM
    return max(1, math.ceil(need / (limit_bytes * USABLE)))


def choose(rate_bps: float | None, rtt_s: float | None, limit_bytes: int, start_streams: int,
           max_streams: int) -> Sizing | None:
    """The streams and buffers a line of `rate_bps` at `rtt_s` needs; None without both figures."""
    if not rate_bps or not rtt_s or rate_bps <= 0 or rtt_s <= 0:
        return None
    bdp = int(rate_bps / 8 * rtt_s)
    wanted = streams_for(rate_bps, rtt_s, limit_bytes)
    streams = min(max(start_streams, wanted), max_streams)
    buffer = None
    if wanted > max_streams:  # the most streams still would not hold it: larger buffers each
        buffer = math.ceil(bdp * HEADROOM / streams / USABLE)
    return Sizing(bdp, streams, buffer, limit_bytes)


def apply_buffer(sock: socket.socket, direction: str, buffer_bytes: int | None) -> bool:
    """Ask for `buffer_bytes` before connecting (the window scale is fixed by the handshake). Only the
    privileged FORCE option is used; returns whether the kernel took it."""
    if buffer_bytes is None:
        return False
    opt = SO_RCVBUFFORCE if direction == "down" else SO_SNDBUFFORCE
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, opt, buffer_bytes)
        return True
    return False
