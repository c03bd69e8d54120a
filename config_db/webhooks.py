"""Webhook endpoints (a URL token per connection, stored hashed) and receipts of vendor deliveries."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Delete, Insert, Select, delete, insert, select
from sqlalchemy.exc import IntegrityError

from config_db.chunks import in_chunks
from config_db.models import utcnow, webhook_endpoints, webhook_receipts

endpoints = webhook_endpoints
receipts = webhook_receipts

_MAX_KEY = 255  # the delivery_key column

# The connection credential holding the secret the ERP signs its calls with.
SECRET_CREDENTIAL = "webhook_secret"  # noqa: S105 - the name, not a secret


class EndpointExistsError(Exception):
    """The client already has a webhook endpoint; its token cannot be shown again, only rotated."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    client_id: str
    provider: str
    created_at: dt.datetime


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def receipt_key(delivery_key: str) -> str:
    """The key as stored: a vendor's overlong id is replaced by its digest (same id, same key)."""
    if len(delivery_key) <= _MAX_KEY:
        return delivery_key
    return "sha256:" + hashlib.sha256(delivery_key.encode()).hexdigest()


def q_endpoint(token_hash: str) -> Select[Any]:
    e = endpoints.c
    return select(e.client_id, e.provider, e.created_at).where(e.token_hash == token_hash)


def q_client_endpoints(client_id: str) -> Select[Any]:
    e = endpoints.c
    return select(e.client_id, e.provider, e.created_at).where(e.client_id == client_id)


def s_insert_endpoint(token_hash: str, client_id: str, provider: str) -> Insert:
    return insert(endpoints).values(
        token_hash=token_hash, client_id=client_id, provider=provider, created_at=utcnow()
    )


def s_delete_endpoints(client_id: str, *, before: dt.datetime | None = None) -> Delete:
    statement = delete(endpoints).where(endpoints.c.client_id == client_id)
    return statement if before is None else statement.where(endpoints.c.created_at < before)


def q_receipts(client_id: str, provider: str, keys: Collection[str]) -> Select[Any]:
    r = receipts.c
    return select(r.delivery_key).where(
        r.client_id == client_id, r.provider == provider, r.delivery_key.in_(list(keys))
    )


def s_insert_receipt(client_id: str, provider: str, key: str) -> Insert:
    return insert(receipts).values(
        client_id=client_id, provider=provider, delivery_key=key, received_at=utcnow()
    )


ROTATION_GRACE = dt.timedelta(hours=24)
"""How long a client's previous webhook URL keeps working after a new one was issued: the ERP may
still deliver (or retry) on the old URL until its subscription moves to the new one."""


def find_endpoint(db: Connection, token: str, *, grace: dt.timedelta = ROTATION_GRACE) -> Endpoint | None:
    """The endpoint a URL token opens; None for a token we never issued, or one whose client got a
    newer token more than ``grace`` ago (rotated away)."""
    row = db.execute(q_endpoint(hash_token(token))).first()
    if row is None:
        return None
    found = Endpoint(row.client_id, row.provider, row.created_at)
    newest = max((e.created_at for e in client_endpoints(db, found.client_id)), default=found.created_at)
    if newest > found.created_at and utcnow() - newest > grace:
        return None
    return found


def client_endpoints(db: Connection, client_id: str) -> list[Endpoint]:
    return [
        Endpoint(r.client_id, r.provider, r.created_at) for r in db.execute(q_client_endpoints(client_id))
    ]


def create_endpoint(db: Connection, client_id: str, provider: str, *, rotate: bool = False) -> str:
    """A new URL token for the client's connection; with ``rotate`` the previous one keeps working
    for ``ROTATION_GRACE`` (older ones, already past it, go now).

    Returns the token in clear: only its hash is stored, so this is the one chance to show it.
    """
    existing = client_endpoints(db, client_id)
    if not rotate and existing:
        raise EndpointExistsError(
            f"client {client_id!r} already has a webhook URL; its token is stored hashed and cannot be "
            "shown again: use --rotate to issue a new URL (the old one keeps working for a day)"
        )
    if existing:
        newest = max(e.created_at for e in existing)
        db.execute(s_delete_endpoints(client_id, before=newest))  # only the previous one stays, for now
    token = new_token()
    db.execute(s_insert_endpoint(hash_token(token), client_id, provider))
    return token


def withdraw_endpoint(db: Connection, token: str) -> None:
    """Take back a token just issued (its registration at the ERP failed): the previous one stays."""
    db.execute(delete(endpoints).where(endpoints.c.token_hash == hash_token(token)))


def received_keys(db: Connection, client_id: str, provider: str, keys: Collection[str]) -> set[str]:
    """Which of these delivery keys (as stored, see ``receipt_key``) were received before."""
    found: set[str] = set()
    for chunk in in_chunks(sorted(set(keys))):  # a call may report ten thousand event ids
        found.update(db.execute(q_receipts(client_id, provider, chunk)).scalars())
    return found


def record_receipts(db: Connection, client_id: str, provider: str, keys: Collection[str]) -> None:
    """Remember these deliveries as published, in one statement. A key recorded meanwhile by a
    concurrent copy of the same delivery is fine: then each insert runs in a savepoint of its own,
    so that one conflict aborts nothing else."""
    new = sorted(set(keys) - received_keys(db, client_id, provider, keys))
    if not new:
        return
    rows = [
        {"client_id": client_id, "provider": provider, "delivery_key": k, "received_at": utcnow()}
        for k in new
    ]
    try:
        with db.begin_nested():
            db.execute(insert(receipts), rows)
        return
    except IntegrityError:
        pass
    for key in set(new) - received_keys(db, client_id, provider, new):
        try:
            with db.begin_nested():
                db.execute(s_insert_receipt(client_id, provider, key))
        except IntegrityError:
            continue
