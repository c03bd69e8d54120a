"""Benchmark: the sync log at ten million rows (PostgreSQL). Generates the rows, then measures the
per-message lookups the worker makes, ``cwi synclog --client`` and the console's record timeline.

    .venv/bin/python bench/synclog.py [--rows 10000000] [--clients 200] [--days 180] [--samples 3000]
                                      [--url postgresql+psycopg://postgres@127.0.0.1:5432/cwi_bench_synclog]
                                      [--regenerate] [--explain] [--prune 90d] [--throughput 5000]

The database is created and migrated if absent, and the rows generated once (``--regenerate`` drops
them and starts again): ``bench/synclog_data.py`` says what they are.

Each lookup is timed as the worker runs it (the same prepared statement, SQLAlchemy over psycopg,
one connection): p50/p99 in milliseconds over ``--samples`` random keys, lookups interleaved.
``--prune 90d`` also times ``cwi synclog prune`` in-process (every batch: the longest a worker
waits behind it) and the lookups again afterwards (it deletes rows: generate again after it).
``--throughput EVENTS`` runs ``cwi bench --in-place`` on this database beside ``cwi bench`` on an
empty one on the same server (``--rounds`` times, interleaved) and prints the ratio.

``--cold`` starts each measurement (the lookups, the operators' queries, each throughput run) from
cold caches: PostgreSQL restarted (its shared buffers empty) and the operating system's page cache
dropped, by ``--cold-command`` (default: Debian's ``pg_ctlcluster`` and ``/proc/sys/vm/drop_caches``,
which need root). Without it the database's files are as warm as the runs before left them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ArgumentError, OperationalError

from bench.options import duration, whole
from bench.synclog_data import build_indexes, ensure_database, generate, table_counts
from config_db import history, inbox, marks, sync_log
from providers.registry import KINDS
from worker.dev import MAX_EVENTS

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/cwi_bench_synclog"
COLD_COMMAND = (
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"
    " && sync && echo 3 > /proc/sys/vm/drop_caches"
)
ROOT = Path(__file__).resolve().parents[1]


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3), "n": len(ordered)}


class Cold:
    """Empties PostgreSQL's and the operating system's caches before a measurement (``--cold``);
    does nothing when ``command`` is None."""

    def __init__(self, engine: Engine, command: str | None) -> None:
        self.engine, self.command, self.times = engine, command, 0

    def __call__(self) -> None:
        if self.command is None:
            return
        self.engine.dispose()
        done = subprocess.run(["sh", "-c", self.command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise SystemExit(f"--cold: {self.command!r} failed: {why} (it needs root; see --cold-command)")
        deadline = time.monotonic() + 60
        while True:  # the server takes a moment to accept connections again
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.engine.dispose()
        self.times += 1


def _keys(conn: Connection, samples: int) -> list[Any]:
    top = int(conn.exec_driver_sql("SELECT max(m) FROM bench_messages").scalar() or 0)
    picks = random.sample(range(1, top + 1), min(samples, top))
    query = text("SELECT * FROM bench_messages WHERE m = ANY(:ms)")
    return list(conn.execute(query, {"ms": picks}).all())


def lookups(engine: Engine, samples: int, server_samples: int = 300) -> dict[str, Any]:
    """Each statement the worker runs per message, for existing keys and (inbox, intent) new ones."""
    timed: dict[str, list[float]] = {}
    with engine.connect() as conn:
        keys = _keys(conn, samples)
        cold = _keys(conn, server_samples)  # others than those timed: not in the cache yet

        def state(k: Any, new: bool) -> dict[str, Any]:
            mid = f"new-{k.m}" if new else k.message_id
            return {
                "client_id": k.client_id,
                "message_id": mid,
                "k_client_id": k.client_id,
                "k_provider": "generic_rest",
                "k_entity": k.entity,
                "k_cw_id": k.cw_id,
            }

        erp = "erp"
        runs: list[tuple[str, Any, Callable[[Any], dict[str, Any]]]] = [
            (
                "inbox (seen)",
                inbox.Q_FINISHED,
                lambda k: {"client_id": k.client_id, "message_id": k.message_id},
            ),
            ("inbox (new)", inbox.Q_FINISHED, lambda k: {"client_id": k.client_id, "message_id": f"n{k.m}"}),
            (
                "intent (seen)",
                sync_log.Q_LAST_ACTION,
                lambda k: {"client_id": k.client_id, "message_id": k.message_id},
            ),
            (
                "intent (new)",
                sync_log.Q_LAST_ACTION,
                lambda k: {"client_id": k.client_id, "message_id": f"n{k.m}"},
            ),
            ("link", sync_log.Q_LINK, lambda k: state(k, False)),
            (
                "link by external id",
                sync_log.Q_LINK_BY_EXTERNAL,
                lambda k: {
                    "client_id": k.client_id,
                    "provider": "generic_rest",
                    "entity": k.entity,
                    "external_id": k.external_id,
                },
            ),
            (
                "echo marks",
                marks.Q_MARKS,
                lambda k: marks.RecordRef(k.client_id, "generic_rest", k.entity, erp, k.external_id).params(),
            ),
            ("message state (new message)", sync_log.Q_MESSAGE_STATE, lambda k: state(k, True)),
            ("message state (redelivery)", sync_log.Q_MESSAGE_STATE, lambda k: state(k, False)),
        ]
        for name, stmt, params in runs:  # warm: the statement cache, the connection
            conn.execute(stmt, params(keys[0])).all()
            timed[name] = []
        for k in keys:
            for name, stmt, params in runs:
                p = params(k)
                start = time.perf_counter_ns()
                conn.execute(stmt, p).all()
                timed[name].append((time.perf_counter_ns() - start) / 1e6)
        # The server's execution time (EXPLAIN ANALYZE), apart from the round trip and this client's
        # scheduling: on a shared machine the p99 above is mostly waiting for a CPU.
        server: dict[str, list[float]] = {name: [] for name, _, _ in runs}
        for k in cold:
            for name, stmt, params in runs:
                sql = stmt.params(**params(k)).compile(engine, compile_kwargs={"literal_binds": True})
                plan: Any = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").scalar_one()
                server[name].append(float(plan[0]["Execution Time"]))  # planning apart: psycopg
                # prepares a statement run five times, as the worker's are
        conn.rollback()
    return {
        name: {**_ms(values), "server": _ms(server[name]) if server[name] else None}
        for name, values in timed.items()
    }


def _biggest_clients(conn: Connection) -> list[str]:
    rows = conn.exec_driver_sql(
        "SELECT client_id FROM bench_messages GROUP BY client_id ORDER BY count(*) DESC"
    ).scalars()
    ordered = list(rows)
    return [ordered[0], ordered[len(ordered) // 2]]


def _time(work: Callable[[], object], repeat: int) -> dict[str, float]:
    work()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        work()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return _ms(samples)


def operators(engine: Engine, url: str, repeat: int) -> dict[str, Any]:
    """``cwi synclog --client`` (its query in-process, and the command end to end) and the record timeline."""
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        big, middle = _biggest_clients(conn)
        record = conn.execute(
            text(
                "SELECT client_id, entity, cw_id FROM bench_messages "
                "WHERE client_id = :c ORDER BY m DESC LIMIT 1"
            ),
            {"c": big},
        ).one()
        for label, client in (("biggest client", big), ("median client", middle)):
            found[f"synclog --client ({label}) query"] = _time(
                partial(sync_log.entries, conn, client_id=client, limit=50), repeat
            )
        message = record_message(conn, record)
        found["synclog --message query"] = _time(
            lambda: sync_log.entries(conn, message_id=message, limit=50), repeat
        )
    env = {**os.environ, "CWI_DATABASE_URL": url, "CWI_ENV_FILE": ""}
    cwi = [str(ROOT / ".venv/bin/cwi"), "synclog", "--client", big, "--json"]
    found["cwi synclog --client (biggest) command, wall"] = _time(
        lambda: subprocess.run(cwi, env=env, check=True, capture_output=True), max(3, repeat // 5)
    )
    found["cwi --version (the interpreter and the CLI's start, for comparison)"] = _time(
        lambda: subprocess.run([cwi[0], "--version"], env=env, check=True, capture_output=True),
        max(3, repeat // 5),
    )
    found["record timeline (biggest client's busiest record)"] = _time(
        lambda: asyncio.run(_timeline(url, record)), max(3, repeat // 5)
    )
    found["record timeline reads (in-process)"] = _time(lambda: _timeline_reads(engine, record), repeat)
    return found


def throughput(url: str, events: int, rounds: int, cold: Callable[[], None]) -> dict[str, Any]:
    """``cwi bench`` (latency 0, 16 in flight, one process) on this database as it is (``--in-place``)
    and on an empty scratch database on the same server, interleaved ``rounds`` times, each run after
    ``cold()``."""
    from sqlalchemy.engine import make_url

    server = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    cwi = [str(ROOT / ".venv/bin/cwi"), "bench", "--events", str(events)]
    runs: dict[str, list[float]] = {"empty": [], "ten million rows": []}
    for _ in range(rounds):
        for label, extra in (
            ("empty", ["--database-url", server]),
            ("ten million rows", ["--database-url", url, "--in-place"]),
        ):
            cold()
            out = subprocess.run(cwi + extra, check=True, capture_output=True, text=True).stdout
            runs[label].append(json.loads(out.strip().splitlines()[-1])["events_per_s"])
    empty, full = statistics.median(runs["empty"]), statistics.median(runs["ten million rows"])
    return {"command": " ".join(["cwi", *cwi[1:]]), "events_per_s": runs, "ratio": round(full / empty, 3)}


def record_message(conn: Connection, record: Any) -> str:
    query = text("SELECT message_id FROM bench_messages WHERE cw_id = :c ORDER BY m DESC LIMIT 1")
    return str(conn.execute(query, {"c": record.cw_id}).scalar())


def _timeline_reads(engine: Engine, record: Any) -> None:
    with engine.connect() as conn:
        links = history.record_links(conn, record.client_id, record.entity, record.cw_id, KINDS)
        external = {str(x["external_id"]) for x in links if x["external_id"]}
        history.record_entries(conn, record.client_id, record.entity, record.cw_id, external, ())


async def _timeline(url: str, record: Any) -> None:
    """What the console's record page does: the dead letters, the links, the entries, the values."""
    from worker.bootstrap import open_app
    from worker.operators.dlq import DeadLetterOperations
    from worker.operators.timeline import Timeline
    from worker.settings import Settings

    async with open_app(Settings(database_url=url, metrics_port=None)) as app:
        await Timeline(app.db, DeadLetterOperations(app.db, app.bus)).life(
            record.client_id, record.entity, record.cw_id
        )


