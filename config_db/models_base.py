"""What every model module shares: the declarative base, the UTC timestamp type, ``table_of``."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import DateTime, Table
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC, returns aware UTC: the same on every dialect."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return _naive_utc(value)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)

    @staticmethod
    def sqlite_text(value: dt.datetime | None) -> str | None:
        """What binding ``value`` to SQLite gives (this type, then SQLAlchemy's DATETIME text:
        ``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC), written by ``datetime.isoformat`` instead of
        SQLAlchemy's formatter; ``config_db.prepared`` uses it on the message path."""
        naive = _naive_utc(value)
        return None if naive is None else naive.isoformat(" ", "microseconds")


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """The Core table of a model (``__table__`` is typed too loosely for insert/update)."""
    return cast(Table, model.__table__)
