"""Reconciling a client from the app: its connection, CW's APIs, the provider, the bus.

Where the worker runs (``cwi serve --worker``, ``cwi run``), the provider is the connection's own
instance from the connection directory, so reconciliation's requests count against the same rate
cap and 429 window as the live ones; ``cwi reconcile`` builds its own.
"""

from __future__ import annotations

from functools import partial
from typing import cast

from config_db import clients
from providers import registry
from providers.errors import PermanentError
from worker.bootstrap import App
from worker.messaging.connections import require_enabled, spec_from_stored
from worker.reconcile.errors import ReconcileError
from worker.reconcile.run import Options, Reconciler, Report
from worker.reconcile.sides import CWReader, Progress, ReconcilingProvider

__all__ = ["NO_CW", "ReconcileError", "reconcile_client"]

NO_CW = (
    "reconciliation reads CW through its Query API: set CWI_CW_GRAPHQL_URL, CWI_CW_WRITE_URL and "
    "CWI_CW_API_KEY"
)


def _ignore(side: str, read: int) -> None:
    pass


async def reconcile_client(
    app: App, client_id: str, options: Options, *, progress: Progress = _ignore, shared: bool = False
) -> Report:
    """One run; ``shared`` uses the connection directory's provider (the worker's own instance)."""
    cw = app.cw()
    if cw is None:
        raise ReconcileError(NO_CW)
    assert app.http is not None, "open the app with http=True to reconcile"
    try:
        if shared:
            connection = await app.connections().connection_for(client_id)
            spec, provider = connection.spec, connection.provider
        else:
            stored = await app.db.run(partial(clients.get_connection, client_id=client_id))
            spec = spec_from_stored(require_enabled(stored, client_id), app.settings.secret)
            provider = registry.build(spec, app.http)
    except PermanentError as exc:
        raise ReconcileError(str(exc)) from None
    reconciler = Reconciler(
        app.db, cast(CWReader, cw), spec, cast(ReconcilingProvider, provider), app.bus, progress=progress
    )
    return await reconciler.run(options)
