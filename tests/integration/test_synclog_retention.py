"""Sync-log retention (``config_db.retention``, ``cwi synclog prune``) on SQLite and PostgreSQL.

Pruning deletes what is old and finished, in batches, and never what the worker reads: after every
row older than the window is gone, a redelivery of a finished message is still a duplicate, the echo
of our own write is still ignored, an open intent is still recovered, and the replay of a dead letter
whose failed push was in doubt is still pushed (not taken as superseded).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from functools import partial

import pytest
from sqlalchemy import func, select

from config_db import inbox, retention, sync_log, values
from config_db.database import make_engine
from config_db.durations import BadDuration, format_duration, parse_duration
from config_db.sync_log import Entry
from tests.memory_sides import RECORD, Sides, fields_of
from worker.db import Database
from worker.housekeeping import prune_synclog
from worker.messaging.outcomes import Complete, DeadLetter, Retry

HOUR = dt.timedelta(hours=1)


def _everything_old() -> dt.datetime:
    """A "now" that makes every row written by the test older than an hour's window."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def _count(db: Database, **where: str) -> int:
    query = select(func.count()).select_from(sync_log.log)
    for name, value in where.items():
        query = query.where(sync_log.log.c[name] == value)
    return int(db.run_sync(lambda conn: conn.execute(query).scalar()) or 0)


def _prune_all(db: Database, **options: object) -> retention.Pruned:
    return retention.prune(db.run_sync, HOUR, now=_everything_old(), **options)  # type: ignore[arg-type]


@pytest.fixture
async def sides(db_url: str) -> AsyncIterator[Sides]:
    db = Database(make_engine(db_url))
    yield Sides(db)
    await db.close()


def _record(
    db: Database, at: dt.datetime, action: str, message: str | None, client: str | None = "acme"
) -> None:
    entry = Entry(direction="outbound", action=action, message_id=message, client_id=client, at=at)
    db.run_sync(lambda conn: sync_log.record(conn, entry))


def test_old_rows_of_finished_messages_go_in_batches_and_unfinished_ones_stay(db_url: str) -> None:
    db = Database(make_engine(db_url))
    now = dt.datetime.now(dt.UTC)
    old, new = now - dt.timedelta(days=100), now - dt.timedelta(days=1)
    for n in range(7):  # finished long ago: both rows go
        _record(db, old, "pending", f"done-{n}")
        _record(db, old, "created", f"done-{n}")
        db.run_sync(partial(inbox.mark_finished, client_id="acme", message_id=f"done-{n}", outcome="created"))
    _record(db, old, "pending", "dead")  # dead-lettered long ago, never finished: kept
    _record(db, old, "failed", "dead")
    _record(db, old, "pending", "open")  # an open intent: kept
    _record(db, old, "pending", None, client=None)  # an old row no message needs: goes
    _record(db, new, "pending", "recent")  # newer than the window: kept
    _record(db, new, "created", "recent")
    assert _count(db) == 20
    ninety = parse_duration("90d")

    dry = retention.prune(db.run_sync, ninety, batch=4, dry_run=True)
    assert (dry.deleted, dry.kept, dry.dry_run) == (15, 3, True)
    assert _count(db) == 20, "a dry run deletes nothing"

    batches: list[retention.Step] = []
    done = retention.prune(db.run_sync, ninety, batch=4, on_batch=lambda step, _: batches.append(step))
    assert (done.deleted, done.kept) == (15, 3)
    assert len(batches) == 5 and max(step.deleted for step in batches) <= 4
    remaining = db.run_sync(lambda conn: sync_log.entries(conn, limit=100))
    assert sorted((r["message_id"], r["action"]) for r in remaining) == [
        ("dead", "failed"),
        ("dead", "pending"),
        ("open", "pending"),
        ("recent", "created"),
        ("recent", "pending"),
    ]
    again = retention.prune(db.run_sync, ninety, batch=4)
    assert (again.deleted, again.kept) == (0, 3)
    db.engine.dispose()


