"""Telling a damaged spool file apart, moving it aside as evidence, and salvaging its readable rows.

SQLite's `.recover` is not in Python's sqlite3 module, and a damaged file cannot be trusted to answer
queries: one bad interior page makes every query through it fail ("database disk image is
malformed"), and a bad header makes the whole file "not a database". So the salvage reads the file
itself, as SQLite's own recovery does: every page that is a table leaf is parsed on its own, cell by
cell (overflow chains followed), with the write-ahead log's committed frames laid over the main
file. A garbage page, a truncated tail or an overwritten header costs only the rows on those pages.
A row counts as a result only if its payload is a valid envelope carrying the row's seq and
result id, so garbage can never be published.

Pages freed by deletes keep their old content, so the salvage can also find results that were
already receipted; the spool (agent/spool.py) keeps only those its ledger says were still held.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from linecheck.wire import ResultEnvelope

SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_MAGICS = (0x377F0682, 0x377F0683)
DEFAULT_PAGE_SIZE = 4096  # SQLite's default, which the spool never changes
# A full integrity_check reads every index entry against its row; below this size it is quick
# enough (well under a second on a small gateway), above it quick_check (page structure only).
FULL_CHECK_MAX_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 16 * 1024 * 1024  # a garbage size varint must not allocate gigabytes
# Damaged files kept as evidence; older ones are deleted, so a failing flash that damages the spool
# again and again cannot fill the disk with copies.
EVIDENCE_KEPT = 3
_RESULT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
# SQLite primary result codes that mean the file itself is damaged (not busy, not full).
CORRUPTION_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
SQLITE_IOERR_SHORT_READ = 522  # reading past the end of a truncated file


def is_corruption(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the module itself, not SQLite: go by the message
        text = str(exc)
        return "malformed" in text or "not a database" in text
    return code & 0xFF in CORRUPTION_CODES or code == SQLITE_IOERR_SHORT_READ


def diagnose(path: Path) -> str | None:
    """Why the spool file at `path` cannot be used as it is, or None when it can.

    A missing or empty file is not damage here (SQLite makes a new database of it); the ledger
    tells whether results were lost with it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with path.open("rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return "the spool file is not a SQLite database (its header is damaged)"
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
    except sqlite3.DatabaseError as exc:
        return f"the spool file cannot be opened: {exc}"
    try:
        check = "integrity_check" if size <= FULL_CHECK_MAX_BYTES else "quick_check"
        problems = [row[0] for row in db.execute(f"PRAGMA {check}(20)").fetchall()]
        if problems != ["ok"]:
            return f"{check} failed: " + "; ".join(problems)[:400]
        columns = {row[1] for row in db.execute("PRAGMA table_info(results)")}
        if not columns:
            return None
        crc = "crc" if "crc" in columns else "NULL"
        for seq, rid, payload, stored_crc in db.execute(f"SELECT seq, result_id, payload, {crc} FROM results"):
            if not _valid_result(seq, rid, payload, stored_crc):
                return f"result seq {seq} in the spool is not the envelope that was stored (its bytes are damaged)"
    except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: text that is not UTF-8
        return f"reading the spool failed: {exc}"
    finally:
        db.close()
    return None


def _valid_result(seq: object, rid: object, payload: object, crc: object = None) -> bool:
    """A valid envelope carrying the row's seq and result id, with the payload's checksum if one was stored."""
    if not isinstance(seq, int) or not isinstance(rid, str) or not isinstance(payload, bytes | str):
        return False
    raw = payload.encode() if isinstance(payload, str) else payload
    if isinstance(crc, int) and zlib.crc32(raw) != crc:
        return False
    try:
        env = ResultEnvelope.from_json(payload)
    except (ValidationError, ValueError):
        return False
    return env.seq == seq and env.result_id == rid


def move_aside(path: Path) -> Path:
    """Rename the damaged spool (and its -wal/-shm/-journal) to <name>.corrupt-<UTC time>, kept as evidence."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.rename(dest)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            side.rename(dest.with_name(dest.name + suffix))
    _prune_evidence(path)
    return dest


def _prune_evidence(path: Path) -> None:
    kept = sorted((p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm",
                                                                                                   "-journal"))),
                  key=lambda p: p.stat().st_mtime_ns)
    for old in kept[:-EVIDENCE_KEPT]:
        for victim in (old, *(old.with_name(old.name + s) for s in ("-wal", "-shm", "-journal"))):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()


@dataclass(frozen=True)
class Row:
    seq: int
    result_id: str
    payload: bytes
    created_at: float
    sent_at: float | None
    attempts: int
    value_rank: int
    compacted: int


@dataclass
class Salvage:
    rows: dict[int, Row] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # the meta table's counters that were readable
    damaged: set[str] = field(default_factory=set)  # result ids whose row was found but is unreadable
    pages: int = 0
    unreadable_pages: int = 0


def salvage(path: Path, counter_names: tuple[str, ...]) -> Salvage:
    """Every readable result row (and meta counter) of the spool file at `path` and its -wal."""
    main = path.read_bytes() if path.exists() else b""
    wal_path = path.with_name(path.name + "-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    page_size = _page_size(main, wal)
    usable = page_size - (main[20] if main.startswith(SQLITE_MAGIC) and len(main) > 20 else 0)
    pages = {n + 1: main[n * page_size:(n + 1) * page_size] for n in range(len(main) // page_size)}
    pages.update(_wal_pages(wal, page_size))
    out = Salvage(pages=len(pages))
    for pgno, page in pages.items():
        try:
            cells = list(_leaf_cells(page, pgno, usable, pages))
        except (IndexError, ValueError, struct.error):
            out.unreadable_pages += 1
            continue
        for rowid, values in cells:
            _classify(out, rowid, values, counter_names)
    out.damaged -= {r.result_id for r in out.rows.values()}  # a good copy elsewhere wins
    return out


def _classify(out: Salvage, rowid: int, values: list[object], counter_names: tuple[str, ...]) -> None:
    if len(values) == 2 and values[0] in counter_names and isinstance(values[1], int):
        key = str(values[0])
        out.counters[key] = max(out.counters.get(key, 0), values[1])  # every counter only grows
        return
    if len(values) < 6 or not isinstance(values[1], str) or not _RESULT_ID.match(values[1]):
        return
    rid, payload = values[1], values[2]
    if not _valid_result(rowid, rid, payload, values[8] if len(values) > 8 else None):
        out.damaged.add(rid)
        return
    assert isinstance(payload, bytes | str)

    def num(i: int, default: float | None) -> float | None:
        v = values[i] if i < len(values) else None
        return float(v) if isinstance(v, int | float) else default

    row = Row(rowid, rid, payload if isinstance(payload, bytes) else payload.encode(),
              num(3, time.time()) or time.time(), num(4, None), int(num(5, 0) or 0),
              int(num(6, 0) or 0), int(num(7, 0) or 0))
    old = out.rows.get(rowid)
    if old is None or (row.compacted and not old.compacted):  # a stale pre-compaction copy loses
        out.rows[rowid] = row


def _page_size(main: bytes, wal: bytes) -> int:
    if main.startswith(SQLITE_MAGIC) and len(main) >= 18:
        size = struct.unpack(">H", main[16:18])[0]
        size = 65536 if size == 1 else size
        if size >= 512 and size & (size - 1) == 0:
            return size
    if len(wal) >= 32 and struct.unpack(">I", wal[:4])[0] in WAL_MAGICS:
        size = struct.unpack(">I", wal[8:12])[0]
        if 512 <= size <= 65536 and size & (size - 1) == 0:
            return size
    return DEFAULT_PAGE_SIZE


def _wal_pages(wal: bytes, page_size: int) -> dict[int, bytes]:
    """The pages of the WAL's committed transactions (a later frame of a page wins)."""
    if len(wal) < 32 or struct.unpack(">I", wal[:4])[0] not in WAL_MAGICS:
        return {}
    if struct.unpack(">I", wal[8:12])[0] != page_size:
        return {}
    salts = wal[16:24]
    committed: dict[int, bytes] = {}
    txn: dict[int, bytes] = {}
    off = 32
    while off + 24 + page_size <= len(wal):
        pgno, commit_size = struct.unpack(">II", wal[off:off + 8])
        if wal[off + 8:off + 16] != salts:
            break  # a frame of an older WAL generation: the log ends here
        txn[pgno] = wal[off + 24:off + 24 + page_size]
        if commit_size:
            committed.update(txn)
            txn = {}
        off += 24 + page_size
    return committed


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        byte = buf[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, i + 1
    return (value << 8) | buf[pos + 8], 9


def _leaf_cells(page: bytes, pgno: int, usable: int, pages: dict[int, bytes]):  # type: ignore[no-untyped-def]
    """(rowid, column values) of each readable cell of a table-leaf page; other pages yield nothing."""
    base = 100 if pgno == 1 else 0
    if len(page) < base + 8 or page[base] != 0x0D:
        return
    (ncells,) = struct.unpack(">H", page[base + 3:base + 5])
    for i in range(ncells):
        try:
            (ptr,) = struct.unpack(">H", page[base + 8 + 2 * i:base + 10 + 2 * i])
            size, n = _varint(page, ptr)
            rowid, m = _varint(page, ptr + n)
            if rowid >= 1 << 63:
                rowid -= 1 << 64
            payload = _payload(page, ptr + n + m, size, usable, pages)
            yield rowid, _record(payload)
        except (IndexError, ValueError, struct.error, UnicodeDecodeError):
            continue  # one garbage cell; the rest of the page may be fine


def _payload(page: bytes, start: int, size: int, usable: int, pages: dict[int, bytes]) -> bytes:
    if size > MAX_RECORD_BYTES:
        raise ValueError("implausible record size")
    max_local = usable - 35
    if size <= max_local:
        local = size
    else:  # the file format's rule for how much of a big record stays on the leaf page
        min_local = (usable - 12) * 32 // 255 - 23
        k = min_local + (size - min_local) % (usable - 4)
        local = k if k <= max_local else min_local
    data = bytearray(page[start:start + local])
    if len(data) != local:
        raise ValueError("cell runs past its page")
    if local < size:
        (next_page,) = struct.unpack(">I", page[start + local:start + local + 4])
        hops = 0
        while len(data) < size:
            hops += 1
            overflow = pages.get(next_page)
            if overflow is None or hops > size // max(1, usable - 4) + 2:
                raise ValueError("broken overflow chain")
            data += overflow[4:usable]
            (next_page,) = struct.unpack(">I", overflow[:4])
    return bytes(data[:size])


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> list[object]:
    header_size, pos = _varint(payload, 0)
    if header_size > len(payload):
        raise ValueError("record header past the record")
    types = []
    while pos < header_size:
        t, n = _varint(payload, pos)
        types.append(t)
        pos += n
    values: list[object] = []
    body = header_size
    for t in types:
        if t == 0:
            values.append(None)
        elif t in _INT_SIZES:
            width = _INT_SIZES[t]
            raw = payload[body:body + width]
            if len(raw) != width:
                raise ValueError("record shorter than its header says")
            values.append(int.from_bytes(raw, "big", signed=True))
            body += width
        elif t == 7:
            (value,) = struct.unpack(">d", payload[body:body + 8])
            values.append(value)
            body += 8
        elif t in (8, 9):
            values.append(t - 8)
        elif t >= 12:
            width = (t - 12) // 2 if t % 2 == 0 else (t - 13) // 2
            raw = payload[body:body + width]
            if len(raw) != width:
                raise ValueError("record shorter than its header says")
            values.append(bytes(raw) if t % 2 == 0 else raw.decode("utf-8"))
            body += width
        else:
            raise ValueError(f"reserved serial type {t}")
    return values
