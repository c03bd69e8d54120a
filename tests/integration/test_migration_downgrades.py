"""Every migration's ``downgrade`` undoes its ``upgrade`` exactly, on SQLite and PostgreSQL.

Going up one revision at a time, the schema (tables, columns, indexes, foreign keys) is recorded
after each; then going down one at a time, each downgrade must give back the schema recorded at the
revision below, down to an empty database; going up again must give the head's schema. An operator
who rolls a release back with Alembic's own tooling (``alembic downgrade``) relies on these.
"""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from config_db.migrate import MIGRATIONS, VERSION_TABLE


def _config(conn: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def _move(engine: Engine, how: str, revision: str) -> None:
    with engine.begin() as conn:
        getattr(command, how)(_config(conn), revision)


def _schema(engine: Engine) -> dict[str, Any]:
    """What the database holds, apart from Alembic's own table."""
    seen = inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(set(seen.get_table_names()) - {VERSION_TABLE}):
        shape[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in seen.get_columns(table)],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in seen.get_indexes(table)
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in seen.get_foreign_keys(table)
            ),
            "primary_key": tuple(seen.get_pk_constraint(table)["constrained_columns"]),
        }
    return shape


def test_each_downgrade_gives_back_the_schema_below_it(unmigrated_engine: Engine) -> None:
    engine = unmigrated_engine
    scripts = ScriptDirectory.from_config(_config())
    revisions = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert len(revisions) >= 10
    shapes = {"base": _schema(engine)}
    assert shapes["base"] == {}
    for revision in revisions:
        _move(engine, "upgrade", revision)
        shapes[revision] = _schema(engine)
    assert shapes[revisions[-1]] != shapes[revisions[-2]]
    below = ["base", *revisions[:-1]]
    for revision, previous in zip(reversed(revisions), reversed(below), strict=True):
        _move(engine, "downgrade", previous)
        assert _schema(engine) == shapes[previous], f"downgrading {revision} to {previous}"
    _move(engine, "upgrade", "head")
    assert _schema(engine) == shapes[revisions[-1]]
