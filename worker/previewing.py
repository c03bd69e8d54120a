"""``cwi preview``: what a client's provider would send for some envelopes, sending nothing."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import aiohttp

from config_db import clients
from contracts import Envelope
from providers import registry
from providers.base import OutboundChange, PreparedRequest
from providers.errors import PermanentError
from worker.bootstrap import make_database
from worker.messaging.connections import spec_from_stored
from worker.settings import Settings


class PreviewError(Exception):
    pass


async def preview_requests(
    settings: Settings, client_id: str, envelopes: Sequence[Envelope]
) -> list[tuple[Envelope, list[PreparedRequest]]]:
    db = make_database(settings)
    try:
        stored = await db.run(partial(clients.get_connection, client_id=client_id))
    finally:
        await db.close()
    if stored is None:
        raise PreviewError(f"client {client_id!r} has no connection: add one with `cwi connections set`")
    spec = spec_from_stored(stored, settings.secret)
    out: list[tuple[Envelope, list[PreparedRequest]]] = []
    async with aiohttp.ClientSession() as http:  # never used: preview sends nothing
        provider = registry.build(spec, http)
        for env in envelopes:
            change = OutboundChange(env.id, env.entity, env.action, env.cw_id, env.data)
            try:
                out.append((env, provider.preview(change)))
            except PermanentError as exc:
                raise PreviewError(f"{env.id} ({env.type}): {exc.reason}: {exc}") from None
    return out
