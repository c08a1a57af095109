"""Slow down password guessing on the console's sign-in.

Failures are counted per (user, client address) and per client address over a sliding window.
Keying on the pair, not the user alone, means a guesser cannot lock a real user out from the
user's own address; the per-address count stops one address trying many users. Counts live in
the process: with several collectors behind a balancer each one counts its own (the limit is
then at most N times higher), which still makes online guessing of a decent password hopeless.
API tokens need no throttle: they carry 256 random bits.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ADDRESS_LEN = 64  # a forwarded "address" is text someone sent: it becomes a dict key, so keep it short


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """'10.0.0.5', '10.0.0.0/24', '::1' -> networks; ValueError names the value that is none of these."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def _trusted(host: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return any(address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The address to count sign-in failures against.

    X-Forwarded-For is anyone's to write, so it only counts when the TCP peer is one of our trusted
    proxies; then each proxy appended the address it saw, and the right-most entry that is not a trusted
    proxy is the client as our own proxies saw it (entries left of it are the client's own claims).
    Without trusted proxies (the default) the peer is the client and the header is ignored.
    """
    if not peer:
        return "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer[:MAX_ADDRESS_LEN]
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop[:MAX_ADDRESS_LEN]
    return (hops[0] if hops else peer)[:MAX_ADDRESS_LEN]


def request_address(request: Any) -> str:
    """`client_address` of a Starlette request, with the app's configured trusted proxies."""
    trusted = getattr(request.app.state, "trusted_proxies", ())
    return client_address(request.client.host if request.client else None,
                          request.headers.getlist("x-forwarded-for"), trusted)


@dataclass(frozen=True)
class ThrottleLimits:
    per_user_and_address: int = 5
    per_address: int = 30
    window_s: float = 900.0
    max_keys: int = 100_000  # memory bound under a spray of made-up user names


class LoginThrottle:
    def __init__(self, limits: ThrottleLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or ThrottleLimits()
        self._clock = clock
        self._failures: dict[tuple[str, ...], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until this sign-in may be tried again; 0 when it may be tried now."""
        now = self._clock()
        with self._lock:
            waits = [self._wait(("u", user, address), self.limits.per_user_and_address, now),
                     self._wait(("a", address), self.limits.per_address, now)]
        return max(waits)

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self.limits.max_keys:
                self._forget_expired(now)
            for key in (("u", user, address), ("a", address)):
                if key in self._failures or len(self._failures) < self.limits.max_keys:
                    self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._failures.pop(("u", user, address), None)

    def _wait(self, key: tuple[str, ...], limit: int, now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self.limits.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        # Blocked until enough of the failures leave the window to get back under the limit.
        return times[len(times) - limit] + self.limits.window_s - now

    def _forget_expired(self, now: float) -> None:
        horizon = now - self.limits.window_s
        for key in [k for k, v in self._failures.items() if not v or v[-1] <= horizon]:
            del self._failures[key]