async def test_after_pruning_everything_old_the_worker_still_recognises_what_it_did(sides: Sides) -> None:
    db = sides.db
    first = sides.cw_change("cw1")
    assert await sides.handle(first) == Complete("created")
    assert sides.erp.user_edit(RECORD, "erp1")
    assert await sides.handle(sides.webhook(1)) == Complete("inbound")
    # A change whose pushes fail in doubt (503 before the ERP applied it), then dead-lettered.
    sides.erp.faults.extend(["before", "before"])
    doubtful = sides.cw_change("cw2")
    assert isinstance(await sides.handle(doubtful), Retry)
    assert isinstance(await sides.handle_retry(doubtful), DeadLetter)
    # A crash between push and settle: the intent journalled, no outcome.
    crashed = sides.cw_change("cw3", cw_id="c9")
    crashed_state = db.run_sync(
        lambda conn: sync_log.message_state(conn, "acme", crashed["id"], "generic_rest", "customer", "c9")
    )
    assert not crashed_state.open_intent
    entry = Entry(direction="outbound", action="pending", message_id=crashed["id"], client_id="acme")
    db.run_sync(lambda conn: sync_log.record(conn, entry))
    before = _count(db)

    pruned = _prune_all(db, batch=2)

    assert pruned.deleted > 0 and _count(db) == before - pruned.deleted
    assert _count(db, message_id=first["id"]) == 0, "the finished message's rows are gone"
    # A redelivery of a finished message: the inbox recognises it.
    assert await sides.handle(first) == Complete("duplicate")
    # The echo of our own write, late: still ignored (echo marks and links are not the sync log).
    assert await sides.handle(sides.webhook(0)) == Complete("echo_ignored")
    assert await sides.handle(sides.cw.events[0]) == Complete("echo_ignored")
    # The open intent is still seen: the next attempt looks the record up before creating it.
    state = db.run_sync(
        lambda conn: sync_log.message_state(conn, "acme", crashed["id"], "generic_rest", "customer", "c9")
    )
    assert state.open_intent and state.finished is None
    # The replay of the dead letter: its own failed attempt moved the record's order key, and the
    # journal still says it was attempted, so it is pushed (not "superseded").
    assert await sides.handle(doubtful) == Complete("updated")
    assert fields_of(sides.erp.records[RECORD].value) == {"number": "1001", "name": "cw2"}
    # Nothing further is lost: the worker goes on as before.
    assert await sides.handle(sides.cw_change("cw4")) == Complete("updated")
    assert sides.erp_value() == {"number": "1001", "name": "cw4"}


async def test_the_housekeeping_prune_deletes_old_rows_of_finished_messages_and_superseded_values(
    sides: Sides,
) -> None:
    db = sides.db
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    _record(db, old, "pending", "gone")
    db.run_sync(partial(inbox.mark_finished, client_id="acme", message_id="gone", outcome="created"))
    assert await sides.handle(sides.cw_change("cw1")) == Complete("created")
    _value(db, old, "gone", "cw1", "before")  # the record's values, superseded by a recent write's
    _value(db, dt.datetime.now(dt.UTC), "recent", "cw1", "after")
    assert await prune_synclog(db, dt.timedelta(days=1), batch=1) == 1
    assert _count(db, message_id="gone") == 0 and _count(db) == 2
    assert _values_left(db) == [("acme", "cw1", "recent")]


def _value(db: Database, at: dt.datetime, message: str, cw_id: str, name: str, client: str = "acme") -> None:
    row = {"client_id": client, "message_id": message, "entity": "customer", "cw_id": cw_id}
    db.run_sync(
        lambda conn: values.add(conn, **row, data=f'{{"name": "{name}"}}', number=None, name=name, at=at)
    )


