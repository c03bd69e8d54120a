"""The provider kinds. A new ERP is a new subpackage declaring its ``KIND`` plus one name here.

A kind's package is imported the first time it is asked for, not with this module: a worker
loads the code (and the libraries: Uni Economy's certificates, Visma's date parsing…) of the
ERPs its clients use, about 2.5 MB of memory for the three it does not need when all its
clients are on one. The package is named as its kind (``providers.<name>``), which a test holds.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

import aiohttp

from providers.base import ConnectionSpec, Provider, ProviderFactory
from providers.errors import PermanentError
from providers.kind import ProviderKind, WebhookParser

KINDS: tuple[str, ...] = ("generic_rest", "tripletex", "visma_net", "uni_economy")


@functools.cache
def _load(name: str) -> ProviderKind:
    found: ProviderKind = importlib.import_module(f"providers.{name}").KIND
    return found


def kind(name: str) -> ProviderKind:
    """The kind named ``name``; PermanentError naming the known ones otherwise."""
    if name not in KINDS:
        raise PermanentError(f"provider kind {name!r} is not available (known: {', '.join(sorted(KINDS))})")
    return _load(name)


def build(spec: ConnectionSpec, http: aiohttp.ClientSession) -> Provider:
    return kind(spec.kind).factory(spec, http)


T = TypeVar("T")


class _View(Mapping[str, T], Generic[T]):
    """Kind name → one part of the kind, loading the kind's package when it is looked up."""

    def __init__(self, part: Callable[[ProviderKind], T]) -> None:
        self._part = part

    def __getitem__(self, name: str) -> T:
        if name not in KINDS:
            raise KeyError(name)
        return self._part(_load(name))

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)


BY_NAME: Mapping[str, ProviderKind] = _View(lambda k: k)
# Views by name, for the callers that need only one part of a kind.
PROVIDERS: Mapping[str, ProviderFactory] = _View(lambda k: k.factory)
WEBHOOK_PARSERS: Mapping[str, WebhookParser] = _View(lambda k: k.parse_webhook)
WEBHOOK_SECRETS: Mapping[str, Callable[[], str]] = _View(lambda k: k.new_webhook_secret)
