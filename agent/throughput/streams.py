"""Load-generating HTTP/1.1 connections to a linecheck-testserver, built for speed.

A download stream asks for large bodies on one keep-alive connection and reads them with
recv_into a preallocated buffer (no allocation per read); an upload stream sends bodies with
sendfile(2) from the same kind of random in-memory payload the server uses (no copy in Python).
Each runs in its own thread: the GIL is released inside every syscall, so a few threads move
more than 10 Gbit/s. Download progress is counted on receipt; upload progress is what the
server acknowledged and download progress what the kernel received (TCP_INFO, read by the
sampler), not what sits in socket buffers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from agent.throughput import sizing, tcpinfo
from agent.throughput.errors import MeasurementFailed, ServerBusy
from linecheck.throughput import protocol as p
from linecheck.throughput.payload import Payload

RECV_BUFFER = 4 * 1024 * 1024
REQUEST_BYTES = p.REQUEST_BYTES  # one download/upload request; the connection is reused
CONNECT_TIMEOUT_S = 5.0
# Error answers, latency probes and the admission check are small; a bigger announced body is a
# server that is broken or hostile, and reading it would cost the gateway's memory.
SMALL_BODY_MAX = 64 * 1024


class HTTPStatusError(MeasurementFailed):
    def __init__(self, status: int, body: bytes) -> None:
        text = p.error_text(body)
        super().__init__(f"server answered HTTP {status}: {text}" if text else f"server answered HTTP {status}")
        self.status_code = status
        self.text = text


def raise_for(status: int, body: bytes) -> None:
    if status == p.BUSY:
        text = HTTPStatusError(status, body).text or "at its concurrency limit"
        raise ServerBusy(text if text.startswith(p.BUSY_ERROR) else f"{p.BUSY_ERROR}: {text}")
    if status != p.OK:
        raise HTTPStatusError(status, body)


def connect(host: str, port: int, direction: str = "down", buffer_bytes: int | None = None) -> socket.socket:
    """A blocking TCP connection; with `buffer_bytes`, its buffer for `direction` is sized before the
    handshake (sizing.apply_buffer), which fixes the window scale."""
    try:
        if buffer_bytes is None:
            sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        else:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sizing.apply_buffer(sock, direction, buffer_bytes)
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect(address)
            except OSError:
                sock.close()
                raise
    except OSError as exc:
        raise MeasurementFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    sock.settimeout(None)  # blocking: sendfile needs it; the controller unblocks by shutdown()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _until(sock: socket.socket, deadline: float | None) -> None:
    """Give the next recv only what is left of `deadline` (a socket timeout alone is per recv: a
    server sending one byte at a time would never trip it)."""
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise MeasurementFailed("server too slow: no complete answer within the time allowed")
    sock.settimeout(left)


def content_length(headers: dict[str, str]) -> int:
    text = headers.get("content-length", "0")
    if not text.isdigit():  # also refuses a negative length
        raise MeasurementFailed(f"server sent an invalid Content-Length: {text[:40]!r}")
    return int(text)


def read_head(sock: socket.socket, buf: memoryview,
              deadline: float | None = None) -> tuple[int, dict[str, str], memoryview]:
    """Read a response head, by `deadline` if given; returns (status, headers, body bytes already received)."""
    have = 0
    while True:
        _until(sock, deadline)
        n = sock.recv_into(buf[have:], len(buf) - have)
        if n == 0:
            raise MeasurementFailed("server closed the connection before answering")
        have += n
        end = bytes(buf[: min(have, 65536)]).find(b"\r\n\r\n")
        if end >= 0:
            break
        if have >= 65536:
            raise MeasurementFailed("server sent an oversized response head")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError) as exc:
        raise MeasurementFailed(f"not an HTTP response: {lines[0][:80]!r}") from exc
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, buf[end + 4: have]


def read_small_body(sock: socket.socket, buf: memoryview, headers: dict[str, str], already: memoryview,
                    deadline: float | None = None) -> bytes:
    length = content_length(headers)
    if length > SMALL_BODY_MAX:
        raise MeasurementFailed(f"server announced a {length}-byte answer where a small one was expected")
    body = bytearray(already[:length])
    while len(body) < length:
        _until(sock, deadline)
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


class Stream(threading.Thread):
    """One load-generating connection. `error` is set if it stopped for a reason other than stop()."""

    direction = "down"

    def __init__(self, host: str, port: int, test_id: str, stop: threading.Event, token: str | None,
                 buffer_bytes: int | None = None) -> None:
        super().__init__(daemon=True)
        self.host, self.port, self.test_id, self.stop_event, self.token = host, port, test_id, stop, token
        self.buffer_bytes = buffer_bytes  # sizing.Sizing.buffer_bytes: None leaves it to autotuning
        self.sock: socket.socket | None = None
        self.error: MeasurementFailed | None = None
        self.received = 0  # download body bytes received (updated by this thread only)
        self._last_count = 0
        self.connected = threading.Event()


    def progress(self) -> int:
        """Bytes delivered so far: received (download) or acknowledged by the server (upload)."""
        return self.received

    def rtt_ms(self) -> float | None:
        return tcpinfo.rtt_ms(self.sock) if self.sock else None

    def run(self) -> None:
        try:
            self.sock = connect(self.host, self.port, self.direction, self.buffer_bytes)
            self.connected.set()
            self.transfer(self.sock)
        except MeasurementFailed as exc:
            if not self.stop_event.is_set():
                self.error = exc
        except OSError as exc:
            if not self.stop_event.is_set():
                self.error = MeasurementFailed(f"connection to {self.host}:{self.port} broke: {exc}")
        finally:
            self.connected.set()

    def transfer(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def halt(self) -> None:
        """Unblock the thread at once (called by the controller after setting the stop event)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)


