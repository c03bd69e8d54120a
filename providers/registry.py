"""Provider kinds → factories. A new ERP is a new subpackage plus one line here."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp

from providers.base import ConnectionSpec, InboundChange, Provider, ProviderFactory
from providers.errors import PermanentError
from providers.generic_rest import webhooks as generic_rest_webhooks
from providers.generic_rest.provider import GenericRestProvider
from providers.tripletex import webhooks as tripletex_webhooks
from providers.tripletex.provider import TripletexProvider
from providers.uni_economy import webhooks as uni_economy_webhooks
from providers.uni_economy.provider import UniEconomyProvider
from providers.visma_net import webhooks as visma_net_webhooks
from providers.visma_net.provider import VismaNetProvider

PROVIDERS: Mapping[str, ProviderFactory] = {
    GenericRestProvider.kind: GenericRestProvider,
    TripletexProvider.kind: TripletexProvider,
    VismaNetProvider.kind: VismaNetProvider,
    UniEconomyProvider.kind: UniEconomyProvider,
}

KINDS = tuple(PROVIDERS)


def build(spec: ConnectionSpec, http: aiohttp.ClientSession) -> Provider:
    factory = PROVIDERS.get(spec.kind)
    if factory is None:
        known = ", ".join(sorted(PROVIDERS))
        raise PermanentError(f"provider kind {spec.kind!r} is not available (known: {known})")
    return factory(spec, http)


class WebhookParser(Protocol):
    """Verify one webhook call and read its changes; raise WebhookRejected with the reason."""

    def __call__(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secret: str,
        settings: Mapping[str, str],
        now: float | None = None,
    ) -> list[InboundChange]: ...


def _generic_rest_parser(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    settings: Mapping[str, str],
    now: float | None = None,
) -> list[InboundChange]:
    # Standard Webhooks has no per-connection settings: the tolerance is the scheme's own.
    return generic_rest_webhooks.parse_webhook(headers, body, secret=secret, now=now)


WEBHOOK_PARSERS: Mapping[str, WebhookParser] = {
    GenericRestProvider.kind: _generic_rest_parser,
    TripletexProvider.kind: tripletex_webhooks.parse_webhook,
    VismaNetProvider.kind: visma_net_webhooks.parse_webhook,
    UniEconomyProvider.kind: uni_economy_webhooks.parse_webhook,
}


def _standard_webhooks_secret() -> str:
    return generic_rest_webhooks.SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _shared_secret() -> str:
    return secrets.token_urlsafe(32)


# The secret each scheme expects when we choose it (Standard Webhooks wants ``whsec_<base64>``).
WEBHOOK_SECRETS: Mapping[str, Callable[[], str]] = {
    GenericRestProvider.kind: _standard_webhooks_secret,
    TripletexProvider.kind: _shared_secret,
    VismaNetProvider.kind: _shared_secret,
    UniEconomyProvider.kind: _shared_secret,
}
