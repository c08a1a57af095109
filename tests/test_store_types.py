"""UtcDateTime (collector/store/types.py): every timestamp column stores and returns aware UTC on SQLite and
PostgreSQL and refuses naive values; on SQLite it stores exactly the text the plain DateTime column stored,
so rows written before the change sort and compare with rows written after it. upsert_rows
(collector/store/upsert.py) is the one ON CONFLICT path for both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.exc import StatementError

from collector.store import schema as t
from collector.store.database import Store
from collector.store.types import NaiveDatetimeError, UtcDateTime
from collector.store.upsert import upsert_rows
from tests.factory import envelope

SHANGHAI = timezone(timedelta(hours=8))


def _tenant(tenant_id: str, at: datetime) -> dict[str, object]:
    return {"tenant_id": tenant_id, "name": tenant_id, "kind": "carrier", "created_at": at, "updated_at": at}


def test_every_schema_timestamp_is_utc_datetime() -> None:
    # A DateTime column added without the type would hand SQLite's naive values back to callers again.
    plain = [f"{table.name}.{c.name}" for table in t.metadata.tables.values() for c in table.columns
             if isinstance(c.type, DateTime)]
    assert plain == []
    assert sum(isinstance(c.type, UtcDateTime) for table in t.metadata.tables.values() for c in table.columns) > 50


def test_aware_in_aware_utc_out(db_url: str) -> None:
    store = Store(db_url)
    try:
        at = datetime(2026, 12, 7, 22, 30, 15, 123456, tzinfo=SHANGHAI)  # 14:30:15 UTC
        with store.engine.begin() as conn:
            conn.execute(t.tenants.insert().values(_tenant("acme", at)))
        with store.engine.connect() as conn:
            created = conn.execute(select(t.tenants.c.created_at)).scalar_one()
            newest = conn.execute(select(t.tenants.c.created_at).where(t.tenants.c.created_at > at - timedelta(
                microseconds=1))).scalar_one()
        assert created == at
        assert created.tzinfo is UTC
        assert created.hour == 14  # the instant, not Shanghai's wall clock
        assert newest == at
    finally:
        store.close()


def test_naive_datetime_is_refused(db_url: str) -> None:
    store = Store(db_url)
    try:
        with pytest.raises(StatementError) as refused, store.engine.begin() as conn:
            conn.execute(t.tenants.insert().values(_tenant("acme", datetime(2026, 12, 7, 14, 30))))
        assert isinstance(refused.value.orig, NaiveDatetimeError)
        with store.engine.connect() as conn:  # nothing was written
            assert conn.execute(select(t.tenants)).all() == []
    finally:
        store.close()


def test_sqlite_text_is_the_old_text_so_old_and_new_rows_order_together(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/linecheck.db")
    try:
        # The table as the code before UtcDateTime saw it: a plain DateTime(timezone=True) column.
        old_tenants = Table("tenants", MetaData(), Column("tenant_id", String), Column("name", String),
                            Column("kind", String), Column("created_at", DateTime(timezone=True)),
                            Column("updated_at", DateTime(timezone=True)))
        base = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
        with store.engine.begin() as conn:
            for i, minutes in enumerate((10, 30, 50)):  # old rows at :10, :30 and :50
                conn.execute(old_tenants.insert().values(_tenant(f"old-{i}", base + timedelta(minutes=minutes))))
            for i, minutes in enumerate((0, 20, 40, 60)):  # new rows between them, given in another zone
                at = (base + timedelta(minutes=minutes)).astimezone(SHANGHAI)
                conn.execute(t.tenants.insert().values(_tenant(f"new-{i}", at)))
        with store.engine.connect() as conn:
            stored = dict(conn.exec_driver_sql("SELECT tenant_id, created_at FROM tenants").all())
            ordered = conn.execute(select(t.tenants.c.tenant_id).order_by(t.tenants.c.created_at)).scalars().all()
            later = conn.execute(select(t.tenants.c.tenant_id).where(
                t.tenants.c.created_at > base + timedelta(minutes=30))).scalars().all()
        # Same text for the same instant whichever path wrote it, so SQLite's string comparison is time order.
        assert stored["old-1"] == "2026-12-07 14:30:00.000000"
        assert stored["new-1"] == "2026-12-07 14:20:00.000000"
        assert ordered == ["new-0", "old-0", "new-1", "old-1", "new-2", "old-2", "new-3"]
        assert sorted(later) == ["new-2", "new-3", "old-2"]
    finally:
        store.close()


def test_bulk_driver_path_stores_what_the_core_path_stores(db_url: str) -> None:
    # checks.started_at goes straight to the driver's executemany (_bulk_insert + _datetime_binder);
    # results.started_at goes through SQLAlchemy. Both must hold the same value, read back aware UTC.
    store = Store(db_url)
    try:
        e = envelope("gw-1", "line-1", started_at=datetime(2026, 12, 7, 22, 0, 0, 500, tzinfo=SHANGHAI))
        store.ingest([e])
        with store.engine.connect() as conn:
            core = conn.execute(select(t.results.c.started_at)).scalar_one()
            bulk = conn.execute(select(t.checks.c.started_at).limit(1)).scalar_one()
            raw = conn.exec_driver_sql("SELECT r.started_at = c.started_at FROM results r JOIN checks c "
                                       "ON c.agent_id = r.agent_id AND c.result_id = r.result_id").scalars().all()
        assert core == bulk == e.started_at
        assert core.tzinfo is UTC and bulk.tzinfo is UTC
        assert raw and all(raw)
    finally:
        store.close()


def test_upsert_rows_inserts_then_updates_all_but_kept_columns(db_url: str) -> None:
    store = Store(db_url)
    try:
        first, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
        rows = [_tenant(f"t{i}", first) for i in range(1200)]  # more than one chunk
        with store.engine.begin() as conn:
            upsert_rows(conn, t.tenants, ["tenant_id"], rows, keep=("created_at",))
            upsert_rows(conn, t.tenants, ["tenant_id"], [r | {"name": "renamed", "updated_at": later} for r in rows],
                        keep=("created_at",))
        with store.engine.connect() as conn:
            seen = conn.execute(select(t.tenants.c.name, t.tenants.c.created_at, t.tenants.c.updated_at)).all()
        assert len(seen) == 1200
        assert set(seen) == {("renamed", first, later)}
    finally:
        store.close()
