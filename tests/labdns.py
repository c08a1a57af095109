"""A tiny authoritative DNS responder for the line lab (dnspython), with the faults a resolver shows.

Modes, for names not in `records`:
  nxdomain  NXDOMAIN (the normal answer for an unknown name)
  servfail  SERVFAIL for every query (a broken recursive resolver)
  silent    never answers (a dead or unreachable resolver: the client times out)
  hijack    answers every query, known names included, with `portal` (a suspended line's DNS)
Names in `records` are answered normally in the nxdomain mode. `mode` may be changed while serving.
`delay_s` holds every answer that long (a slow but working resolver: an overloaded or distant one);
it may be changed while serving too.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class LabDNS:
    def __init__(self, host: str, port: int = 53, records: dict[str, list[str]] | None = None,
                 mode: str = "nxdomain", portal: str | None = None, delay_s: float = 0.0):
        if mode not in ("nxdomain", "servfail", "silent", "hijack"):
            raise ValueError(f"unknown mode {mode!r}")
        self.host, self.port, self.mode, self.portal = host, port, mode, portal
        self.delay_s = delay_s
        self.records = {k.rstrip(".").lower() + ".": v for k, v in (records or {}).items()}
        self.queries = 0
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    def start(self) -> LabDNS:
        """Bind in the calling thread's network namespace and serve in a thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        if self._thread:
            self._thread.join(5)
        if self._sock:
            self._sock.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LabDNS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            ready, _, _ = select.select([self._sock, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            data, addr = self._sock.recvfrom(4096)
            self.queries += 1
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - a test responder ignores garbage
                continue
            reply = self._answer(query)
            if reply is None:
                continue
            if self.delay_s > 0:  # answer later from a timer: the next query is not held up behind this one
                timer = threading.Timer(self.delay_s, self._send, (reply.to_wire(), addr))
                timer.daemon = True
                timer.start()
            else:
                self._sock.sendto(reply.to_wire(), addr)

    def _send(self, wire: bytes, addr: object) -> None:
        with contextlib.suppress(OSError):  # stopped meanwhile
            assert self._sock is not None
            self._sock.sendto(wire, addr)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        if self.mode == "silent":
            return None
        reply = dns.message.make_response(query)
        if self.mode == "servfail":
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = question.rdtype
        known = [self.portal] if self.mode == "hijack" and self.portal else self.records.get(name)
        if known is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        wanted = "AAAA" if rdtype == dns.rdatatype.AAAA else "A" if rdtype == dns.rdatatype.A else None
        addrs = [a for a in known if (":" in a) == (wanted == "AAAA")] if wanted else []
        if addrs:  # otherwise NOERROR with no data (e.g. AAAA for a v4-only name)
            reply.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", wanted, addrs))
        return reply
