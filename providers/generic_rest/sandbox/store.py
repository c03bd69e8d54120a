"""Where the sandbox ERP keeps its records and the answers it gave per Idempotency-Key.

In memory by default (fast, gone on exit); a SQLite file when the demo wants the records to
survive a restart. Both are synchronous: one request's read-check-write runs without an ``await``
in between, so two concurrent requests cannot interleave inside it.
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


ReplayKey = tuple[str, str, str]
"""(Idempotency-Key, method, path)."""


class Store(Protocol):
    def get(self, entity: str, cw_id: str) -> StoredRecord | None: ...
    def save(self, record: StoredRecord) -> None: ...
    def next_external_id(self, entity: str) -> str: ...
    def records(self) -> list[StoredRecord]: ...
    def recall(self, key: ReplayKey) -> Reply | None: ...
    def remember(self, key: ReplayKey, reply: Reply) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    def __init__(self, *, max_replies: int = 200_000) -> None:
        self._records: dict[tuple[str, str], StoredRecord] = {}
        self._counts: dict[str, int] = {}
        # Bounded so that a long benchmark cannot grow it without limit; redeliveries come soon.
        self._replies: OrderedDict[ReplayKey, Reply] = OrderedDict()
        self._max_replies = max_replies

    def get(self, entity: str, cw_id: str) -> StoredRecord | None:
        return self._records.get((entity, cw_id))

    def save(self, record: StoredRecord) -> None:
        self._records[(record.entity, record.cw_id)] = record

    def next_external_id(self, entity: str) -> str:
        self._counts[entity] = self._counts.get(entity, 0) + 1
        return f"GR-{entity}-{self._counts[entity]}"

    def records(self) -> list[StoredRecord]:
        return list(self._records.values())

    def recall(self, key: ReplayKey) -> Reply | None:
        return self._replies.get(key)

    def remember(self, key: ReplayKey, reply: Reply) -> None:
        self._replies[key] = reply
        if len(self._replies) > self._max_replies:
            self._replies.popitem(last=False)

    def reset(self) -> None:
        self._records.clear()
        self._counts.clear()
        self._replies.clear()

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    entity TEXT NOT NULL, cw_id TEXT NOT NULL, external_id TEXT NOT NULL, version INTEGER NOT NULL,
    data TEXT NOT NULL, deleted INTEGER NOT NULL, PRIMARY KEY (entity, cw_id));
CREATE TABLE IF NOT EXISTS replies (
    idempotency_key TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT, PRIMARY KEY (idempotency_key, method, path));
"""


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, entity: str, cw_id: str) -> StoredRecord | None:
        row = self._db.execute(
            "SELECT external_id, version, data, deleted FROM records WHERE entity = ? AND cw_id = ?",
            (entity, cw_id),
        ).fetchone()
        if row is None:
            return None
        return StoredRecord(entity, cw_id, row[0], row[1], json.loads(row[2]), bool(row[3]))

    def save(self, record: StoredRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.entity,
                record.cw_id,
                record.external_id,
                record.version,
                json.dumps(record.data),
                record.deleted,
            ),
        )

    def next_external_id(self, entity: str) -> str:
        # Records are only ever flagged deleted, never removed, so the count only grows.
        (count,) = self._db.execute("SELECT COUNT(*) FROM records WHERE entity = ?", (entity,)).fetchone()
        return f"GR-{entity}-{count + 1}"

    def records(self) -> list[StoredRecord]:
        rows = self._db.execute(
            "SELECT entity, cw_id, external_id, version, data, deleted FROM records"
        ).fetchall()
        return [StoredRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), bool(r[5])) for r in rows]

    def recall(self, key: ReplayKey) -> Reply | None:
        row = self._db.execute(
            "SELECT status, body FROM replies WHERE idempotency_key = ? AND method = ? AND path = ?", key
        ).fetchone()
        if row is None:
            return None
        return Reply(row[0], None if row[1] is None else json.loads(row[1]))

    def remember(self, key: ReplayKey, reply: Reply) -> None:
        body = None if reply.body is None else json.dumps(reply.body)
        self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)", (*key, reply.status, body))

    def reset(self) -> None:
        self._db.executescript("DELETE FROM records; DELETE FROM replies;")

    def close(self) -> None:
        self._db.close()


def open_store(db_path: str | None) -> Store:
    return MemoryStore() if db_path is None else SqliteStore(db_path)
