"""Helpers of the browser tests: events onto the bus, waiting on the journal, logging in."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import text

from config_db.database import make_engine
from worker.buses.base import OutgoingMessage
from worker.buses.local import LocalBus
from worker.db import Database

T = TypeVar("T")


def customer(client: str, n: int, **data: Any) -> dict[str, Any]:
    return {
        "id": f"{client}-e{n}-{uuid.uuid4().hex[:6]}",
        "client_id": client,
        "type": "customer.created",
        "source": "frontend",
        "occurred_at": "2026-11-23T10:00:00Z",
        "data": {"id": f"{client}-c{n}", "number": str(1000 + n), "name": f"Customer {n}", **data},
    }


def publish(db_url: str, envelopes: list[dict[str, Any]]) -> None:
    async def send() -> None:
        db = Database(make_engine(db_url))
        try:
            messages = [
                OutgoingMessage(json.dumps(e).encode(), f"t-{e['id']}", e["client_id"]) for e in envelopes
            ]
            await LocalBus(db).publish(messages)
        finally:
            await db.close()

    # Playwright's sync API runs an event loop in this thread: publish from another one.
    worker = threading.Thread(target=lambda: asyncio.run(send()))
    worker.start()
    worker.join()


def query(db_url: str, sql: str, **params: Any) -> list[Any]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = 60.0) -> T:
    """Poll until ``check`` answers something truthy (the worker runs in another process)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def dead_letters(db_url: str, client: str) -> list[Any]:
    return query(
        db_url,
        "SELECT message_id, dead_letter_reason FROM bus_messages "
        "WHERE state = 'deadlettered' AND session_id = :c ORDER BY seq",
        c=client,
    )


def outcomes(db_url: str, client: str, action: str) -> list[Any]:
    return query(
        db_url, "SELECT cw_id FROM sync_log WHERE client_id = :c AND action = :a", c=client, a=action
    )


def log_in_with_key(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#key", key)
    page.click("text=Log in with the key")
    page.wait_for_url(f"{base}/")


def log_in_with_oidc(page: Any, base: str, user: str) -> None:
    page.goto(f"{base}/login")
    page.click("#oidc-login")
    page.click(f"button[value={user}]")  # the identity provider's page
    page.wait_for_url(f"{base}/**")
