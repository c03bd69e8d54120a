"""Fixtures the integration suites share (defined in tests/integration/buses.py)."""

from tests.integration.buses import peer, servicebus_namespace

__all__ = ["peer", "servicebus_namespace"]
