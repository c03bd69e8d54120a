"""Fixtures the integration suites share (defined in tests/integration/buses.py and worker_rig.py)."""

from tests.integration.buses import peer, servicebus_namespace
from tests.integration.reconcile_rig import sqlite_url
from tests.integration.worker_rig import rig

__all__ = ["peer", "rig", "servicebus_namespace", "sqlite_url"]
