"""The HTTP measurement server: throughput endpoints for three kinds of client (protocol.py).

The carrier's linecheck-testserver (testserver/http.py adds its speed test page at `/`) and the
gateway's LAN test server (agent/lan/server.py adds its page and API) both run this one:

    from linecheck.throughput.server import ThroughputServer, Limits
    with ThroughputServer("0.0.0.0", 8070, Limits(max_tests=2)) as srv:   # serves in a thread
        print(srv.url)

Endpoints (all answer CORS, so a browser page from another origin can use them):
  linecheck engine   GET /download?bytes=N   POST /upload   GET /latency   GET /status
  LibreSpeed         GET [backend/]garbage.php?ckSize=N   GET|POST [backend/]empty.php
                     GET [backend/]getIP.php
  Ookla legacy/mini  GET /speedtest/random{N}x{N}.jpg   GET|POST /speedtest/upload.php
                     GET /speedtest/latency.txt   GET / (mini page naming the upload extension)

Downloads are sendfile(2) slices of one in-memory random payload (no allocation per request);
uploads are read into one buffer per connection and discarded. Every transfer is admitted and
metered by `Sessions` (max tests at once, bytes and seconds per test, optional token).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import struct
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from linecheck.throughput import protocol as p
from linecheck.throughput.payload import Payload, send
from linecheck.throughput.protocol import ookla_image_bytes
from linecheck.throughput.saturation import Monitor, reasons, sample
from linecheck.throughput.sessions import Limits, Refused, Sessions, TestSession

__all__ = ["Limits", "MeasurementHandler", "ThroughputServer", "ookla_image_bytes"]

SINK_BUFFER = 1024 * 1024
SEND_STEP = 1024 * 1024  # bytes per sendfile step: caps are checked and the server's rate counted this often
SOCKET_TIMEOUT_S = 30  # a peer silent this long mid-transfer is gone
_NO_STORE = "no-store, no-cache, must-revalidate, max-age=0, s-maxage=0"


def _route(path: str) -> str:
    if path.startswith(p.LIBRESPEED_PREFIX + "/"):
        path = path[len(p.LIBRESPEED_PREFIX):]
    return path


class MeasurementHandler(BaseHTTPRequestHandler):
    """The measurement endpoints. Subclass it and pass it as ThroughputServer(handler=...) to serve
    more routes with the same admission, limits and transfers (the agent's LAN test does)."""

    protocol_version = "HTTP/1.1"
    server_version = "linecheck-testserver"
    sys_version = ""
    server: _Server

    # --- plumbing ------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        # Blocking socket (sendfile needs it) with kernel-level timeouts for dead peers.
        self.connection.settimeout(None)
        tv = struct.pack("ll", SOCKET_TIMEOUT_S, 0)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sink: memoryview | None = None

    def handle(self) -> None:
        try:
            super().handle()
        except (OSError, ValueError):  # peer vanished or timed out: nothing to answer
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _headers(self, status: int, length: int, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", _NO_STORE)
        self.send_header("Access-Control-Allow-Origin", "*")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _small(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
               extra: dict[str, str] | None = None) -> None:
        self._headers(status, len(body), ctype, extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._small(status, json.dumps(obj).encode(), "application/json")

    def _refuse(self, exc: Refused) -> None:
        self.close_connection = True  # an unread request body must not be parsed as a request
        extra = {"Retry-After": str(int(self.server.sessions.limits.idle_s) + 1)} if exc.status == p.BUSY else None
        self._small(exc.status, p.error_body(exc.error, exc.detail), "application/json", extra)

    def _query(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        return _route(parts.path), {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def _test_key(self, query: dict[str, str]) -> str:
        named = query.get(p.TEST_PARAM) or self.headers.get(p.TEST_HEADER)
        return f"test:{named[:p.TEST_ID_MAX]}" if named else f"client:{self.client_address[0]}"

    def _named_test(self, query: dict[str, str]) -> str | None:
        named = query.get(p.TEST_PARAM) or self.headers.get(p.TEST_HEADER)
        return f"test:{named[:p.TEST_ID_MAX]}" if named else None

    def _authorised(self, query: dict[str, str]) -> bool:
        token = self.server.sessions.limits.token
        if token is None:
            return True
        given = query.get(p.TOKEN_PARAM) or self.headers.get(p.AUTH_HEADER, "").removeprefix(p.BEARER).strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def _admit(self, query: dict[str, str]) -> TestSession:
        if not self._authorised(query):
            raise Refused(p.UNAUTHORISED, "unauthorised",
                          f"this server needs a token ({p.AUTH_HEADER}: {p.BEARER}... or ?{p.TOKEN_PARAM}=)")
        return self.server.sessions.begin(self._test_key(query))

    # --- transfers -----------------------------------------------------------------------------
    def _download(self, session: TestSession, wanted: int, ctype: str, extra: dict[str, str] | None = None) -> None:
        sessions = self.server.sessions
        count = sessions.budget(session, wanted)
        if count < wanted:
            self.close_connection = True  # the client will see fewer bytes than it asked for
        self._headers(p.OK, count, ctype, extra)
        if self.command == "HEAD":
            return
        self.wfile.flush()
        fd = self.connection.fileno()
        done = 0
        while done < count:
            if sessions.expired(session):
                self.close_connection = True
                break
            step = min(count - done, SEND_STEP)
            sent = send(fd, self.server.payload, step)
            session.add(sent)
            done += sent
            if sent < step:
                self.close_connection = True
                break

    def _drain(self, session: TestSession) -> int:
        """Read and discard the request body (Content-Length or chunked); returns bytes read."""
        if self._sink is None:
            self._sink = memoryview(bytearray(SINK_BUFFER))
        sessions = self.server.sessions
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._drain_chunked(session)
        length = int(self.headers.get("Content-Length") or 0)
        allowed = sessions.budget(session, length)
        got = 0
        while got < allowed:
            n = self.rfile.readinto1(self._sink[: min(SINK_BUFFER, allowed - got)])
            if not n:
                break
            got += n
            session.add(n, "up")
            if sessions.expired(session):
                break
        if got < length:
            self.close_connection = True
        return got

    def _drain_chunked(self, session: TestSession) -> int:
        assert self._sink is not None
        got = 0
        while True:
            size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return got
            if self.server.sessions.budget(session, size) < size or self.server.sessions.expired(session):
                self.close_connection = True
                return got
            left = size
            while left:
                n = self.rfile.readinto(self._sink[: min(SINK_BUFFER, left)])
                if not n:
                    self.close_connection = True
                    return got
                left -= n
            got += size
            session.add(size, "up")
            self.rfile.readline(8)

    # --- verbs ---------------------------------------------------------------------------------
    def do_OPTIONS(self) -> None:  # noqa: N802 - CORS preflight of a browser client
        self._small(204, b"", extra={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": f"Content-Encoding, Content-Type, {p.AUTH_HEADER}, {p.TEST_HEADER}",
            "Access-Control-Max-Age": "600"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path, query = self._query()
        try:
            self._get(path, query)
        except Refused as exc:
            self._refuse(exc)

    def do_POST(self) -> None:  # noqa: N802
        path, query = self._query()
        try:
            if path not in p.UPLOAD_PATHS:
                self.close_connection = True
                self._json(p.NOT_FOUND, {"error": "not found", "detail": path})
                return
            session = self._admit(query)
            try:
                got = self._drain(session)
            finally:
                self.server.sessions.end(session)
            if path == p.OOKLA_UPLOAD:
                self._small(p.OK, f"size={got}".encode())
            elif path == p.LIBRESPEED_EMPTY:
                self._small(p.OK, b"")
            else:
                self._json(p.OK, {p.RECEIVED_BYTES: got})
        except Refused as exc:
            self._refuse(exc)

    def _get(self, path: str, query: dict[str, str]) -> None:
        if path == p.LATENCY:
            self._small(p.OK, p.LATENCY_ANSWER)  # not admitted: probing latency must work while a test runs
        elif path == p.OOKLA_LATENCY:
            self._small(p.OK, p.OOKLA_LATENCY_ANSWER)
        elif path == p.STATUS:
            self._json(p.OK, {**self.server.status(self._named_test(query)), "worker": self.server.worker})
        elif path == p.LIBRESPEED_GET_IP:
            self._json(p.OK, {"processedString": self.client_address[0], "rawIspInfo": ""})
        elif path in (p.OOKLA_UPLOAD, p.LIBRESPEED_EMPTY):
            self._small(p.OK, b"size=0" if path == p.OOKLA_UPLOAD else b"")
        elif path == "/" and self.server.index is not None:
            self._small(p.OK, self.server.index, "text/html; charset=utf-8")
        elif path in (p.DOWNLOAD, p.LIBRESPEED_GARBAGE) or p.OOKLA_IMAGE.match(path):
            self._serve_download(path, query)
        else:
            self._json(p.NOT_FOUND, {"error": "not found", "detail": path})

    def _serve_download(self, path: str, query: dict[str, str]) -> None:
        try:
            if path == p.DOWNLOAD:
                wanted, ctype, extra = int(query.get(p.BYTES_PARAM, "0")), p.CONTENT_TYPE_BYTES, None
                if wanted <= 0:
                    raise ValueError
            elif path == p.LIBRESPEED_GARBAGE:
                chunks = max(1, min(p.LIBRESPEED_MAX_CHUNKS, int(query.get(p.LIBRESPEED_CHUNK_PARAM, "4"))))
                wanted, ctype = chunks * p.LIBRESPEED_CHUNK_BYTES, p.CONTENT_TYPE_BYTES
                extra = {"Content-Description": "File Transfer",
                         "Content-Disposition": "attachment; filename=random.dat",
                         "Content-Transfer-Encoding": "binary", "Pragma": "no-cache"}
            else:
                m = p.OOKLA_IMAGE.match(path)
                assert m
                side = int(m.group(1))
                if not 100 <= side <= 4000 or m.group(1) != m.group(2):
                    raise ValueError
                wanted, ctype, extra = ookla_image_bytes(side), "image/jpeg", None
        except ValueError:
            self._json(p.BAD_REQUEST, {"error": "bad request", "detail": "size must be a positive integer in range"})
            return
        session = self._admit(query)
        try:
            self._download(session, wanted, ctype, extra)
        finally:
            self.server.sessions.end(session)


def status_of(sessions: Sessions, test: str | None = None) -> dict[str, Any]:
    """GET /status: the whole server's load and limits (every worker answers the same), and with
    `test` what the server knows of that test — whether it ran while the server was saturated."""
    lim = sessions.limits
    h = sessions.header
    out: dict[str, Any] = {
        "tests_running": sessions.running(), "connections": sessions.connections,
        "refused_busy": sessions.refused_busy, "refused_connections": sessions.refused_connections,
        "workers": int(h.workers), "tests_started": int(h.tests_started), "limited_tests": int(h.limited_tests),
        "load": {"out_mbps": round(h.out_bps / 1e6, 1), "in_mbps": round(h.in_bps / 1e6, 1),
                 "cpu_share": round(h.cpu_share, 3), "saturated": reasons(int(h.saturated))},
        "limits": {"max_tests": lim.max_tests, "max_connections": lim.max_connections,
                   "max_test_s": lim.max_test_s, "max_test_bytes": lim.max_test_bytes,
                   "capacity_mbps": lim.capacity_mbps, "token_required": lim.token is not None}}
    if test is not None:
        sample(sessions, time.monotonic(), force=True)  # the test's last moments count too
        out["test"] = sessions.test_report(test)
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], limits: Limits, verbose: bool = False,
                 handler: type[MeasurementHandler] = MeasurementHandler, context: Any = None,
                 index: bytes | None = None, sessions: Sessions | None = None, reuse_port: bool = False) -> None:
        # `sessions` made before forking is shared by every worker (testserver/workers.py).
        self.sessions = sessions or Sessions(limits)
        self.context = context  # whatever a handler subclass needs (its application object)
        self.index = index  # the page served at `/` (none: 404)
        self.payload = Payload(directory=tempfile.gettempdir())  # page cache: cheaper to sendfile (payload.py)
        self.verbose = verbose
        self.reuse_port = reuse_port
        self.worker = 0  # which of the server's processes this is (testserver/workers.py)
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if self.reuse_port:  # several workers listen on one port; the kernel spreads connections
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    @property
    def connections(self) -> int:
        return self.sessions.connections

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.sessions.connection_opened():
            body = p.error_body(p.BUSY_ERROR, "too many connections")
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.sessions.connection_closed()  # no thread started: nobody else will
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.sessions.connection_closed()

    def status(self, test: str | None = None) -> dict[str, Any]:
        return status_of(self.sessions, test)

    def server_close(self) -> None:
        super().server_close()
        self.payload.close()


class ThroughputServer:
    """The HTTP measurement server on host:port (port 0 = a free port), run in a background thread.

    One process; testserver/workers.py runs several of these on one port (SO_REUSEPORT) sharing
    one `Sessions` (pass `sessions` and `worker`, made before forking)."""

    def __init__(self, host: str = "0.0.0.0", port: int = p.DEFAULT_PORT, limits: Limits | None = None,
                 verbose: bool = False, handler: type[MeasurementHandler] = MeasurementHandler,
                 context: Any = None, index: bytes | None = None, sessions: Sessions | None = None,
                 worker: int = 0, reuse_port: bool = False) -> None:
        self._server = _Server((host, port), limits or Limits(), verbose, handler, context, index, sessions,
                               reuse_port)
        self._server.worker = worker
        self._monitor = Monitor(self._server.sessions, worker)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"

    def status(self, test: str | None = None) -> dict[str, Any]:
        return self._server.status(test)

    @property
    def sessions(self) -> Sessions:
        return self._server.sessions

    def serve_forever(self) -> None:
        self._monitor.start()
        try:
            self._server.serve_forever(poll_interval=0.1)
        finally:
            self._monitor.stop()

    def start(self) -> ThroughputServer:
        self._thread = threading.Thread(target=self.serve_forever, name="testserver-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> ThroughputServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
