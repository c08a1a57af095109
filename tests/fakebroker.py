"""A scripted MQTT 3.1.1/5 broker for exact protocol tests, in the spirit of paho's own test suite.

A real broker decides by itself when to acknowledge, redeliver or drop; that hides the edge cases of
a client (the in-flight window, a refused CONNECT, a reconnect in the middle of a window). Here the
test decides: it accepts each connection itself, reads every packet the client sends (in order,
with its flags: DUP, QoS, retain, packet id) and answers exactly what the script says — CONNACK
with any return code and session-present flag, PUBACK or none, a PUBLISH to the client, or a
dropped socket. Nothing is routed between clients; there are no subscriptions to honour.

Real MQTT packets on a real loopback socket: the client under test is the unmodified paho client.
Only PINGREQ is answered automatically (keepalive is not what these tests are about); every other
packet waits in `Connection.packets` for the script.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK", 5: "PUBREC", 6: "PUBREL",
         7: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
         PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", 15: "AUTH"}

# MQTT 3.1.1 CONNACK return codes (MQTT 5 reason codes: 0x86 bad user name or password, 0x87 not authorised).
ACCEPTED, BAD_CREDENTIALS, NOT_AUTHORISED = 0, 4, 5


@dataclass
class Packet:
    """One packet as the client sent it. Fields not used by a packet type keep their defaults."""

    kind: int
    flags: int
    body: bytes
    mid: int | None = None  # packet identifier (PUBLISH QoS>0, PUBACK, SUBSCRIBE, ...)
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    dup: bool = False
    retain: bool = False
    reason: int = 0  # PUBACK reason code (MQTT 5; 0 when absent)
    subscriptions: list[tuple[str, int]] = field(default_factory=list)  # SUBSCRIBE: (filter, options)
    client_id: str = ""  # CONNECT fields
    clean_start: bool = False
    username: str | None = None
    password: bytes | None = None
    protocol_level: int = 0

    @property
    def name(self) -> str:
        return NAMES.get(self.kind, str(self.kind))

    def __repr__(self) -> str:
        if self.kind == PUBLISH:
            return f"PUBLISH({self.topic!r}, mid={self.mid}, qos={self.qos}, dup={self.dup})"
        return f"{self.name}(mid={self.mid})" if self.mid is not None else self.name


class ConnectionClosed(Exception):
    """The client closed the socket (or the script dropped it) while a packet was expected."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _varint(len(body)) + body