class DownloadStream(Stream):
    def progress(self) -> int:
        if self.sock is None:
            return 0
        got = tcpinfo.bytes_received(self.sock)
        if got is None:  # socket closed (keep the last count), or a kernel before 4.1
            return self._last_count or self.received
        self._last_count = got
        return got

    def transfer(self, sock: socket.socket) -> None:
        buf = memoryview(bytearray(RECV_BUFFER))
        request = p.raw_request("GET", p.download_target(REQUEST_BYTES, self.test_id), self.host,
                                p.auth_header(self.token))
        while not self.stop_event.is_set():
            sock.sendall(request)
            status, headers, early = read_head(sock, buf)
            if status != p.OK:
                raise_for(status, read_small_body(sock, buf, headers, early))
            announced = content_length(headers)
            if announced == 0:  # answering a download with nothing would make a zero rate out of a good line
                raise MeasurementFailed("server answered the download with an empty body")
            left = announced - len(early)
            self.received += len(early)
            while left > 0:
                n = sock.recv_into(buf, min(left, RECV_BUFFER))
                if n == 0:
                    if self.stop_event.is_set():
                        return
                    raise MeasurementFailed("server ended the download early (its byte or time cap?)")
                self.received += n
                left -= n
            if headers.get("connection", "").lower() == "close":
                raise MeasurementFailed("server closed the connection (its byte or time cap?)")


class UploadStream(Stream):
    direction = "up"

    def __init__(self, *args: object, payload: Payload, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.payload = payload
        self.sent = 0  # data bytes put on the wire, retransmissions included (tcpinfo.SendCounters)
        self.retrans = 0

    def progress(self) -> int:
        """What the server holds: acknowledged plus selectively acknowledged (tcpinfo.send_counters)."""
        if self.sock is None:
            return 0
        c = tcpinfo.send_counters(self.sock)
        if c is None:
            return self._last_count
        self._last_count = max(self._last_count, c.delivered)  # SACKed data the receiver dropped (reneging) may leave
        if c.sent is not None and c.retrans is not None:
            self.sent, self.retrans = c.sent, c.retrans
        return self._last_count

    def transfer(self, sock: socket.socket) -> None:
        buf = memoryview(bytearray(64 * 1024))
        head = p.raw_request("POST", p.upload_target(self.test_id), self.host,
                             {**p.auth_header(self.token), "Content-Type": p.CONTENT_TYPE_BYTES,
                              "Content-Length": str(REQUEST_BYTES)})
        fd = sock.fileno()
        while not self.stop_event.is_set():
            sock.sendall(head)
            sent = 0
            while sent < REQUEST_BYTES:
                if self.stop_event.is_set():
                    return
                offset = sent % self.payload.size
                n = min(REQUEST_BYTES - sent, self.payload.size - offset, 4 * 1024 * 1024)
                try:
                    done = os.sendfile(fd, self.payload.fd, offset, n)
                except (BrokenPipeError, ConnectionResetError):
                    done = 0
                if done == 0:
                    if self.stop_event.is_set():
                        return
                    # The server may have refused us (busy, cap) and closed: read why.
                    try:
                        status, headers, early = read_head(sock, buf)
                    except (MeasurementFailed, OSError):
                        raise MeasurementFailed("server closed the upload connection") from None
                    raise_for(status, read_small_body(sock, buf, headers, early))
                    raise MeasurementFailed("server ended the upload early (its byte or time cap?)")
                sent += done
            status, headers, early = read_head(sock, buf)
            body = read_small_body(sock, buf, headers, early)
            raise_for(status, body)
            if headers.get("connection", "").lower() == "close":
                raise MeasurementFailed("server closed the connection (its byte or time cap?)")
