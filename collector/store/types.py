"""One column type for every timestamp the collector stores: aware UTC in, aware UTC out.

SQLite has no time zone type: SQLAlchemy's DateTime stores the wall-clock text
("2026-12-07 16:35:22.000000") and reads it back naive, and it silently drops an offset, so
14:00+02:00 would be stored as 14:00. PostgreSQL's timestamptz returns the session's zone.
`UtcDateTime` converts at the boundary, so callers never repair a value they read:

- bind: an aware value is converted to UTC; a naive one is refused (its zone is unknowable);
- result: SQLite's naive text is UTC by construction and gets tzinfo=UTC; PostgreSQL's aware
  value is converted to UTC.

The DDL is DateTime(timezone=True)'s (migrations carry their own frozen DDL and are unaffected),
and the text stored on SQLite is exactly the old one for a UTC value, so existing rows compare and
sort with new ones as before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class NaiveDatetimeError(ValueError):
    """A naive datetime was handed to a UTC column: the caller must say which zone it is in."""


def as_utc(value: datetime | None) -> datetime | None:
    """A value read from the database without a column type (e.g. an aggregate of raw SQL) as aware UTC:
    naive means UTC here, because everything this collector stores is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that stores and returns aware UTC datetimes on SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UtcDateTime column needs a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(f"naive datetime {value.isoformat()} for a UTC column: attach a zone first")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return as_utc(value)


# A result's compact document (collector/store/documents.py): JSONB on PostgreSQL (the views expand it
# without parsing text), JSON text on SQLite (json_each reads it). Python sees a dict either way.
Document = JSON().with_variant(JSONB(), "postgresql")
