"""Provider kinds → factories. A new ERP is a new subpackage plus one line here."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from providers.base import ConnectionSpec, Provider, ProviderFactory
from providers.errors import PermanentError
from providers.generic_rest.provider import GenericRestProvider
from providers.tripletex.provider import TripletexProvider
from providers.uni_economy.provider import UniEconomyProvider
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
