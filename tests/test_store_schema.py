"""Migrations build exactly the schema collector/store/schema.py describes, on SQLite and PostgreSQL,
from an empty database and from a foundation-era database that already holds results."""

from __future__ import annotations

import re

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from collector.store import schema as t
from collector.store.database import MIGRATIONS, Store, make_engine, migrate
from tests.factory import envelope


def _is_partition(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """A day or default partition of `results` (PostgreSQL): the partitioned table is what schema.py describes."""
    table = name if type_ == "table" else parent_names.get("table_name")
    return bool(table) and re.fullmatch(r"results_(p\d{8}|default)", table) is not None


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_name": lambda name, type_, parents: not _is_partition(name, type_, parents)})
            return list(compare_metadata(context, t.metadata))
    finally:
        engine.dispose()


def test_migrated_schema_matches_schema_module(db_url: str) -> None:
    Store(db_url).close()
    assert _diff(db_url) == []


def test_migrating_a_foundation_database_keeps_its_results(db_url: str) -> None:
    engine = make_engine(db_url)
    # Build version 1 only (the foundation), store a result the way the foundation did.
    with engine.begin() as conn:
        t.schema_version.create(conn)
        MIGRATIONS[0](conn)
        conn.execute(t.schema_version.insert().values(version=1, applied_at=func.now()))
    e = envelope("gw-old", "line-old")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO agents (agent_id, line_id, site_id, first_seen, last_seen, max_seq, result_count) "
            "VALUES ('gw-old', 'line-old', 'site-1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, 1)")
    assert migrate(engine) == len(MIGRATIONS)
    engine.dispose()
    assert _diff(db_url) == []
    store = Store(db_url)
    try:
        assert store.ingest([e]) == {("gw-old", e.result_id)}
        with store.engine.connect() as conn:
            row = conn.execute(select(t.agents).where(t.agents.c.agent_id == "gw-old")).one()
        assert row.result_count == 2 and row.enrolled_at is None and row.first_seen is not None
    finally:
        store.close()


def test_migrate_twice_is_a_no_op(db_url: str) -> None:
    Store(db_url).close()
    engine = make_engine(db_url)
    try:
        assert migrate(engine) == len(MIGRATIONS)
        with engine.connect() as conn:
            versions = conn.execute(select(t.schema_version.c.version).order_by(t.schema_version.c.version)).scalars()
            assert list(versions) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        engine.dispose()
