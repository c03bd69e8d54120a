"""Where the sandbox ERP keeps its records and the answers it gave per Idempotency-Key.

In memory by default (fast, gone on exit); a SQLite file when the demo wants the records to
survive a restart. Both are synchronous: one request's read-check-write runs without an ``await``
in between, so two concurrent requests cannot interleave inside it.

Every change of a record gives it the next number of one change sequence (``seq``): the listing
orders by it, and its cursor is the last ``seq`` returned, so a record changed during a listing
moves behind the cursor and is listed again later instead of being skipped.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoredRecord:
    entity: str
    cw_id: str
    external_id: str
    version: int
    data: dict[str, Any]
    deleted: bool = False
    seq: int = 0
    changed_at: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "cw_id": self.cw_id,
            "external_id": self.external_id,
            "version": self.version,
            "deleted": self.deleted,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer worth repeating to a redelivered request."""

    status: int
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Remembered:
    """What the sandbox keeps per Idempotency-Key: the request's fingerprint and its answer."""

    fingerprint: str
    reply: Reply


class Store(Protocol):
    def get(self, entity: str, cw_id: str) -> StoredRecord | None: ...
    def save(self, record: StoredRecord) -> StoredRecord:
        """Store the record as the latest change (the next ``seq``); return it as stored."""
        ...

    def next_external_id(self, entity: str) -> str: ...
    def records(self) -> list[StoredRecord]: ...
    def changes(self, entity: str, after_seq: int, since: str | None, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` records of ``entity`` with ``seq > after_seq`` (changed at or after
        ``since``, an ISO timestamp in UTC), in ``seq`` order."""
        ...

    def last_seq(self) -> int:
        """The ``seq`` of the latest change (0 before any)."""
        ...

    def recall(self, key: str) -> Remembered | None: ...
    def remember(self, key: str, remembered: Remembered) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    def __init__(self, *, max_replies: int = 200_000) -> None:
        self._records: dict[tuple[str, str], StoredRecord] = {}
        self._counts: dict[str, int] = {}
        self._seq = 0
        # Bounded so that a long benchmark cannot grow it without limit; redeliveries come soon.
        self._replies: OrderedDict[str, Remembered] = OrderedDict()
        self._max_replies = max_replies

    def get(self, entity: str, cw_id: str) -> StoredRecord | None:
        return self._records.get((entity, cw_id))

    def save(self, record: StoredRecord) -> StoredRecord:
        self._seq += 1
        stored = _with_seq(record, self._seq)
        key = (record.entity, record.cw_id)
        self._records.pop(key, None)  # re-inserted last: the dict stays in seq order
        self._records[key] = stored
        return stored

    def next_external_id(self, entity: str) -> str:
        self._counts[entity] = self._counts.get(entity, 0) + 1
        return f"GR-{entity}-{self._counts[entity]}"

    def records(self) -> list[StoredRecord]:
        return list(self._records.values())

    def changes(self, entity: str, after_seq: int, since: str | None, limit: int) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        for record in self._records.values():  # in seq order (see save)
            if record.seq <= after_seq or record.entity != entity:
                continue
            if since is not None and record.changed_at < since:
                continue
            out.append(record)
            if len(out) == limit:
                break
        return out

    def last_seq(self) -> int:
        return self._seq

    def recall(self, key: str) -> Remembered | None:
        return self._replies.get(key)

    def remember(self, key: str, remembered: Remembered) -> None:
        self._replies[key] = remembered
        if len(self._replies) > self._max_replies:
            self._replies.popitem(last=False)

    def reset(self) -> None:
        self._records.clear()
        self._counts.clear()
        self._seq = 0
        self._replies.clear()

    def close(self) -> None:
        pass


def _with_seq(record: StoredRecord, seq: int) -> StoredRecord:
    return StoredRecord(
        record.entity,
        record.cw_id,
        record.external_id,
        record.version,
        record.data,
        record.deleted,
        seq,
        record.changed_at,
    )


# Tables of interface v1 (a change sequence, fingerprinted answers); files of older sandboxes
# keep their old tables, unused.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records_v1 (
    entity TEXT NOT NULL, cw_id TEXT NOT NULL, external_id TEXT NOT NULL, version INTEGER NOT NULL,
    data TEXT NOT NULL, deleted INTEGER NOT NULL, seq INTEGER NOT NULL UNIQUE, changed_at TEXT NOT NULL,
    PRIMARY KEY (entity, cw_id));
CREATE TABLE IF NOT EXISTS answers_v1 (
    idempotency_key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT);
"""
_COLUMNS = "entity, cw_id, external_id, version, data, deleted, seq, changed_at"


def _row(r: Any) -> StoredRecord:
    return StoredRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), bool(r[5]), r[6], r[7])


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, entity: str, cw_id: str) -> StoredRecord | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM records_v1 WHERE entity = ? AND cw_id = ?", (entity, cw_id)
        ).fetchone()
        return None if row is None else _row(row)

    def save(self, record: StoredRecord) -> StoredRecord:
        stored = _with_seq(record, self.last_seq() + 1)
        self._db.execute(
            "INSERT OR REPLACE INTO records_v1 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.entity,
                stored.cw_id,
                stored.external_id,
                stored.version,
                json.dumps(stored.data),
                stored.deleted,
                stored.seq,
                stored.changed_at,
            ),
        )
        return stored

    def next_external_id(self, entity: str) -> str:
        # Records are only ever flagged deleted, never removed, so the count only grows.
        (count,) = self._db.execute("SELECT COUNT(*) FROM records_v1 WHERE entity = ?", (entity,)).fetchone()
        return f"GR-{entity}-{count + 1}"

    def records(self) -> list[StoredRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM records_v1 ORDER BY seq").fetchall()
        return [_row(r) for r in rows]

    def changes(self, entity: str, after_seq: int, since: str | None, limit: int) -> list[StoredRecord]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM records_v1 WHERE entity = ? AND seq > ? AND changed_at >= ? "
            "ORDER BY seq LIMIT ?",
            (entity, after_seq, since or "", limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def last_seq(self) -> int:
        (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records_v1").fetchone()
        return int(last)

    def recall(self, key: str) -> Remembered | None:
        row = self._db.execute(
            "SELECT fingerprint, status, body FROM answers_v1 WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return Remembered(row[0], Reply(row[1], None if row[2] is None else json.loads(row[2])))

    def remember(self, key: str, remembered: Remembered) -> None:
        reply = remembered.reply
        body = None if reply.body is None else json.dumps(reply.body)
        self._db.execute(
            "INSERT OR REPLACE INTO answers_v1 VALUES (?, ?, ?, ?)",
            (key, remembered.fingerprint, reply.status, body),
        )

    def reset(self) -> None:
        self._db.executescript("DELETE FROM records_v1; DELETE FROM answers_v1;")

    def close(self) -> None:
        self._db.close()


def open_store(db_path: str | None) -> Store:
    return MemoryStore() if db_path is None else SqliteStore(db_path)
