"""``cwi webhooks``: the URL and secret each client's ERP calls us with."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Annotated

import typer
from sqlalchemy import Connection

from config_db import clients, webhooks
from config_db.secrets import SecretBox, SecretKeyError
from providers.registry import WEBHOOK_SECRETS
from worker.bootstrap import make_database
from worker.cli.common import fail, require_migrated, settings

webhooks_app = typer.Typer(help="Webhook endpoints: where each client's ERP calls us.", no_args_is_help=True)


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


@webhooks_app.command("url")
def url(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Issue a new URL; the old one stops working")
    ] = False,
) -> None:
    """Create the client's webhook URL and print it with the secret to register at the ERP.

    The URL's token is stored hashed, so it is shown only when created: use --rotate to get a new one.
    """
    s = settings()
    require_migrated(s)
    try:
        box = SecretBox(s.secret)
        issued = make_database(s).run_sync(partial(issue, box=box, client_id=client_id, rotate=rotate))
    except (SecretKeyError, NoConnectionError, webhooks.EndpointExistsError) as exc:
        fail(str(exc))
    print(f"url: {s.public_url.rstrip('/')}/webhooks/{issued.kind}/{issued.token}")
    print(f"secret: {issued.secret}")
    print(
        f"Register both with the client's {issued.kind} webhook subscription "
        f"(the secret is {'new' if issued.new_secret else 'the one already stored'}; "
        f"it is kept encrypted as the connection's {webhooks.SECRET_CREDENTIAL} credential). "
        "The URL is shown only now."
    )
