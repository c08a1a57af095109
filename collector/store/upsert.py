"""The dialect's INSERT, the one that has ON CONFLICT (on_conflict_do_nothing / on_conflict_do_update).

SQLite and PostgreSQL both support ON CONFLICT, but SQLAlchemy exposes it only on each dialect's own
insert construct; every upsert in the collector gets its construct here instead of switching itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

# Rows per multi-VALUES statement: stays under SQLite's bound-parameter limit for our widest tables.
CHUNK = 500


def insert_for(bind: Connection | Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """INSERT INTO table for the dialect of `bind`, with .on_conflict_do_nothing/.on_conflict_do_update
    and .excluded (the same names on both dialects)."""
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def upsert_rows(conn: Connection, table: Table, keys: Sequence[str], rows: list[dict[str, Any]],
                keep: Sequence[str] = ()) -> None:
    """Insert rows (all with the same columns), or on a conflict of `keys` overwrite every other column
    except those in `keep` (e.g. created_at, which only a new row sets)."""
    if not rows:
        return
    for i in range(0, len(rows), CHUNK):
        stmt = insert_for(conn, table).values(rows[i:i + CHUNK])
        update = {c: stmt.excluded[c] for c in rows[0] if c not in keys and c not in keep}
        conn.execute(stmt.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=update))
