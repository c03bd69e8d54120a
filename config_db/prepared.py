"""Statements on the message path, compiled once per dialect and run through the driver.

``Connection.execute`` derives a cache key from the statement and processes every parameter on
each call; on SQLite that costs more than the statement itself (an insert into the sync log:
about 100 µs through ``execute``, 40 µs through ``exec_driver_sql``). A ``Prepared`` write keeps
the dialect's SQL, parameter order and bind processors (UTC datetimes, booleans), so that each
call only converts values and runs ``exec_driver_sql``. For INSERT/UPDATE/DELETE whose values are
named parameters the caller supplies, or values the statement fixes itself (literals, NULL); and
for a SELECT whose caller reads the driver's raw values (no result processors run: a datetime may
come back as text on SQLite, a boolean as 0/1).

On SQLite, inside a transaction, the statement goes straight to the driver's cursor: SQLAlchemy's
execution context costs about 5 µs a statement more than the statement itself (6.3 against 1.3 µs
for an insert), on the one thread that writes. Callers read ``rowcount`` and ``one()``, as from
SQLAlchemy's result; the driver's errors are wrapped as SQLAlchemy wraps them. Elsewhere (and
outside a transaction, where SQLAlchemy would begin one) it runs through ``exec_driver_sql``.
"""

from __future__ import annotations

import functools
import importlib
import operator
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    BindParameter,
    Connection,
    Delete,
    Dialect,
    Executable,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    exists,
    insert,
    literal,
    select,
)
from sqlalchemy import exc as sa_exc

from config_db.models_base import UtcDateTime


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: Sequence[str]
    positional: bool
    processors: Mapping[str, Callable[[Any], Any]]
    fixed: Mapping[str, Any]
    """Values the statement itself gives (``state = 'active'``, ``SET lock_token = NULL``)."""
    direct: bool
    """Run on the driver's cursor (SQLite)."""
    ordered: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    """The values of ``names`` in order, in one call (positional parameters)."""


class Executed(Protocol):
    """What callers read of a prepared statement's result."""

    @property
    def rowcount(self) -> int: ...

    def one(self) -> Any: ...

    def all(self) -> Sequence[Any]: ...


class Prepared:
    def __init__(
        self, statement: Insert | Update | Delete | Select[Any], *, column_keys: Sequence[str] | None = None
    ) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[str, _Compiled | None] = {}

    def compiled(self, dialect: Dialect) -> _Compiled | None:
        """The dialect's SQL, or None when SQLAlchemy renders it anew on each execution (SQL
        Server's ``TOP n``, an expanding ``IN``): that one runs through ``execute``."""
        if dialect.name in self._by_dialect:
            return self._by_dialect[dialect.name]
        found: _Compiled | None = None
        c = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        if not (c.post_compile_params or c.literal_execute_params):
            # SQLAlchemy's per-parameter value converters (the same ones execute() applies).
            processors = {k: v for k, v in c._bind_processors.items() if callable(v)}
            if dialect.name == "sqlite":
                utc = (name for name, bind in c.binds.items() if isinstance(bind.type, UtcDateTime))
                processors |= dict.fromkeys(utc, UtcDateTime.sqlite_text)
            positional = bool(c.positional and c.positiontup is not None)
            names = list(c.positiontup) if positional and c.positiontup is not None else list(c.binds)
            fixed = {name: bind.effective_value for bind, name in c.bind_names.items() if not bind.required}
            direct = dialect.name == "sqlite"
            found = _Compiled(c.string, names, positional, processors, fixed, direct, _ordered(names))
        self._by_dialect[dialect.name] = found
        return found

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Executed:
        c = self.compiled(conn.dialect)
        if c is None:
            return conn.execute(self.statement, params)
        values: Mapping[str, Any] = params
        if c.fixed or c.processors:
            values = processed = {**c.fixed, **params}
            for name, process in c.processors.items():
                processed[name] = process(processed[name])
        args: Any = c.ordered(values) if c.positional else dict(values)
        if c.direct and conn.in_transaction():
            return run_direct(conn, c.sql, args)
        return conn.exec_driver_sql(c.sql, args)


def _ordered(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:
        name = names[0]
        return lambda values: (values[name],)
    return lambda _values: ()


@dataclass(frozen=True, slots=True)
class _Direct:
    rowcount: int
    names: tuple[str, ...]
    rows: list[Any]

    def one(self) -> Any:
        if not self.rows:
            raise sa_exc.NoResultFound("one row expected, none found")
        if len(self.rows) > 1:
            raise sa_exc.MultipleResultsFound(f"one row expected, {len(self.rows)} found")
        return _row_type(self.names)(*self.rows[0])

    def all(self) -> list[Any]:
        row = _row_type(self.names)
        return [row(*values) for values in self.rows]


@functools.lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names, rename=True)


def run_direct(conn: Connection, sql: str, args: Any) -> _Direct:
    """``sql`` on the SQLite driver's cursor of ``conn`` (connected), its rows read at once."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]  # in a transaction: connected
    try:
        cursor.execute(sql, args)
        names = tuple(d[0] for d in cursor.description) if cursor.description else ()
        return _Direct(cursor.rowcount, names, list(cursor.fetchall()) if names else [])
    except dbapi.Error as exc:
        raise sa_exc.DBAPIError.instance(sql, args, exc, dbapi.Error, dialect=conn.dialect) from exc
    finally:
        cursor.close()


def fixed(values: Iterable[str]) -> list[BindParameter[str]]:
    """The members of an ``IN`` whose values never change, as one bind parameter each: a plain
    ``in_(list)`` is an expanding parameter, which SQLAlchemy re-renders into the SQL text on
    every execution (a regular-expression pass over the whole statement)."""
    return [literal(value) for value in sorted(values)]


def insert_if_absent(table: Table, key: Sequence[str], dialect_name: str) -> Executable:
    """``INSERT`` of one row (every column a bind parameter named after it) that does nothing when a
    row with the same ``key`` exists: no IntegrityError, so a group commit is never rolled back.
    Its ``rowcount`` says which (1: inserted, 0: the row was there; kept for the caller, since
    psycopg's cursor reports -1 once SQLAlchemy has closed it).

    PostgreSQL and SQLite: ``ON CONFLICT DO NOTHING``. SQL Server: ``INSERT … SELECT … WHERE NOT
    EXISTS``, the existence test holding a key-range lock (UPDLOCK, HOLDLOCK) so that two inserts of
    one key serialise instead of colliding.
    """
    bound = _bound_columns(table)
    values: dict[str, Any] = {c.name: bindparam(c.name) for c in table.columns if c.name in bound}
    statement: Executable
    if dialect_name in ("postgresql", "sqlite"):
        # The dialect's own insert, imported when its dialect is in use: a worker on SQLite never
        # loads PostgreSQL's (nor the reverse).
        dialect = importlib.import_module(f"sqlalchemy.dialects.{dialect_name}")
        statement = dialect.insert(table).values(values).on_conflict_do_nothing()
    else:
        held = table.alias("held")
        probe = (
            select(literal(1))
            .select_from(held)
            .where(*(held.c[name] == bindparam(name) for name in key))
            .with_hint(held, "WITH (UPDLOCK, HOLDLOCK)", dialect_name="mssql")
        )
        names = list(values)
        source = select(*(values[n] for n in names)).where(~exists(probe))
        statement = insert(table).from_select(names, source)
    return statement.execution_options(preserve_rowcount=True)


def _bound_columns(table: Table) -> set[str]:
    """Every column but an autoincrementing integer key."""
    return {c.name for c in table.columns if not (c.primary_key and c.autoincrement is True)}
