"""Ingest's connection to its broker as a state a person can read: connected, or why not.

paho retries a lost or never-made connection on its own, silently (its failures are DEBUG). A collector
started against a broker that is not there used to run for ever saying nothing while no result
arrived. This keeps the state, the address and the last error, logs once per change of state (not
once per retry: paho retries every 1-30 s), and feeds /healthz and /metrics.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("collector.ingest")

CONNECTING, CONNECTED, UNREACHABLE, REFUSED, DISCONNECTED = (
    "connecting", "connected", "unreachable", "refused", "disconnected")


@dataclass(frozen=True)
class LinkState:
    state: str
    address: str  # host:port
    error: str  # the last failure in words; "" while connected
    failures: int  # connection attempts that failed since this process started
    down_s: float  # seconds without a connection (0 while connected)

    @property
    def problem(self) -> str | None:
        """One line for /healthz, or None while connected."""
        if self.state == CONNECTED:
            return None
        if self.state == CONNECTING:
            return f"broker disconnected: connecting to {self.address}"
        return f"broker disconnected: {self.address} {self.state}: {self.error}"


def describe(exc: BaseException | None) -> str:
    """An OSError from connecting, in words: 'Connection refused', 'timed out', 'Name or service not known'."""
    if exc is None:
        return "connection failed"
    if isinstance(exc, TimeoutError):
        return "timed out (nothing answered; a firewall may drop the packets)"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).splitlines()[0][:300]


class BrokerLink:
    """Fed by paho's callbacks (its network thread), read by the HTTP thread."""

    def __init__(self, host: str, port: int):
        self.address = f"{host}:{port}"
        self._lock = threading.Lock()
        self._state, self._error = CONNECTING, ""
        self._failures = 0
        self._down_since: float | None = time.monotonic()

    def snapshot(self) -> LinkState:
        with self._lock:
            down = 0.0 if self._down_since is None else time.monotonic() - self._down_since
            return LinkState(self._state, self.address, self._error, self._failures, down)

    def connect_failed(self) -> None:
        """paho's on_connect_fail: called inside its `except OSError`, so the error is the one being handled."""
        self._change(UNREACHABLE, describe(sys.exc_info()[1]), failed=True)

    def refused(self, reason: object) -> None:
        """The broker answered and said no (CONNACK with a failure): credentials, certificate, client id."""
        self._change(REFUSED, f"{reason} (check mqtt.username, mqtt.password_file and the client "
                              "certificate in the collector's config)", failed=True)

    def connected(self) -> None:
        self._change(CONNECTED, "")

    def disconnected(self, reason: object) -> None:
        with self._lock:
            if self._state in (REFUSED, UNREACHABLE):  # paho reports the end of a failed attempt too
                return
        self._change(DISCONNECTED, str(reason))

    def _change(self, state: str, error: str, failed: bool = False) -> None:
        with self._lock:
            if failed:
                self._failures += 1
            if (state, error) == (self._state, self._error):
                return
            before, down_since = self._state, self._down_since
            self._state, self._error = state, error
            if state == CONNECTED:
                self._down_since = None
            elif down_since is None:
                self._down_since = time.monotonic()
            failures = self._failures
        if state == CONNECTED:
            if before == CONNECTING or down_since is None:
                log.info("collector connected to the broker at %s", self.address)
            else:
                log.info("collector connected to the broker at %s after %.0f s without it (%d failed attempts)",
                            self.address, time.monotonic() - down_since, failures)
        elif state == DISCONNECTED:
            log.warning("collector lost the broker at %s (%s); no results arrive until it reconnects "
                        "(paho retries every 1-30 s)", self.address, error)
        elif state == REFUSED:
            log.error("the broker at %s refused the collector: %s; no results arrive until this is fixed",
                      self.address, error)
        else:
            log.error("cannot reach the broker at %s: %s; no results arrive until it is reachable "
                      "(retrying every 1-30 s; check mqtt.host and mqtt.port in the collector's config)",
                      self.address, error)
