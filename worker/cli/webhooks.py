"""``cwi webhooks``: the URL and secret each client's ERP calls us with, and registering them there.

Tripletex and Uni Economy have an API for the registration (event subscriptions, event plans);
Visma.net does not, and its provider answers with the steps to take in Visma's Developer Portal
instead. Without ``--url`` a new endpoint is issued (as ``cwi webhooks url --rotate`` does: the old URL
stops working) and its URL and the connection's webhook secret are registered; with ``--url`` that URL
is registered with the secret already stored.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Annotated, Protocol, runtime_checkable

import typer

from config_db import webhooks as webhooks_repo
from config_db.secrets import SecretBox, SecretKeyError
from config_db.webhooks import SECRET_CREDENTIAL, EndpointExistsError
from worker.bootstrap import database, open_provider
from worker.cli.common import connection_of, console, fail, require_migrated, run_async, settings
from worker.webhook_endpoints import NoConnectionError, issue

if TYPE_CHECKING:
    from config_db.clients import StoredConnection
    from providers.base import ConnectionSpec
    from worker.settings import Settings

app = typer.Typer(help="Webhook endpoints: where each client's ERP calls us.", no_args_is_help=True)


@runtime_checkable
class RegistersWebhooks(Protocol):
    """The optional provider method: create the vendor's subscription, or say how to."""

    async def register_webhook(self, url: str, secret: str) -> str: ...


@app.command("url")
def url(
    client_id: Annotated[str, typer.Argument(help="Client id")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Issue a new URL; the old one stops working")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object")] = False,
) -> None:
    """Create the client's webhook URL and print it with the secret to register at the ERP.

    The URL's token is stored hashed, so it is shown only when created: use --rotate to get a new one.
    """
    s = settings()
    require_migrated(s)
    try:
        box = SecretBox(s.secret)
        with database(s) as db:
            issued = db.run_sync(partial(issue, box=box, client_id=client_id, rotate=rotate))
    except (SecretKeyError, NoConnectionError, EndpointExistsError) as exc:
        fail(str(exc))
    endpoint = f"{s.public_url.rstrip('/')}/webhooks/{issued.kind}/{issued.token}"
    if json_out:
        print(
            json.dumps(
                {"client_id": client_id, "provider": issued.kind, "url": endpoint, "secret": issued.secret}
            )
        )
        return
    print(f"url: {endpoint}")
    print(f"secret: {issued.secret}")
    print(
        f"Register both with the client's {issued.kind} webhook subscription "
        f"(the secret is {'new' if issued.new_secret else 'the one already stored'}; "
        f"it is kept encrypted as the connection's {SECRET_CREDENTIAL} credential). "
        "The URL is shown only now."
    )


@app.command("register")
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
    from providers.errors import ProviderError
    from providers.registry import BY_NAME
    from worker.messaging.connections import spec_from_stored

    s = settings()
    require_migrated(s)
    with database(s) as db:
        stored = connection_of(db, client)
        kind = stored.kind
        found = BY_NAME.get(kind)
        if found is None or found.register_webhook is None:
            # Checked before anything changes: the URL the ERP uses now stays as it is.
            fail(f"{kind} has no webhook registration: configure its callbacks by hand (`cwi webhooks url`)")
        issued_token: str | None = None
        try:
            if url is None:
                issued = db.run_sync(partial(issue, box=SecretBox(s.secret), client_id=client, rotate=True))
                issued_token = issued.token
                url = f"{s.public_url.rstrip('/')}/webhooks/{issued.kind}/{issued.token}"
                stored = connection_of(db, client)
            secret = _secret(spec_from_stored(stored, s.secret))
            summary = run_async(_register(s, stored, url, secret))
        except (SecretKeyError, NoConnectionError, ProviderError) as exc:
            if issued_token is not None:
                # The new URL never reached the ERP: take it back; the one the ERP uses keeps working.
                db.run_sync(partial(webhooks_repo.withdraw_endpoint, token=issued_token))
            fail(f"FAILED: {client} ({kind}): {exc}" if isinstance(exc, ProviderError) else str(exc))
    console.print(summary)
    if issued_token is not None:
        console.print(
            "The previous webhook URL keeps working for 24 hours, for deliveries already on their way."
        )


def _secret(spec: ConnectionSpec) -> str:
    secret = spec.credentials.get(SECRET_CREDENTIAL)
    if not secret:
        command = f"cwi connections set {spec.client_id} {spec.kind} --credential {SECRET_CREDENTIAL}=…"
        fail(
            f"the {spec.kind} connection of client {spec.client_id} has no credential {SECRET_CREDENTIAL}: "
            f"add it with `{command}`"
        )
    return secret


async def _register(s: Settings, stored: StoredConnection, url: str, secret: str) -> str:
    async with open_provider(s, stored) as provider:
        if not isinstance(provider, RegistersWebhooks):
            fail(f"{stored.kind} has no webhook registration: configure its callbacks to call {url}")
        return await provider.register_webhook(url, secret)
