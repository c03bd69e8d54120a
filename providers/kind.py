"""What one ERP integration declares to the rest of the worker: ``ProviderKind``.

Adding an ERP is one package that declares one ``ProviderKind`` in its ``__init__`` and one line
in ``providers/registry.py``.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from providers.base import InboundChange, ProviderFactory
from providers.settings import SettingSchema
from providers.versions import VersionKind


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


RegisterWebhook = Callable[[Any, str, str], Awaitable[str]]
"""``(provider, url, secret) → summary``: subscribe the ERP to our webhook URL, or say how to."""


def shared_secret() -> str:
    """A random secret for HMAC schemes that take any text."""
    return secrets.token_urlsafe(32)


def standard_webhooks_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """One ERP integration as the worker sees it.

    ``factory`` builds the provider of one connection (its class, whose ``kind`` is the name);
    ``parse_webhook`` verifies and reads the ERP's callbacks; ``new_webhook_secret`` makes a secret
    in the format its scheme wants; ``register_webhook`` subscribes the ERP (None: configured by
    hand); ``settings`` declares the connection settings (validated when they are set);
    ``version_kind`` says how the ERP's record versions compare (``providers.versions``).
    """

    factory: ProviderFactory
    parse_webhook: WebhookParser
    settings: SettingSchema
    version_kind: VersionKind
    new_webhook_secret: Callable[[], str] = shared_secret
    register_webhook: RegisterWebhook | None = None

    @property
    def name(self) -> str:
        name: str = getattr(self.factory, "kind")  # noqa: B009 - the Protocol's ClassVar
        return name

    def setting_problems(self, settings: Mapping[str, str]) -> list[str]:
        """One line per setting that is unknown to this kind or does not parse."""
        return self.settings.problems(settings)
