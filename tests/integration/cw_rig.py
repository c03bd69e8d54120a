"""What the rigs with the fake CW share: the worker's settings that reach it, a client's ERP
connection, and CW's events put onto the bus as CW would put them."""

from __future__ import annotations

import json
from typing import Any

from config_db import clients
from config_db.secrets import SecretBox
from worker.bootstrap import App
from worker.buses.base import OutgoingMessage
from worker.dev.cw_sandbox import CWServer
from worker.settings import Settings


def settings_with_cw(db_url: str, cw: CWServer, *, secret_key: str, cw_key: str, **more: Any) -> Settings:
    """The worker's settings: the database, short delayed retries, and CW's APIs at the fake."""
    return Settings(
        database_url=db_url,
        secret_key=secret_key,
        retry_delays=(0.2,),
        cw_graphql_url=cw.graphql_url,
        cw_write_url=cw.write_url,
        cw_api_key=cw_key,
        **more,
    )


def provision(
    db: Any,
    *,
    client: str,
    kind: str,
    base_url: str,
    settings: dict[str, str],
    credentials: dict[str, str],
    secret_key: str,
) -> None:
    """The client and its enabled connection, credentials encrypted as `cwi connections set` does."""
    clients.add_client(db, client, client.title())
    encrypted = SecretBox(secret_key).encrypt(credentials)
    clients.set_connection(db, clients.StoredConnection(client, kind, base_url, settings, encrypted, True))


async def publish_cw_event(app: App, event: dict[str, Any]) -> None:
    """What CW does with its events: put them on the bus, the client id as session."""
    await app.bus.publish([OutgoingMessage(json.dumps(event).encode(), event["id"], event["client_id"])])
