"""The generic REST provider: ERPs that implement CW's own interface, contracts/generic_rest.openapi.json.

The sandbox ERP (``providers.generic_rest.sandbox``) is imported on its own, so that the worker
does not load jsonschema unless it serves the sandbox.
"""

from collections.abc import Mapping

from providers.base import InboundChange
from providers.generic_rest import webhooks
from providers.generic_rest.provider import GenericRestProvider
from providers.kind import ProviderKind, standard_webhooks_secret
from providers.settings import Setting, SettingSchema


def _parse_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    settings: Mapping[str, str],
    now: float | None = None,
) -> list[InboundChange]:
    # Standard Webhooks has no per-connection settings: the tolerance is the scheme's own.
    return webhooks.parse_webhook(headers, body, secret=secret, now=now)


KIND = ProviderKind(
    factory=GenericRestProvider,
    parse_webhook=_parse_webhook,
    new_webhook_secret=standard_webhooks_secret,
    version_kind="integer",
    settings=SettingSchema(
        (
            Setting("timeout_s", "positive_number", "seconds one request may take (default 30)"),
            Setting(
                "api_user", "text", "the author the ERP names for changes made with our token", company=True
            ),
            Setting("definition", "text", "the provider definition (an integrator's system) it follows"),
        )
    ),
)

__all__ = ["KIND", "GenericRestProvider"]
