"""Issuing a client's webhook endpoint: the URL token its ERP calls us on, and the secret it signs with.

``cwi webhooks url`` and ``cwi webhooks register`` issue endpoints through this, and so do the demo and
the tests that put the real listener in front of an ERP.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import Connection

from config_db import clients, webhooks
from config_db.secrets import SecretBox
from providers.registry import WEBHOOK_SECRETS


@dataclasses.dataclass(frozen=True, slots=True)
class Issued:
    kind: str
    token: str
    secret: str
    new_secret: bool


class NoConnectionError(Exception):
    pass


def issue(db: Connection, box: SecretBox, client_id: str, *, rotate: bool) -> Issued:
    """A new endpoint token, and a webhook secret if the connection has none: one transaction."""
    stored = clients.get_connection(db, client_id)
    if stored is None:
        raise NoConnectionError(
            f"client {client_id!r} has no ERP connection: add one with `cwi connections set`"
        )
    token = webhooks.create_endpoint(db, client_id, stored.kind, rotate=rotate)
    credentials = box.decrypt(stored.credentials, owner=f"client {client_id!r}")
    secret = credentials.get(webhooks.SECRET_CREDENTIAL)
    if secret:
        return Issued(stored.kind, token, secret, new_secret=False)
    secret = WEBHOOK_SECRETS[stored.kind]()
    credentials[webhooks.SECRET_CREDENTIAL] = secret
    clients.set_connection(db, dataclasses.replace(stored, credentials=box.encrypt(credentials)))
    return Issued(stored.kind, token, secret, new_secret=True)
