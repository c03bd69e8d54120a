"""The sync log benchmark's data (``bench/synclog.py`` measures it): the PostgreSQL database, created
and migrated if absent, and the rows, generated in bulk.

The data: ``rows / 2.11`` messages over ``days`` days, a record every four messages, clients skewed
(the biggest has ~17 % of the messages); per message the rows the worker writes (``pending`` +
outcome; 5 % with a retry, 0.5 % dead-lettered, 15 % inbound), its inbox row (unless
dead-lettered), a record link per record and echo marks for the last day's writes. Loaded with
``INSERT … SELECT generate_series`` with the tables' indexes dropped, then rebuilt and analysed.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.schema import CreateIndex

from config_db.database import make_engine
from config_db.migrate import upgrade
from config_db.models import metadata

LOADED = ("sync_log", "inbox", "record_links", "echo_marks")
ROWS_PER_MESSAGE = 2.11

_MESSAGES = """
CREATE UNLOGGED TABLE bench_messages AS
SELECT m, r, 'client-' || lpad(c::text, 3, '0') AS client_id, md5('m' || m)::uuid::text AS message_id,
       (ARRAY['customer','supplier','project','invoice'])[1 + r % 4] AS entity,
       md5('r' || r)::uuid::text AS cw_id, (100000 + r)::text AS external_id,
       CASE WHEN h < 30 THEN 'echo' WHEN h < 150 THEN 'in' WHEN h < 200 THEN 'retry'
            WHEN h < 205 THEN 'dead' ELSE 'out' END AS kind,
       :t0 + (m::float8 / :m_count) * (:t1 - :t0) AS at
FROM (
  SELECT m, r, floor(:clients * power(((r * 2654435761) % 1000003) / 1000003.0, 3))::int AS c,
         (m * 40503) % 1000 AS h
  FROM (SELECT m, ((m - 1) % :r_count) + 1 AS r FROM generate_series(1::bigint, :m_count) AS m) AS g
) AS x
"""

_STEPS = """
INSERT INTO sync_log (at, message_id, client_id, provider, direction, entity, cw_id, external_id,
                      action, version, content_hash, detail)
SELECT b.at + (s.step * interval '40 milliseconds'), b.message_id, b.client_id, 'generic_rest',
       CASE WHEN b.kind IN ('in', 'echo') THEN 'inbound' ELSE 'outbound' END, b.entity, b.cw_id,
       CASE WHEN s.action = 'pending' AND b.kind NOT IN ('in', 'echo') THEN NULL ELSE b.external_id END,
       s.action,
       CASE WHEN s.action IN ('created', 'updated', 'inbound') THEN b.m::text END,
       CASE WHEN s.action IN ('created', 'updated', 'inbound') THEN md5(b.m::text) END,
       CASE s.action WHEN 'retry' THEN 'HTTP 503 from the ERP: Service Unavailable'
                     WHEN 'failed' THEN 'HTTP 422 from the ERP: the customer''s VAT number is invalid'
                     WHEN 'echo_ignored' THEN 'the ERP change we wrote ourselves' END
FROM bench_messages AS b
CROSS JOIN LATERAL unnest(CASE b.kind
    WHEN 'in' THEN ARRAY['pending', 'inbound']
    WHEN 'echo' THEN ARRAY['pending', 'echo_ignored']
    WHEN 'retry' THEN ARRAY['pending', 'retry', 'pending',
                            CASE WHEN b.m <= :r_count THEN 'created' ELSE 'updated' END]
    WHEN 'dead' THEN ARRAY['pending', 'retry', 'pending', 'failed']
    ELSE ARRAY['pending', CASE WHEN b.m <= :r_count THEN 'created' ELSE 'updated' END] END)
  WITH ORDINALITY AS s(action, step)