def explain(engine: Engine) -> dict[str, str]:
    """The plan of each operator query (EXPLAIN ANALYZE), first lines."""
    plans = {}
    with engine.connect() as conn:
        big, _ = _biggest_clients(conn)
        record = conn.execute(
            text(
                "SELECT client_id, entity, cw_id, external_id FROM bench_messages "
                "WHERE client_id = :c ORDER BY m DESC LIMIT 1"
            ),
            {"c": big},
        ).one()
        c = sync_log.log.c
        own = (c.entity == record.entity) & (c.cw_id == record.cw_id)
        ext = (c.entity == record.entity) & c.external_id.in_([record.external_id])
        from sqlalchemy import or_, select

        queries = {
            "synclog --client": sync_log.q_entries(big, None, 50),
            "record entries (ids)": select(c.message_id).where(
                c.client_id == record.client_id, or_(own, ext), c.message_id.is_not(None)
            ),
        }
        for name, query in queries.items():
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            lines = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}").scalars()
            plans[name] = "\n".join(lines)
    return plans


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CWI_BENCH_SYNCLOG_URL", DEFAULT_URL))
    parser.add_argument("--rows", type=whole(1_000, 1_000_000_000), default=10_000_000)
    parser.add_argument("--clients", type=whole(1, 100_000), default=200)
    parser.add_argument("--days", type=whole(1, 36_500), default=180)
    parser.add_argument("--samples", type=whole(1, 1_000_000), default=3000)
    parser.add_argument("--repeat", type=whole(1, 10_000), default=30, help="runs of each operator query")
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--prune", type=duration, default=None, help="also time `cwi synclog prune --older-than` this"
    )
    parser.add_argument(
        "--throughput",
        type=whole(0, MAX_EVENTS),
        default=0,
        metavar="EVENTS",
        help="also cwi bench here and on an empty database",
    )
    parser.add_argument("--rounds", type=whole(1, 100), default=2, help="of --throughput, interleaved")
    parser.add_argument("--cold", action="store_true", help="each measurement from cold caches")
    parser.add_argument("--cold-command", default=os.environ.get("CWI_BENCH_COLD_COMMAND", COLD_COMMAND))
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "synclog",
        "command": " ".join(["bench/synclog.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    try:
        engine = ensure_database(args.url)
    except (ArgumentError, ValueError):  # never the URL itself: it may hold a password
        parser.error("--url is not a PostgreSQL URL (like postgresql+psycopg://postgres@127.0.0.1:5432/db)")
    except OperationalError as exc:
        first = (str(exc.orig or exc).strip().splitlines() or [""])[0]
        print(f"synclog.py: error: cannot reach the database --url names: {first}", file=sys.stderr)
        raise SystemExit(1) from None
    counts = table_counts(engine)
    if args.regenerate or counts["sync_log"] < args.rows * 0.95:
        result["generated"] = generate(engine, args.rows, args.clients, args.days)
    result["indexes_built"] = build_indexes(engine)
    result["rows"] = table_counts(engine)
    cold = Cold(engine, args.cold_command if args.cold else None)
    cold()
    result["lookups"] = lookups(engine, args.samples)
    cold()
    result["operators"] = operators(engine, args.url, args.repeat)
    if args.explain:
        result["plans"] = explain(engine)
    if args.throughput:
        result["throughput"] = throughput(args.url, args.throughput, args.rounds, cold)
    result["cold_starts"] = cold.times
    if args.prune:
        result["prune"] = prune(engine, args.prune, args.samples)
    result["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    engine.dispose()
    print(json.dumps(result, indent=1))


def prune(engine: Engine, older_than: str, samples: int) -> dict[str, Any]:
    from config_db import retention
    from config_db.durations import parse_duration

    def run(work: retention.Work) -> retention.Step:
        with engine.begin() as conn:
            return work(conn)

    batches: list[float] = []
    started = time.perf_counter()
    pruned = retention.prune(
        run, parse_duration(older_than), on_batch=lambda _, seconds: batches.append(seconds * 1000)
    )
    return {
        "older_than": older_than,
        "deleted": pruned.deleted,
        "kept": pruned.kept,
        "values_deleted": pruned.values_deleted,
        "batches": pruned.batches,
        "seconds": round(time.perf_counter() - started, 1),
        "batch": _ms(batches) if batches else None,
        "rows_after": table_counts(engine),
        "lookups_after": lookups(engine, samples),
    }


if __name__ == "__main__":
    main()
