"""The bytes a download sends: generated once, served many times without copying.

Random (incompressible) data lives in one memfd. Downloads hand slices of it to the kernel
with sendfile(2), so a response costs no Python allocation and no user-space copy, whatever its
size; the same fd serves as the upload source of the agent's engine.
"""

from __future__ import annotations

import os

from linecheck.throughput.protocol import PAYLOAD_BYTES


class Payload:
    """A read-only file descriptor holding `size` random bytes, for os.sendfile.

    By default a memfd. With `directory`, an unlinked file there instead (a memfd where that fails):
    the test server's downloads ask for one, because on a disk-backed filesystem the bytes sit in the
    page cache, and sendfile(2) from page-cache pages cost about two thirds of the CPU per byte of
    sendfile from a memfd's shmem pages on the development machine's 6.18 kernel (4 tests on
    loopback: 0.21 vs 0.27-0.31 CPU s/GB; docs/throughput.md). Where the directory is itself a
    tmpfs (/tmp on many gateways) it is shmem again: no gain, no loss.
    """

    def __init__(self, size: int = PAYLOAD_BYTES, directory: str | None = None) -> None:
        self.size = size
        self.fd = -1
        if directory is not None:
            import tempfile

            try:
                handle, path = tempfile.mkstemp(prefix="linecheck-payload-", dir=directory)
                os.unlink(path)
                self.fd = handle
            except OSError:
                self.fd = -1
        if self.fd < 0:
            try:
                self.fd = os.memfd_create("linecheck-payload", os.MFD_CLOEXEC)
            except (AttributeError, OSError):  # not Linux: an unlinked temporary file does the same
                import tempfile

                handle, path = tempfile.mkstemp(prefix="linecheck-payload-")
                os.unlink(path)
                self.fd = handle
        chunk = os.urandom(1024 * 1024)
        for _ in range(size // len(chunk)):
            os.write(self.fd, chunk)
        os.write(self.fd, chunk[: size % len(chunk)])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def send(sock_fd: int, payload: Payload, count: int, max_call: int = 4 * 1024 * 1024) -> int:
    """Send `count` payload bytes on a blocking socket; returns bytes sent (less if the peer left).

    Each sendfile call is bounded so the caller regains control often enough to enforce caps.
    """
    sent_total = 0
    while sent_total < count:
        offset = sent_total % payload.size
        n = min(count - sent_total, payload.size - offset, max_call)
        try:
            sent = os.sendfile(sock_fd, payload.fd, offset, n)
        except (BrokenPipeError, ConnectionResetError, BlockingIOError, TimeoutError):
            break
        if sent == 0:
            break
        sent_total += sent
    return sent_total
