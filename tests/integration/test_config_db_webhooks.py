"""Webhook endpoints and receipts on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sized

import pytest
from sqlalchemy import Engine, event

from config_db import clients, webhooks


def _client(engine: Engine, name: str = "acme") -> None:
    with engine.begin() as db:
        clients.add_client(db, name, name)


def test_a_token_is_stored_hashed_and_found_by_its_clear_text(engine: Engine) -> None:
    _client(engine)
    with engine.begin() as db:
        token = webhooks.create_endpoint(db, "acme", "tripletex")
        stored = db.execute(webhooks.endpoints.select()).one()
    assert stored.token_hash == webhooks.hash_token(token) != token
    with engine.begin() as db:
        found = webhooks.find_endpoint(db, token)
        assert found is not None and (found.client_id, found.provider) == ("acme", "tripletex")
        assert webhooks.find_endpoint(db, token + "x") is None


def test_a_second_token_needs_rotate_and_rotating_retires_the_old_one(engine: Engine) -> None:
    _client(engine)
    with engine.begin() as db:
        old = webhooks.create_endpoint(db, "acme", "uni_economy")
    with engine.begin() as db, pytest.raises(webhooks.EndpointExistsError, match="--rotate"):
        webhooks.create_endpoint(db, "acme", "uni_economy")
    with engine.begin() as db:
        new = webhooks.create_endpoint(db, "acme", "uni_economy", rotate=True)
        assert webhooks.find_endpoint(db, old) is not None, "the old URL works during the grace period"
        assert webhooks.find_endpoint(db, old, grace=dt.timedelta(0)) is None, "and not after it"
        assert webhooks.find_endpoint(db, new) is not None
    with engine.begin() as db:
        newer = webhooks.create_endpoint(db, "acme", "uni_economy", rotate=True)
        assert webhooks.find_endpoint(db, old) is None, "only the previous URL is kept"
        assert webhooks.find_endpoint(db, new) is not None
        webhooks.withdraw_endpoint(db, newer)
        assert webhooks.find_endpoint(db, newer) is None
        assert webhooks.find_endpoint(db, new, grace=dt.timedelta(0)) is not None, "the newest again"


def test_receipts_are_per_client_and_provider_and_recording_twice_is_harmless(engine: Engine) -> None:
    with engine.begin() as db:
        webhooks.record_receipts(db, "acme", "tripletex", ["k1", "k2"])
    with engine.begin() as db:
        webhooks.record_receipts(db, "acme", "tripletex", ["k2", "k3"])  # k2: a concurrent copy
        assert webhooks.received_keys(db, "acme", "tripletex", ["k1", "k3", "k4"]) == {"k1", "k3"}
        assert webhooks.received_keys(db, "globex", "tripletex", ["k1"]) == set()
        assert webhooks.received_keys(db, "acme", "visma_net", ["k1"]) == set()
        assert webhooks.received_keys(db, "acme", "tripletex", []) == set()


@pytest.mark.postgres
def test_a_receipt_recorded_concurrently_does_not_fail_the_other_writer(postgres_server: str) -> None:
    from config_db.database import make_engine
    from config_db.models import metadata

    engine = make_engine(postgres_server)
    metadata.create_all(engine)
    try:
        with engine.begin() as db:
            db.execute(webhooks.receipts.delete())
        other = engine.connect()
        other.begin()
        webhooks.record_receipts(other, "acme", "tripletex", ["k5"])  # not committed yet
        result: list[BaseException | None] = []

        def second_copy() -> None:
            try:
                with engine.begin() as db:
                    webhooks.record_receipts(db, "acme", "tripletex", ["k5", "k6"])
                result.append(None)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                result.append(exc)

        thread = threading.Thread(target=second_copy)
        thread.start()
        thread.join(0.3)  # it waits on k5's uniqueness until the first writer commits
        other.commit()
        other.close()
        thread.join(10)
        assert result == [None]
        with engine.begin() as db:
            assert webhooks.received_keys(db, "acme", "tripletex", ["k5", "k6"]) == {"k5", "k6"}
    finally:
        engine.dispose()


def test_a_call_of_thousands_of_deliveries_is_recorded_and_found_in_bounded_statements(
    engine: Engine,
) -> None:
    """Ten thousand event ids in one call were one statement of ten thousand parameters (SQL Server
    takes 2,100) and ten thousand savepoints."""
    _client(engine)
    keys = [f"evt-{n}" for n in range(1200)]
    with engine.begin() as db:
        webhooks.record_receipts(db, "acme", "visma_net", keys[:7])  # some were received before
    statements: list[str] = []
    lookup_params: list[int] = []

    def count(conn: object, cursor: object, statement: str, params: Sized, *args: object) -> None:
        if "webhook_receipts" in statement:
            statements.append(statement)
            if statement.lstrip().upper().startswith("SELECT"):
                lookup_params.append(len(params))

    event.listen(engine, "before_cursor_execute", count)
    try:
        with engine.begin() as db:
            webhooks.record_receipts(db, "acme", "visma_net", keys + keys[:3])
            found = webhooks.received_keys(db, "acme", "visma_net", [*keys, "evt-new"])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert found == set(keys)
    assert len(statements) <= 12, f"{len(statements)} statements: one insert, the lookups in chunks"
    assert max(lookup_params) <= 500 + 2, "each lookup: a chunk of keys, the client and the provider"
