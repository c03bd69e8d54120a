"""The reconciliation error shared by the service and the scheduler (which must not import the
reconciler to catch it: a worker that only validates mappings never loads it)."""

from __future__ import annotations


class ReconcileError(Exception):
    """Why a client cannot be reconciled, in one line."""
