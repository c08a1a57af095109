"""Server-side pagination: every list endpoint takes page/per_page and answers with a total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Connection, Select, func, select

T = TypeVar("T")
MAX_PER_PAGE = 200


@dataclass(frozen=True)
class PageParams:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def page_params(page: int = Query(1, ge=1, le=1_000_000, description="1-based page number"),
                per_page: int = Query(50, ge=1, le=MAX_PER_PAGE, description="items per page")) -> PageParams:
    return PageParams(page, per_page)


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    per_page: int
    total: int
    pages: int


def paginate(conn: Connection, stmt: Select, params: PageParams) -> tuple[list[dict], int]:  # type: ignore[type-arg]
    """Rows of one page (as dicts) and the total count, both computed by the database."""
    total = conn.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    rows = conn.execute(stmt.limit(params.per_page).offset(params.offset)).mappings().all()
    return [dict(r) for r in rows], int(total)


def page_of(items: list[T], total: int, params: PageParams) -> dict[str, object]:
    return {"items": items, "page": params.page, "per_page": params.per_page, "total": total,
            "pages": max(1, -(-total // params.per_page))}