class _Reader:
    """Cursor over a packet body."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("packet shorter than its fields")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def string(self) -> bytes:
        return self.take(self.u16())

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def skip_properties(self, v5: bool) -> None:
        if v5:
            self.take(self.varint())

    def rest(self) -> bytes:
        return self.data[self.pos:]

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


class Connection:
    """One accepted client connection. A reader thread parses packets into `packets` (a queue) and
    `log` (everything received, in order); the script reads them with `expect` and answers."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.protocol_level = 4  # set from the CONNECT
        self.log: list[Packet] = []
        self.packets: queue.Queue[Packet | None] = queue.Queue()  # None: the client closed the socket
        self.closed = threading.Event()
        self._next_mid = 0
        self._send_lock = threading.Lock()
        # Optional automatic answer for a packet (e.g. PUBACK every status publish); returns True if handled.
        self.auto: Callable[[Connection, Packet], bool] | None = None
        self._thread = threading.Thread(target=self._read_loop, daemon=True)
        self._thread.start()

    @property
    def v5(self) -> bool:
        return self.protocol_level == 5

    # --- receiving --------------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionClosed()
            data += chunk
        return bytes(data)

    def _read_loop(self) -> None:
        try:
            while True:
                first = self._recv_exact(1)[0]
                length, shift = 0, 0
                while True:
                    byte = self._recv_exact(1)[0]
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                packet = self._parse(first >> 4, first & 0x0F, self._recv_exact(length))
                self.log.append(packet)
                if packet.kind == PINGREQ:
                    self.send(_packet(PINGRESP, 0, b""))
                    continue
                if self.auto is not None and self.auto(self, packet):
                    continue
                self.packets.put(packet)
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.closed.set()
            self.packets.put(None)

    def _parse(self, kind: int, flags: int, body: bytes) -> Packet:
        p = Packet(kind, flags, body)
        r = _Reader(body)
        if kind == CONNECT:
            r.string()  # "MQTT"
            p.protocol_level = self.protocol_level = r.u8()
            connect_flags = r.u8()
            r.u16()  # keepalive
            r.skip_properties(self.v5)
            p.clean_start = bool(connect_flags & 0x02)
            p.client_id = r.string().decode()
            if connect_flags & 0x04:  # will: properties (v5), topic, payload
                r.skip_properties(self.v5)
                r.string()
                r.string()
            if connect_flags & 0x80:
                p.username = r.string().decode()
            if connect_flags & 0x40:
                p.password = r.string()
        elif kind == PUBLISH:
            p.qos, p.dup, p.retain = (flags >> 1) & 0x03, bool(flags & 0x08), bool(flags & 0x01)
            p.topic = r.string().decode()
            if p.qos:
                p.mid = r.u16()
            r.skip_properties(self.v5)
            p.payload = r.rest()
        elif kind in (PUBACK, 5, 6, 7):
            p.mid = r.u16()
            if not r.at_end():
                p.reason = r.u8()
        elif kind in (SUBSCRIBE, UNSUBSCRIBE):
            p.mid = r.u16()
            r.skip_properties(self.v5)
            while not r.at_end():
                topic = r.string().decode()
                p.subscriptions.append((topic, r.u8() if kind == SUBSCRIBE else 0))
        return p

    def expect(self, kind: int, timeout: float = 10.0) -> Packet:
        """The next packet from the client, which must be of `kind` (anything else fails the test)."""
        packet = self.next(timeout)
        if packet is None:
            raise ConnectionClosed(f"the client closed the connection while {NAMES[kind]} was expected")
        assert packet.kind == kind, f"expected {NAMES[kind]}, the client sent {packet!r}"
        return packet

    def next(self, timeout: float = 10.0) -> Packet | None:
        """The next packet (None when the client closed the connection); raises queue.Empty on timeout."""
        return self.packets.get(timeout=timeout)

    def pending(self) -> list[Packet]:
        """Packets received and not yet read by the script (without waiting)."""
        out: list[Packet] = []
        while True:
            try:
                packet = self.packets.get_nowait()
            except queue.Empty:
                return out
            if packet is None:
                self.packets.put(None)  # keep the end marker for expect()/next()
                return out
            out.append(packet)

    def expect_publishes(self, n: int, topic: str | None = None, timeout: float = 10.0) -> list[Packet]:
        """The next `n` packets, each a PUBLISH (on `topic`, when given)."""
        out = [self.expect(PUBLISH, timeout) for _ in range(n)]
        if topic is not None:
            assert [p.topic for p in out] == [topic] * n, [p.topic for p in out]
        return out

    def wait_closed(self, timeout: float = 10.0) -> bool:
        return self.closed.wait(timeout)

    # --- sending ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def _props(self) -> bytes:
        return b"\x00" if self.v5 else b""  # an empty property list

    def connack(self, code: int = ACCEPTED, session_present: bool = False) -> None:
        self.send(_packet(CONNACK, 0, bytes([1 if session_present else 0, code]) + self._props()))

    def suback(self, mid: int, granted: list[int]) -> None:
        self.send(_packet(SUBACK, 0, struct.pack("!H", mid) + self._props() + bytes(granted)))

    def puback(self, mid: int, reason: int = 0) -> None:
        body = struct.pack("!H", mid)
        if self.v5 and reason:
            body += bytes([reason]) + self._props()
        self.send(_packet(PUBACK, 0, body))

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, dup: bool = False, retain: bool = False,
                mid: int | None = None) -> int:
        """Send a PUBLISH to the client; returns its packet id (0 for QoS 0). `mid` re-uses a packet id
        (a redelivery, with dup=True); otherwise the next one is taken."""
        packet_id, data = self._publish_packet(topic, payload, qos, dup, retain, mid)
        self.send(data)
        return packet_id

    def publish_many(self, messages: list[tuple[str, bytes | str]], qos: int = 1) -> list[int]:
        """Several PUBLISH packets in one write, so the client reads them together; returns their ids."""
        built = [self._publish_packet(topic, payload, qos, False, False, None) for topic, payload in messages]
        self.send(b"".join(data for _, data in built))
        return [mid for mid, _ in built]

    def _publish_packet(self, topic: str, payload: bytes | str, qos: int, dup: bool, retain: bool,
                        mid: int | None) -> tuple[int, bytes]:
        raw = payload.encode() if isinstance(payload, str) else payload
        body = _string(topic)
        packet_id = 0
        if qos:
            if mid is None:
                self._next_mid = self._next_mid % 65535 + 1
                mid = self._next_mid
            packet_id = mid
            body += struct.pack("!H", packet_id)
        body += self._props() + raw
        return packet_id, _packet(PUBLISH, (qos << 1) | (0x08 if dup else 0) | (1 if retain else 0), body)

    def drop(self) -> None:
        """Close the socket abruptly, as a broker restart or a lost route would."""
        with contextlib.suppress(OSError):  # the client may have closed it first
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.closed.wait(5)


class FakeBroker:
    """A listening socket on a free loopback port; each `accept` hands one client to the script."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._sock = self._listen()
        self.port = self._sock.getsockname()[1]
        self.connections: list[Connection] = []

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(8)
        return sock

    def stop_listening(self) -> None:
        """Refuse new connections (a broker that is down): the client's connect fails at once."""
        self._sock.close()

    def listen_again(self) -> None:
        """Accept connections again, on the same port."""
        self._sock = self._listen()

    def accept(self, timeout: float = 10.0) -> Connection:
        self._sock.settimeout(timeout)
        sock, _ = self._sock.accept()
        sock.settimeout(None)
        conn = Connection(sock)
        self.connections.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.connections:
            if not conn.closed.is_set():
                conn.drop()
        self._sock.close()

    def __enter__(self) -> FakeBroker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
