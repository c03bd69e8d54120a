"""``cwi webhooks register CLIENT``: subscribe the client's ERP to our webhook listener.

Tripletex and Uni Economy have an API for it (event subscriptions, event plans); Visma.net does not,
and its provider answers with the steps to take in Visma's Developer Portal instead. Without ``--url``
a new endpoint is issued (as ``cwi webhooks url --rotate`` does: the old URL stops working) and its
URL and the connection's webhook secret are registered; with ``--url`` that URL is registered with
the secret already stored.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Protocol, runtime_checkable

import aiohttp
import typer

from config_db import clients as clients_repo
from config_db.secrets import SecretBox, SecretKeyError
from providers import registry
from providers.base import ConnectionSpec
from providers.errors import ProviderError
from worker.bootstrap import make_database
from worker.cli.common import console, fail, require_migrated, run_async, settings
from worker.cli.webhooks import NoConnectionError, issue
from worker.messaging.connections import spec_from_stored

SECRET_CREDENTIAL = "webhook_secret"  # noqa: S105 - the credential's name, not its value


@runtime_checkable
class RegistersWebhooks(Protocol):
    """The optional provider method: create the vendor's subscription, or say how to."""

    async def register_webhook(self, url: str, secret: str) -> str: ...


def register(
    client: Annotated[str, typer.Argument(help="Client id")],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Register this URL instead of a newly issued CWI_PUBLIC_URL/webhooks/{provider}/{token}",
        ),
    ] = None,
) -> None:
    """Create the webhook subscription in the client's ERP (or print the steps where there is no API)."""
    s = settings()
    require_migrated(s)
    db = make_database(s)
    stored = db.run_sync(partial(clients_repo.get_connection, client_id=client))
    if stored is None:
        fail(f"client {client!r} has no connection: add one with `cwi connections set`")
    kind = stored.kind
    try:
        if url is None:
            issued = db.run_sync(partial(issue, box=SecretBox(s.secret), client_id=client, rotate=True))
            url = f"{s.public_url.rstrip('/')}/webhooks/{issued.kind}/{issued.token}"
            stored = db.run_sync(partial(clients_repo.get_connection, client_id=client))
            assert stored is not None
        spec = spec_from_stored(stored, s.secret)
        summary = run_async(_register(spec, url, _secret(spec)))
    except (SecretKeyError, NoConnectionError) as exc:
        fail(str(exc))
    except ProviderError as exc:
        fail(f"FAILED: {client} ({kind}): {exc}")
    console.print(summary)


def _secret(spec: ConnectionSpec) -> str:
    secret = spec.credentials.get(SECRET_CREDENTIAL)
    if not secret:
        command = f"cwi connections set {spec.client_id} {spec.kind} --credential {SECRET_CREDENTIAL}=…"
        fail(
            f"the {spec.kind} connection of client {spec.client_id} has no credential {SECRET_CREDENTIAL}: "
            f"add it with `{command}`"
        )
    return secret


async def _register(spec: ConnectionSpec, url: str, secret: str) -> str:
    async with aiohttp.ClientSession() as http:
        provider = registry.build(spec, http)
        if not isinstance(provider, RegistersWebhooks):
            fail(f"{spec.kind} has no webhook registration: configure its callbacks to call {url}")
        return await provider.register_webhook(url, secret)
