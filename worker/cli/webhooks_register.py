"""``cwi webhooks register CLIENT``: subscribe the client's ERP to our webhook listener.

Tripletex and Uni Economy have an API for it (event subscriptions, event plans); Visma.net does not,
and its provider answers with the steps to take in Visma's Developer Portal instead. The URL comes
from ``--url`` and the signing secret from the connection's credential ``webhook_secret`` until the
listener's token store gives both.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Protocol, runtime_checkable

import aiohttp
import typer

from config_db import clients as clients_repo
from providers import registry
from providers.base import ConnectionSpec
from providers.errors import ProviderError
from worker.bootstrap import make_database
from worker.cli.common import console, fail, require_migrated, run_async, settings
from worker.connections import spec_from_stored

SECRET_CREDENTIAL = "webhook_secret"  # noqa: S105 - the credential's name, not its value


@runtime_checkable
class RegistersWebhooks(Protocol):
    """The optional provider method: create the vendor's subscription, or say how to."""

    async def register_webhook(self, url: str, secret: str) -> str: ...


def register(
    client: Annotated[str, typer.Argument(help="Client id")],
    url: Annotated[
        str | None,
        typer.Option("--url", help="The public URL the ERP calls: CWI's /webhooks/{provider}/{token}"),
    ] = None,
) -> None:
    """Create the webhook subscription in the client's ERP (or print the steps where there is no API)."""
    if not url:
        fail(
            "pass --url: the public address of this client's webhook endpoint (/webhooks/{provider}/{token})"
        )
    s = settings()
    require_migrated(s)
    stored = make_database(s).run_sync(partial(clients_repo.get_connection, client_id=client))
    if stored is None:
        fail(f"client {client!r} has no connection: add one with `cwi connections set`")
    try:
        spec = spec_from_stored(stored, s.secret)
        summary = run_async(_register(spec, url, _secret(spec)))
    except ProviderError as exc:
        fail(f"FAILED: {client} ({stored.kind}): {exc}")
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
