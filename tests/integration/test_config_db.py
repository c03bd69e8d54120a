"""config_db on SQLite and PostgreSQL: clients, encrypted connections, sync log, inbox, migrations."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, select

from config_db import clients, inbox, sync_log
from config_db.migrate import current_revision, head_revision, upgrade
from config_db.models import metadata, provider_connections
from config_db.secrets import SecretBox, SecretKeyError


def test_clients_and_connections_round_trip(engine: Engine) -> None:
    box = SecretBox("k" * 32)
    with engine.begin() as db:
        clients.add_client(db, "acme", "Acme AS")
        with pytest.raises(clients.ClientExistsError):
            clients.add_client(db, "acme", "again")
        stored = clients.StoredConnection(
            "acme", "generic_rest", "http://erp", {"a": "1"}, box.encrypt({"token": "s3cret-token"}), True
        )
        clients.set_connection(db, stored)
        clients.set_connection(db, dataclasses.replace(stored, base_url="http://erp2"))
    with engine.connect() as db:
        got = clients.get_connection(db, "acme")
        assert got is not None and got.base_url == "http://erp2" and got.settings == {"a": "1"}
        assert box.decrypt(got.credentials) == {"token": "s3cret-token"}
        assert clients.list_clients(db) == [("acme", "Acme AS")]
        raw = db.execute(select(provider_connections.c.credentials)).scalar_one()
        assert "s3cret-token" not in raw  # encrypted at rest


def test_connection_needs_an_existing_client(engine: Engine) -> None:
    with engine.begin() as db, pytest.raises(clients.ClientNotFoundError):
        clients.set_connection(
            db, clients.StoredConnection("ghost", "generic_rest", "http://x", {}, "", True)
        )


def test_wrong_secret_key_is_a_clear_error() -> None:
    token = SecretBox("right-key").encrypt({"token": "t"})
    with pytest.raises(SecretKeyError, match="holds none of the keys they were stored with"):
        SecretBox("wrong-key").decrypt(token)
    with pytest.raises(SecretKeyError, match="CWI_SECRET_KEY is not set"):
        SecretBox(None)


def test_open_intent_is_closed_only_by_an_outcome(engine: Engine) -> None:
    entry = sync_log.Entry(direction="outbound", action="pending", message_id="m1", client_id="acme")
    with engine.begin() as db:
        assert not sync_log.has_open_intent(db, "acme", "m1")
        sync_log.record(db, entry)
        assert sync_log.has_open_intent(db, "acme", "m1")
        sync_log.record(
            db, sync_log.Entry(direction="outbound", action="retry", message_id="m1", client_id="acme")
        )
        assert sync_log.has_open_intent(db, "acme", "m1"), "a transient failure leaves the write in doubt"
        assert not sync_log.has_open_intent(db, "other", "m1")
        sync_log.record(
            db, sync_log.Entry(direction="outbound", action="created", message_id="m1", client_id="acme")
        )
        assert not sync_log.has_open_intent(db, "acme", "m1")
        assert [e["action"] for e in sync_log.entries(db, message_id="m1")] == ["created", "retry", "pending"]


def test_links_upsert(engine: Engine) -> None:
    with engine.begin() as db:
        assert sync_log.get_link(db, "acme", "generic_rest", "customer", "c1") is None
        sync_log.save_link(
            db, "acme", "generic_rest", "customer", "c1", sync_log.Link("X1", "1", "h1", False)
        )
        sync_log.save_link(
            db, "acme", "generic_rest", "customer", "c1", sync_log.Link("X1", "2", "h2", False)
        )
        assert sync_log.get_link(db, "acme", "generic_rest", "customer", "c1") == sync_log.Link(
            "X1", "2", "h2", False
        )


def test_message_state_reads_the_inbox_the_last_intent_and_the_link_with_its_types(engine: Engine) -> None:
    at = dt.datetime(2026, 3, 1, 12, 30, 5, 123000, tzinfo=dt.UTC)
    link = sync_log.Link("X1", "v7", "h7", True, "fp", 42, at)
    with engine.begin() as db:
        empty = sync_log.message_state(db, "acme", "m1", "generic_rest", "customer", "c1")
        assert empty == sync_log.MessageState(None, False, None, False)
        sync_log.save_link(db, "acme", "generic_rest", "customer", "c1", link, exists=False)
        pending = sync_log.Entry(direction="outbound", action="pending", message_id="m1", client_id="acme")
        sync_log.record(db, pending)
        other = sync_log.Entry(direction="outbound", action="failed", message_id="m1", client_id="globex")
        sync_log.record(db, other)
        state = sync_log.message_state(db, "acme", "m1", "generic_rest", "customer", "c1")
        assert state == sync_log.MessageState(None, True, link, True)
        assert isinstance(state.link, sync_log.Link) and state.link.deleted is True
        sync_log.record(db, dataclasses.replace(pending, action="updated"))
        inbox.mark_finished(db, "acme", "m1", "updated")
        assert sync_log.message_state(db, "acme", "m1", "generic_rest", "customer", "c1") == (
            sync_log.MessageState("updated", False, link, True)
        )
        assert sync_log.message_state(db, "acme", "m1", "generic_rest", "customer", "c2").link is None


def test_inbox_records_once(engine: Engine) -> None:
    with engine.begin() as db:
        assert inbox.finished_outcome(db, "acme", "m1") is None
        assert inbox.mark_finished(db, "acme", "m1", "created") is True
        assert inbox.mark_finished(db, "acme", "m1", "updated") is False  # the first outcome stands
        assert inbox.finished_outcome(db, "acme", "m1") == "created"
        assert inbox.finished_outcome(db, "globex", "m1") is None


def test_migrations_build_exactly_the_models(unmigrated_engine: Engine) -> None:
    engine = unmigrated_engine
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    upgrade(engine)  # idempotent


def test_credentials_rotate_to_the_newest_key_and_still_decrypt_meanwhile(engine: Engine) -> None:
    from config_db.secrets import generate_key

    old, new = "an old passphrase", generate_key()
    legacy = _legacy_box(old)
    with engine.begin() as conn:
        clients.add_client(conn, "acme", "Acme")
        clients.add_client(conn, "globex", "Globex")
        for client, box in (("acme", legacy), ("globex", SecretBox(old))):
            stored = clients.StoredConnection(
                client, "generic_rest", "http://x", {}, box.encrypt({"token": client}), True
            )
            clients.set_connection(conn, stored)
    both = SecretBox(f"{new},{old}")
    with engine.begin() as conn:
        assert [both.decrypt(c.credentials) for c in clients.list_connections(conn)] == [
            {"token": "acme"},
            {"token": "globex"},
        ], "during the roll-out both keys decrypt, the pre-rotation format included"
        assert clients.rotate_credentials(conn, "acme", both)
    with engine.begin() as conn:
        assert clients.rotate_credentials(conn, "globex", both)
        assert not clients.rotate_credentials(conn, "acme", both), "already rotated: resumable"
    only_new = SecretBox(new)
    with engine.begin() as conn:
        assert [only_new.decrypt(c.credentials)["token"] for c in clients.list_connections(conn)] == [
            "acme",
            "globex",
        ]
    with pytest.raises(SecretKeyError, match="none of the keys"):
        SecretBox(old).decrypt(clients_credentials(engine, "acme"))


def _legacy_box(passphrase: str) -> Any:
    """Credentials as versions before key rotation stored them (a bare SHA-256 of the passphrase)."""
    import base64
    import hashlib

    from cryptography.fernet import Fernet

    key = base64.urlsafe_b64encode(hashlib.sha256(b"cwi-credentials:" + passphrase.encode()).digest())

    class Legacy:
        def encrypt(self, credentials: dict[str, str]) -> str:
            return Fernet(key).encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()

    return Legacy()


def clients_credentials(engine: Engine, client_id: str) -> str:
    with engine.begin() as conn:
        stored = clients.get_connection(conn, client_id)
        assert stored is not None
        return stored.credentials
