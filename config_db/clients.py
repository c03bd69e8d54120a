"""Clients and their provider connections."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Insert, Select, Update, insert, select, update

from config_db.models import clients, provider_connections, utcnow
from config_db.secrets import SecretBox

connections = provider_connections


class ClientExistsError(Exception):
    pass


class ClientNotFoundError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StoredConnection:
    """A connection row as stored: ``credentials`` is still ciphertext."""

    client_id: str
    kind: str
    base_url: str
    settings: Mapping[str, str]
    credentials: str
    enabled: bool


def q_client(client_id: str) -> Select[tuple[str, str]]:
    return select(clients.c.id, clients.c.name).where(clients.c.id == client_id)


def q_clients() -> Select[tuple[str, str]]:
    return select(clients.c.id, clients.c.name).order_by(clients.c.id)


def q_connection(client_id: str) -> Select[tuple[str, str, str, dict[str, str], str, bool]]:
    c = connections.c
    return select(c.client_id, c.kind, c.base_url, c.settings, c.credentials, c.enabled).where(
        c.client_id == client_id
    )


def q_connections() -> Select[tuple[str, str, str, dict[str, str], str, bool]]:
    c = connections.c
    return select(c.client_id, c.kind, c.base_url, c.settings, c.credentials, c.enabled).order_by(c.client_id)


def s_insert_client(client_id: str, name: str) -> Insert:
    return insert(clients).values(id=client_id, name=name, created_at=utcnow())


def s_insert_connection(conn: StoredConnection) -> Insert:
    return insert(connections).values(
        client_id=conn.client_id,
        kind=conn.kind,
        base_url=conn.base_url,
        settings=dict(conn.settings),
        credentials=conn.credentials,
        enabled=conn.enabled,
        updated_at=utcnow(),
    )


def s_update_connection(conn: StoredConnection) -> Update:
    return (
        update(connections)
        .where(connections.c.client_id == conn.client_id)
        .values(
            kind=conn.kind,
            base_url=conn.base_url,
            settings=dict(conn.settings),
            credentials=conn.credentials,
            enabled=conn.enabled,
            updated_at=utcnow(),
        )
    )


def add_client(db: Connection, client_id: str, name: str) -> None:
    if db.execute(q_client(client_id)).first() is not None:
        raise ClientExistsError(f"client {client_id!r} already exists")
    db.execute(s_insert_client(client_id, name))


def list_clients(db: Connection) -> list[tuple[str, str]]:
    return [(row.id, row.name) for row in db.execute(q_clients())]


def _stored(row: object) -> StoredConnection:
    return StoredConnection(*row)  # type: ignore[misc]


def get_connection(db: Connection, client_id: str, *, locked: bool = False) -> StoredConnection | None:
    """``locked``: its row held until the transaction ends where the database can (PostgreSQL)."""
    query = q_connection(client_id)
    row = db.execute(query.with_for_update() if locked else query).first()
    return None if row is None else _stored(row)


def list_connections(db: Connection) -> list[StoredConnection]:
    return [_stored(row) for row in db.execute(q_connections())]


def set_connection(db: Connection, conn: StoredConnection) -> None:
    """Create or replace a client's connection."""
    if db.execute(q_client(conn.client_id)).first() is None:
        raise ClientNotFoundError(f"client {conn.client_id!r} does not exist: add it with `cwi clients add`")
    if get_connection(db, conn.client_id) is None:
        db.execute(s_insert_connection(conn))
    else:
        db.execute(s_update_connection(conn))


def rotate_credentials(db: Connection, client_id: str, box: SecretBox) -> bool:
    """Re-encrypt one connection's credentials with the newest key; False when they already were
    (or it has none). One connection per transaction: a rotation can stop and run again."""
    stored = get_connection(db, client_id, locked=True)  # a set meanwhile is not undone
    if stored is None or box.is_current(stored.credentials):
        return False
    rotated = box.rotate(stored.credentials, owner=f"client {client_id!r}")
    set_connection(db, dataclasses.replace(stored, credentials=rotated))
    return True
