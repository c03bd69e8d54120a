"""What every table module shares: the ``metadata``, the UTC timestamp type, ``partial_index``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, Index, MetaData
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex
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


metadata = MetaData()


def partial_index(name: str, *columns: str, where: str) -> Index:
    """An index of the rows where ``where`` holds, on every dialect.

    Its condition is kept in the index's ``info`` and written by ``_create_index`` below, not given
    as SQLAlchemy's ``postgresql_where``/``sqlite_where``/``mssql_where``: SQLAlchemy validates such
    arguments by importing each dialect named, so the models would load the PostgreSQL and SQL
    Server dialects (about 3.5 MB) into every worker, whatever its database.
    """
    return Index(name, *columns, info={"where": where})


@compiles(CreateIndex)
def _create_index(create: CreateIndex, compiler: Any, **kw: Any) -> str:
    ddl: str = compiler.visit_create_index(create, **kw)
    where = create.element.info.get("where")
    return f"{ddl} WHERE {where}" if where else ddl
