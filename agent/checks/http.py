"""http: DNS, connect, TLS handshake and time to first byte, and the status, for configured URLs.

Each phase is timed separately on the standard library's own client (socket, ssl, http.client),
so a slow resolver, a slow TCP path and a slow TLS server are told apart. Redirects are not
followed: the first answer is what is measured (a redirect to a portal is `service_state`'s
business). `fetch` is shared with service_state.

A server is not trusted to be quick or honest: `request_timeout_s` is a deadline for the whole
fetch (a server dripping one byte a second cannot hold it longer), the body read is bounded by
`max_body_bytes`, and a malformed or short answer is a failure with the phase and the cause.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.findings import finding
from agent.reasons import because, step
from linecheck.i18n.phrases import Phrase
from linecheck.wire import MetricValue, Status


class HttpConfig(CheckConfig):
    urls: list[str] = Field(default_factory=lambda: ["https://www.baidu.com/"], min_length=1,
                            description="http:// or https:// URLs fetched with GET")
    request_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per URL, all phases together")
    ttfb_degraded_ms: float = Field(default=1000.0, gt=0, description="Time to first byte at or above this: degraded")
    ca_file: str | None = Field(default=None, description="Extra CA bundle (PEM) to trust, e.g. the carrier's")
    max_body_bytes: int = Field(default=1_000_000, ge=0, description="Read at most this much of the body")
    timeout_s: float = 60.0


@dataclass
class Fetch:
    url: str
    error: str | None = None  # phase and cause when the fetch did not complete
    failed_phase: str | None = None  # dns | connect | tls | http | body: where it stopped (no string matching)
    status_code: int | None = None
    location: str | None = None
    body: bytes = b""
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    total_ms: float | None = None


def getaddrinfo(host: str, port: int | None, timeout_s: float) -> list:
    """socket.getaddrinfo (the system's resolver, as applications see it) within `timeout_s`.

    glibc's resolver has its own timeouts (5 s per try by default) that ignore ours, so it runs in
    a daemon thread that is abandoned, not waited for, when it overruns.
    """
    result: list = []
    failure: list[OSError] = []

    def resolve() -> None:
        try:
            result.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failure.append(exc)

    worker = threading.Thread(target=resolve, name=f"resolve-{host}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"no answer for {host} within {timeout_s:g} s")
    if failure:
        raise failure[0]
    return result


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000.0, 3)


class _Deadline:
    """Ends a fetch at its deadline whatever the server does.

    A socket timeout bounds each recv, not the fetch: a server sending one byte a second keeps
    every recv under the timeout and held a URL for minutes. At the deadline this shuts the socket
    down (through a duplicate of its descriptor, which works under TLS too), so whatever read is
    in progress returns at once, and `expired` tells the fetch why."""

    def __init__(self, sock: socket.socket, at: float):
        self._watch = sock.dup()
        self.expired = False
        self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        with contextlib.suppress(OSError):  # already closed by the fetch: nothing to end
            self._watch.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        self._watch.close()


def _remaining(deadline: float) -> float:
    return max(0.001, deadline - time.monotonic())


def fetch(url: str, timeout_s: float, ca_file: str | None = None, max_body: int = 1_000_000) -> Fetch:
    """GET `url` once, timing each phase, all of it within `timeout_s` (a total deadline, not a
    per-read timeout), reading at most `max_body` bytes of the body. Never raises for network
    trouble: `error` says what failed, including "deadline" when the server was too slow."""
    parts = urlsplit(url)
    out = Fetch(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        out.error = "not an http(s) URL"
        return out
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        t = time.monotonic()
        infos = getaddrinfo(host, port, timeout_s)
        out.dns_ms = _ms(t)
    except OSError as exc:
        out.error, out.failed_phase = f"dns: {exc}", "dns"
        return out
    family, _type, proto, _canon, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    guard = _Deadline(sock, deadline)
    phase = "connect"
    try:
        sock.settimeout(_remaining(deadline))
        t = time.monotonic()
        try:
            sock.connect(addr)
        except OSError as exc:
            out.error = f"connect: {exc}" if str(exc) else f"connect: {type(exc).__name__}"
            out.failed_phase = phase
            return out
        out.connect_ms = _ms(t)
        if parts.scheme == "https":
            phase = "tls"
            context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            t = time.monotonic()
            try:
                sock.settimeout(_remaining(deadline))
                sock = context.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as exc:
                out.error, out.failed_phase = f"tls: {exc}", phase
                return out
            out.tls_ms = _ms(t)
        phase = "http"
        sock.settimeout(_remaining(deadline))
        conn = http.client.HTTPConnection(host, port, timeout=_remaining(deadline))
        conn.sock = sock  # the connection is already made (and timed); http.client only speaks HTTP on it
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        t = time.monotonic()
        try:
            conn.request("GET", path, headers={"Host": parts.netloc, "User-Agent": "linecheck-agent",
                                               "Connection": "close"})
            response = conn.getresponse()  # returns once the status line and headers are in
            out.ttfb_ms = _ms(t)
            out.status_code = response.status
            out.location = response.getheader("Location")
            phase = "body"
            out.body = response.read(max_body)
            # read(n) returns short, without IncompleteRead, when the server closes before its
            # Content-Length: a server lying about its length must not pass as a complete answer.
            if response.length and len(out.body) < max_body:
                out.error = (f"http: IncompleteRead: the server closed after {len(out.body)} body bytes, "
                             f"{response.length} short of its Content-Length")
                out.failed_phase = phase
                return out
        except (OSError, http.client.HTTPException, ValueError) as exc:
            out.error, out.failed_phase = f"http: {type(exc).__name__}: {exc}", phase
            return out
        out.total_ms = _ms(started)
        return out
    finally:
        guard.close()
        sock.close()
        if guard.expired:  # whatever the read returned (a close-delimited body cut short looks complete)
            out.total_ms = None
            out.error = f"{phase}: deadline: no complete answer within {timeout_s:g} s ({phase} phase)"
            out.failed_phase = phase


def metrics_of(f: Fetch) -> dict[str, MetricValue]:
    return {"dns_ms": f.dns_ms, "connect_ms": f.connect_ms, "tls_handshake_ms": f.tls_ms, "ttfb_ms": f.ttfb_ms,
            "total_ms": f.total_ms, "status_num": f.status_code,
            "body_bytes": len(f.body) if f.status_code is not None else None}


def failure(f: Fetch) -> Phrase:
    """Why a fetch failed: the phase it stopped in (worded for the reader) and the raw error after it."""
    if f.failed_phase is None:
        return because("http_not_url", url=f.url)
    detail = (f.error or "").split(": ", 1)[-1]
    return because("http_failed", url=f.url, phase=f.failed_phase, diagnostic=detail)


def judge(cfg: HttpConfig, f: Fetch) -> Measurement:
    metrics = metrics_of(f)
    if f.error:
        return Measurement(Status.FAILED, failure(f), metrics, f.url,
                           [finding("http_failure", "warning", "http", f"{f.url} cannot be fetched ({f.error}).",
                                    {"url": f.url, "error": f.error.split(":")[0]})])
    assert f.status_code is not None
    if f.status_code >= 400:
        return Measurement(Status.FAILED, because("http_status", url=f.url, status=f.status_code), metrics, f.url,
                           [finding("http_failure", "warning", "http", f"{f.url} answers with error {f.status_code}.",
                                    {"url": f.url, "status_code": f.status_code})])
    if f.ttfb_ms is not None and f.ttfb_ms >= cfg.ttfb_degraded_ms:
        return Measurement(Status.DEGRADED, because("http_slow", url=f.url, ttfb_ms=f.ttfb_ms), metrics, f.url)
    return Measurement(Status.OK, None, metrics, f.url)


def run(cfg: HttpConfig, ctx: CheckContext) -> list[Measurement]:
    out = []
    for url in cfg.urls:
        ctx.progress(step("http_get", url=url))
        budget = min(cfg.request_timeout_s, max(0.1, ctx.remaining()))
        out.append(judge(cfg, fetch(url, budget, cfg.ca_file, cfg.max_body_bytes)))
    return out


SPEC = CheckSpec(kind="http", config=HttpConfig, run=run, title="HTTP(S) timing")
