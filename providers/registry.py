"""The provider kinds. A new ERP is a new subpackage declaring its ``KIND`` plus one line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiohttp

from providers import generic_rest, tripletex, uni_economy, visma_net
from providers.base import ConnectionSpec, Provider, ProviderFactory
from providers.errors import PermanentError
from providers.kind import ProviderKind, WebhookParser

ALL: tuple[ProviderKind, ...] = (
    generic_rest.KIND,
    tripletex.KIND,
    visma_net.KIND,
    uni_economy.KIND,
)

BY_NAME: Mapping[str, ProviderKind] = {k.name: k for k in ALL}
KINDS = tuple(BY_NAME)


def kind(name: str) -> ProviderKind:
    """The kind named ``name``; PermanentError naming the known ones otherwise."""
    found = BY_NAME.get(name)
    if found is None:
        raise PermanentError(f"provider kind {name!r} is not available (known: {', '.join(sorted(BY_NAME))})")
    return found


def build(spec: ConnectionSpec, http: aiohttp.ClientSession) -> Provider:
    return kind(spec.kind).factory(spec, http)


# Views by name, for the callers that need only one part of a kind.
PROVIDERS: Mapping[str, ProviderFactory] = {k.name: k.factory for k in ALL}
WEBHOOK_PARSERS: Mapping[str, WebhookParser] = {k.name: k.parse_webhook for k in ALL}
WEBHOOK_SECRETS: Mapping[str, Callable[[], str]] = {k.name: k.new_webhook_secret for k in ALL}
