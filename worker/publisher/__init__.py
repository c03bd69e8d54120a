"""The webhooks publisher: third parties subscribe to a client's CW changes and receive each as a
signed Standard Webhooks call, delivered through the bus.

``handler`` wraps the worker's handler: a completed message that carried a CW change adds one
delivery per matching subscription to its journal (``directory``, ``events``), and delivery
messages are handled by ``deliver`` (``steps`` for the delivery log, ``sending`` for the call,
``signing``, ``guard`` against SSRF, ``schedule`` for retries, ``outbox`` to publish with the
journal on either bus). Operators manage subscriptions through ``worker.operators.subscriptions``.
"""

from __future__ import annotations

from worker.buses.base import Bus
from worker.messaging.runner import Handler
from worker.publisher.deliver import Deliverer
from worker.publisher.directory import Directory
from worker.publisher.handler import Publisher
from worker.publisher.outbox import Outbox
from worker.publisher.sending import Sender
from worker.publisher.settings import PublisherSettings


def publishing(
    inner: Handler,
    bus: Bus,
    sender: Sender,
    *,
    secret_key: str | None,
    lease_s: float,
    settings: PublisherSettings | None = None,
) -> Publisher:
    """``inner`` with the publisher around it; ``sender`` (its HTTP session) belongs to the caller."""
    s = settings or sender.settings
    outbox = Outbox(bus)
    deliverer = Deliverer(inner.db, outbox, sender, s, secret_key=secret_key, lease_s=lease_s)
    return Publisher(inner, deliverer, Directory(inner.db, ttl_s=s.directory_s), outbox)


__all__ = ["Publisher", "PublisherSettings", "Sender", "publishing"]
