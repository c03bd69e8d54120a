"""``cwi preview``: what a client's provider would send for some envelopes, sending nothing."""

from __future__ import annotations

from collections.abc import Sequence

from contracts import Envelope
from providers.base import OutboundChange, PreparedRequest, Provider
from providers.errors import PermanentError


class PreviewError(Exception):
    pass


def preview_requests(
    provider: Provider, envelopes: Sequence[Envelope]
) -> list[tuple[Envelope, list[PreparedRequest]]]:
    """The requests ``provider`` would send for each envelope; the first that cannot be mapped stops it."""
    out: list[tuple[Envelope, list[PreparedRequest]]] = []
    for env in envelopes:
        change = OutboundChange(env.id, env.entity, env.action, env.cw_id, env.data)
        try:
            out.append((env, provider.preview(change)))
        except PermanentError as exc:
            raise PreviewError(f"{env.id} ({env.type}): {exc.reason}: {exc}") from None
    return out