def _values_left(db: Database) -> list[tuple[str, str, str]]:
    query = select(values.values.c.client_id, values.values.c.cw_id, values.values.c.message_id)
    return sorted(tuple(row) for row in db.run_sync(lambda conn: conn.execute(query).all()))


def test_old_record_values_go_except_the_newest_of_each_record(db_url: str) -> None:
    """The console's "values written": an old row goes once a newer one of the same record follows
    it; the newest of a record stays whatever its age, so the record is still found by its name."""
    db = Database(make_engine(db_url))
    now = dt.datetime.now(dt.UTC)
    old, new = now - dt.timedelta(days=100), now - dt.timedelta(days=1)
    for n in range(3):  # three old writes of one record: the first two go
        _value(db, old, f"a{n}", "c1", f"Alpha {n}")
    _value(db, old, "b0", "c2", "Beta")  # the only write of its record, long ago: kept
    _value(db, old, "g0", "c3", "Gamma old")  # an old write followed by a recent one: goes
    _value(db, new, "g1", "c3", "Gamma")
    _value(db, old, "o0", "c1", "Other's", client="other")  # another client's record of the same id
    _value(db, new, "a3", "c9", "Recent")  # newer than the window: kept
    ninety = parse_duration("90d")

    dry = retention.prune(db.run_sync, ninety, batch=3, dry_run=True)
    assert (dry.values_deleted, dry.values_kept) == (3, 3)
    assert len(_values_left(db)) == 8, "a dry run deletes nothing"

    done = retention.prune(db.run_sync, ninety, batch=3)
    assert (done.values_deleted, done.values_kept, done.deleted) == (3, 3, 0)
    assert _values_left(db) == [
        ("acme", "c1", "a2"),
        ("acme", "c2", "b0"),
        ("acme", "c3", "g1"),
        ("acme", "c9", "a3"),
        ("other", "c1", "o0"),
    ]
    found = db.run_sync(lambda conn: values.find(conn, "acme", "Beta"))
    assert found == [("customer", "c2", None, "Beta")], "a record written long ago is still found"
    assert [
        v.message_id for v in db.run_sync(lambda conn: values.of_record(conn, "acme", "customer", "c1"))
    ] == ["a2"]
    again = retention.prune(db.run_sync, ninety, batch=3)
    assert (again.values_deleted, again.values_kept) == (0, 3)
    db.engine.dispose()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90d", dt.timedelta(days=90)), ("12h", dt.timedelta(hours=12)), ("30m", dt.timedelta(minutes=30))],
)
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected
    assert format_duration(expected) == text


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-1d", "1.5d", "90 days", "1y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(BadDuration, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["36501d", "99999999d", "5215w", "99999999999999999999w", "3153600001s"])
def test_durations_beyond_a_hundred_years_are_refused_as_a_slip(text: str) -> None:
    """Their start would be before year 1 (an OverflowError in the prune) or nearly so."""
    with pytest.raises(BadDuration, match="at most 36500d"):
        parse_duration(text)
    assert parse_duration("36500d") == parse_duration("5214w") + dt.timedelta(days=2)


def test_zero_is_a_duration_only_where_it_is_asked_for() -> None:
    assert parse_duration("0s", zero=True) == dt.timedelta(0)
    with pytest.raises(BadDuration, match="above 0"):
        parse_duration("0s")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("90d", dt.timedelta(days=90)), ("12h", dt.timedelta(hours=12)), ("off", None), ("", None)],
)
def test_the_retention_setting(monkeypatch: pytest.MonkeyPatch, value: str, expected: object) -> None:
    from worker.settings import load_settings

    monkeypatch.setenv("CWI_ENV_FILE", "")
    monkeypatch.setenv("CWI_SYNCLOG_RETENTION", value)
    assert load_settings().synclog_retention == expected
    monkeypatch.delenv("CWI_SYNCLOG_RETENTION")
    assert load_settings().synclog_retention is None, "off by default"
