"""Azure Service Bus behind the Bus protocol: ``bus`` (the adapter), ``client`` (the SDK's client and
its TLS), ``receiving`` and ``sessions`` (how messages come in), ``convert`` (SDK messages ↔ the
protocol's), ``errors`` (the SDK's errors translated), ``dead_letters`` (the operators' side)."""

from worker.buses.azure.bus import RETRY_FOR_PROPERTY, AzureBus
from worker.buses.azure.convert import (
    incoming_properties,
    outgoing_properties,
    send_in_batches,
    to_dead_letter,
    to_delivery,
    to_service_bus_message,
)
from worker.buses.azure.errors import (
    DeadLetterLockedError,
    SettlementUnconfirmedError,
    StatsUnavailableError,
    lock_errors,
)

__all__ = [
    "RETRY_FOR_PROPERTY",
    "AzureBus",
    "DeadLetterLockedError",
    "SettlementUnconfirmedError",
    "StatsUnavailableError",
    "incoming_properties",
    "lock_errors",
    "outgoing_properties",
    "send_in_batches",
    "to_dead_letter",
    "to_delivery",
    "to_service_bus_message",
]
