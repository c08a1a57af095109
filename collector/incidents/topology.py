"""A line's access path: 'district/central office/OLT/PON port/splitter', one name per level.

The registry holds it as one text field (`access_path`) so YAML, CSV and the API carry it alike; it is
stored as given on the line and, per depth, in access_nodes, where a node is the path up to that depth
(two OLTs named 'OLT-1' in different offices are different nodes)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from collector.store import schema as t

SEP = "/"
LEVELS = ("district", "central_office", "olt", "pon_port", "splitter", "drop")
MAX_DEPTH = len(LEVELS)
MAX_NAME = 64


def problems(path: str) -> list[str]:
    """What is wrong with an access path as written; [] when it is usable."""
    parts = path.split(SEP)
    if len(parts) > MAX_DEPTH:
        return [f"expected at most {MAX_DEPTH} levels ({' / '.join(LEVELS)}), got {len(parts)}"]
    out = []
    for i, p in enumerate(parts):
        if not p.strip():
            out.append(f"level {i + 1} ({LEVELS[i]}) is empty; expected names separated by '{SEP}'")
        elif len(p) > MAX_NAME or any(ord(c) < 32 for c in p):
            out.append(f"level {i + 1} ({LEVELS[i]}): expected a name of at most {MAX_NAME} printable characters")
    return out


def nodes(path: str) -> list[tuple[int, str, str]]:
    """(depth, level, node key) from the district down; node key = the path up to that depth."""
    parts = [p.strip() for p in path.split(SEP)]
    return [(i, LEVELS[i], SEP.join(parts[: i + 1])) for i in range(len(parts))]


def store_paths(conn: Connection, paths: Iterable[tuple[str, str | None]]) -> None:
    """Replace the access_nodes rows of each line with those of its (new) path; None clears them."""
    items = list(paths)
    ids = [line_id for line_id, _ in items]
    for i in range(0, len(ids), 500):
        conn.execute(t.access_nodes.delete().where(t.access_nodes.c.line_id.in_(ids[i:i + 500])))
    rows = [{"line_id": line_id, "depth": d, "level": lvl, "node": key}
            for line_id, path in items if path for d, lvl, key in nodes(path)]
    if rows:
        conn.execute(t.access_nodes.insert(), rows)


def path_of(conn: Connection, line_id: str) -> list[tuple[str, str]]:
    """(level, node key) of one line, district first; [] when it names no access path."""
    return [(r.level, r.node) for r in conn.execute(
        select(t.access_nodes.c.level, t.access_nodes.c.node).where(t.access_nodes.c.line_id == line_id)
        .order_by(t.access_nodes.c.depth))]


def label(node: str) -> str:
    """A node key as people read it: 'Xuhui › CO-1 › OLT-3 › PON-1/2'."""
    return " › ".join(node.split(SEP))