ORDER BY b.m, s.step
"""

_INBOX = """
INSERT INTO inbox (client_id, message_id, outcome, finished_at)
SELECT client_id, message_id,
       CASE kind WHEN 'in' THEN 'inbound' WHEN 'echo' THEN 'echo_ignored'
                 ELSE CASE WHEN m <= :r_count THEN 'created' ELSE 'updated' END END,
       at + interval '100 milliseconds'
FROM bench_messages WHERE kind <> 'dead'
"""

_LINKS = """
INSERT INTO record_links (client_id, provider, entity, cw_id, external_id, version, content_hash, deleted,
                          updated_at, cw_fingerprint, cw_sequence, cw_at)
SELECT b.client_id, 'generic_rest', b.entity, b.cw_id, b.external_id, b.m::text, md5(b.m::text), false,
       b.at, NULL, NULL, b.at
FROM bench_messages AS b WHERE b.m > :m_count - :r_count
"""

_MARKS = """
INSERT INTO echo_marks (client_id, provider, entity, side, record_key, kind, value, at)
SELECT b.client_id, 'generic_rest', b.entity, 'erp', b.external_id, k.kind,
       CASE k.kind WHEN 'version' THEN b.m::text ELSE md5(b.m::text) END, b.at
FROM bench_messages AS b CROSS JOIN (VALUES ('version'), ('hash')) AS k(kind)
WHERE b.at > :t1 - interval '1 day' AND b.kind IN ('out', 'retry')
"""


def _admin_engine(url: str) -> tuple[Engine, str]:
    base, _, name = url.rpartition("/")
    return create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT"), name


def ensure_database(url: str) -> Engine:
    admin, name = _admin_engine(url)
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = make_engine(url, pool_size=2)
    started = time.perf_counter()
    upgrade(engine)  # on a loaded database: the new migrations' index builds
    _say(f"migrated in {time.perf_counter() - started:.1f} s")
    return engine


def _say(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def generate(engine: Engine, rows: int, clients: int, days: int) -> dict[str, Any]:
    m_count = int(rows / ROWS_PER_MESSAGE)
    r_count = max(1, m_count // 4)
    t1 = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    t0 = t1 - dt.timedelta(days=days)
    params = {"m_count": m_count, "r_count": r_count, "clients": clients, "t0": t0, "t1": t1}
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_messages")
        conn.exec_driver_sql(f"TRUNCATE {', '.join(LOADED)} RESTART IDENTITY")
        # Load without the indexes (rebuilt after, as a bulk load does), primary keys included.
        for table in LOADED:
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey")
            for index in metadata.tables[table].indexes:
                conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
    steps = [("messages", _MESSAGES), ("sync_log", _STEPS), ("inbox", _INBOX), ("links", _LINKS)]
    steps.append(("echo marks", _MARKS))
    for what, sql in steps:
        _say(f"generating {what}")
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
            conn.execute(text(sql), params)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE bench_messages ADD PRIMARY KEY (m)")
    build_indexes(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    counts = table_counts(engine)
    return {"seconds": round(time.perf_counter() - started, 1), **counts, "messages": m_count}


def build_indexes(engine: Engine) -> list[str]:
    """The loaded tables' primary keys and indexes (the models', which are the migrations'), where
    missing: after a bulk load, or a load interrupted before it rebuilt them."""
    built = []
    with engine.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
        present = set(conn.exec_driver_sql("SELECT indexname FROM pg_indexes").scalars())
        for name in LOADED:
            table = metadata.tables[name]
            if f"{name}_pkey" not in present:
                _say(f"building {name}_pkey")
                columns = ", ".join(c.name for c in table.primary_key.columns)
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({columns})")
                built.append(f"{name}_pkey")
            for index in sorted(table.indexes, key=lambda i: str(i.name)):
                if index.name not in present:
                    _say(f"building {index.name}")
                    conn.execute(CreateIndex(index))
                    built.append(str(index.name))
    if built:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return built


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() or 0) for t in LOADED}
